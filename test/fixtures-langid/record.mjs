// Records the reference outputs of test/langid-fasttext.test.ts with the official fastText command-line tool (Debian's
// `fasttext` 0.9.2 package: apt-get install fasttext). Run from the repository root after `npm run build:ts`:
//   node test/fixtures-langid/record.mjs
// It writes texts.jsonl (UDHR sentences of many languages, short cuts of them, text over several lines), trains a
// tiny fastText model on other UDHR articles (tiny-lid.bin: three labels, ISO 639-3 + script as GlotLID names them),
// and writes each model's top-3 labels and probabilities for every text as the command-line tool prints them
// (newlines replaced by spaces first, as the identifier does: fastText reads one line).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

import { udhrArticles } from '../../dist/src/corpus/udhr.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const lid176 = path.join(path.dirname(createRequire(import.meta.url).resolve('fasttext.wasm.js')), '..', 'models', 'language-identification', 'assets', 'lid.176.ftz');

// Language Arithmetics' 21 languages and a few more scripts and families.
const LANGS = ['bo', 'mt', 'it', 'es', 'de', 'ja', 'ar', 'zh', 'af', 'nl', 'fr', 'pt', 'ru', 'ko', 'hi', 'tr', 'pl', 'sv', 'da', 'nb', 'en',
  'sw', 'yo', 'fi', 'el', 'he', 'th', 'vi', 'uk', 'gsw'];
const texts = [];
for (const lang of LANGS) {
  const arts = udhrArticles(lang).filter((a) => a.number >= 1 && a.number <= 3);
  if (arts.length === 0) throw new Error(`no UDHR articles for ${lang}`);
  texts.push({ lang, text: arts[0].text });
  texts.push({ lang, text: [...arts[1].text].slice(0, 24).join('') }); // a short cut, as a short generation is
}
texts.push({ lang: 'de', text: 'Erste Zeile.\nZweite Zeile, auf Deutsch.\n' });
texts.push({ lang: null, text: '12345 67890' });
texts.push({ lang: 'en', text: 'Q: What is your name? \nA: My name is Anna.' });
writeFileSync(path.join(here, 'texts.jsonl'), texts.map((t) => JSON.stringify(t)).join('\n') + '\n');

// The tiny model: articles 4-20 of three languages, one line per article.
const tmp = mkdtempSync(path.join(tmpdir(), 'langid-'));
const train = [];
for (const [lang, label] of [['de', 'deu_Latn'], ['fr', 'fra_Latn'], ['sw', 'swh_Latn']])
  for (const a of udhrArticles(lang).filter((a) => a.number >= 4 && a.number <= 20)) train.push(`__label__${label} ${a.text.replaceAll('\n', ' ')}`);
writeFileSync(path.join(tmp, 'train.txt'), train.join('\n') + '\n');
execFileSync('fasttext', ['supervised', '-input', path.join(tmp, 'train.txt'), '-output', path.join(here, 'tiny-lid'), '-dim', '16', '-bucket', '1000',
  '-minn', '2', '-maxn', '4', '-epoch', '100', '-lr', '1.0', '-thread', '1', '-seed', '1', '-verbose', '0']);
execFileSync('rm', ['-f', path.join(here, 'tiny-lid.vec')]);

const input = texts.map((t) => t.text.replaceAll('\n', ' ')).join('\n') + '\n';
for (const [model, out] of [[lid176, 'lid176.predictions.txt'], [path.join(here, 'tiny-lid.bin'), 'tiny-lid.predictions.txt']])
  writeFileSync(path.join(here, out), execFileSync('fasttext', ['predict-prob', model, '-', '3'], { input, encoding: 'utf8' }));
console.log(`${texts.length} texts; predictions of lid.176.ftz and tiny-lid.bin in ${here}`);
