// fastText language identification (`--langid fasttext[:<model>]`) against the official fastText command-line tool:
// test/fixtures-langid holds its top-3 labels and probabilities (`fasttext predict-prob <model> - 3`, fastText 0.9.2)
// for UDHR sentences of 30 languages, short cuts of them and text over several lines, with the bundled lid.176.ftz
// and with a tiny model trained by the tool (GlotLID-style labels). `node test/fixtures-langid/record.mjs` remakes them.
import { spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import {
  computeForcing, fastTextIdentifier, fastTextLabelCode, loadFastText, loadIdentifier, normaliseLanguageCode, parseIdentifier, type ForcingPrompt,
} from '../src/steer/index.js';
import { writeFiles } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const fixtures = path.join(repoRoot, 'test', 'fixtures-langid');
const texts = readFileSync(path.join(fixtures, 'texts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { lang: string | null; text: string });
/** The tool's output: a line per text, `__label__xx p __label__yy p ...`. */
const recorded = (file: string) => readFileSync(path.join(fixtures, file), 'utf8').trimEnd().split('\n').map((line) => {
  const f = line.trim().split(/\s+/);
  return Array.from({ length: f.length / 2 }, (_, i) => ({ label: f[2 * i]!, probability: Number(f[2 * i + 1]) }));
});
const tinyModel = path.join(fixtures, 'tiny-lid.bin');

function expectSamePredictions(got: { label: string; probability: number }[], want: { label: string; probability: number }[], what: string): void {
  expect(got.map((p) => p.label), what).toEqual(want.map((p) => p.label));
  // the tool prints 6 significant digits
  got.forEach((p, i) => expect(Math.abs(p.probability - want[i]!.probability), `${what}: ${p.label}`).toBeLessThanOrEqual(1e-5 + 1e-5 * want[i]!.probability));
}

describe('fastText in WebAssembly = the fastText command-line tool', () => {
  it('lid.176.ftz (bundled): the same top-3 labels and probabilities on every text', async () => {
    const ft = await loadFastText();
    expect(ft.labels).toHaveLength(176);
    const want = recorded('lid176.predictions.txt');
    expect(want).toHaveLength(texts.length);
    texts.forEach((t, i) => expectSamePredictions(ft.predict(t.text, 3), want[i]!, `text ${i} (${t.lang})`));
  });

  it('a model of the user\'s own (fasttext:<file>): the same predictions, its labels as languages', async () => {
    const ft = await loadFastText(tinyModel);
    expect([...ft.labels].sort()).toEqual(['__label__deu_Latn', '__label__fra_Latn', '__label__swh_Latn']);
    const want = recorded('tiny-lid.predictions.txt');
    texts.forEach((t, i) => expectSamePredictions(ft.predict(t.text, 3), want[i]!, `text ${i} (${t.lang})`));
    const id = await loadIdentifier(parseIdentifier(`fasttext:${tinyModel}`));
    expect(id.name).toBe('fasttext');
    expect([...id.languages].sort()).toEqual(['de', 'fr', 'sw']);
    const de = texts.find((t) => t.lang === 'de')!.text;
    expect(await id.identify(de)).toMatchObject({ code: 'deu_Latn', language: 'de', reliable: true });
  });
});

describe('the fastText identifier', () => {
  it('labels each text with the top label, as Language Arithmetics\' detect_language does (newlines as spaces)', async () => {
    const id = await fastTextIdentifier();
    const want = recorded('lid176.predictions.txt');
    for (const [i, t] of texts.entries()) {
      const r = await id.identify(t.text);
      expect(r.code).toBe(fastTextLabelCode(want[i]![0]!.label));
      expect(r.language).toBe(normaliseLanguageCode(r.code!));
      expect(r.probability).toBeCloseTo(want[i]![0]!.probability, 4);
      expect(r.reliable).toBe(want[i]![0]!.probability >= 0.5);
    }
    // the UDHR's first article of each language, where lid.176 knows it: its own language
    for (const l of ['en', 'de', 'fr', 'mt', 'ja', 'zh', 'ar', 'hi', 'ru', 'ko', 'bo']) expect((await id.identify(texts.find((t) => t.lang === l)!.text)).language, l).toBe(l);
    expect(await id.identify('  \n ')).toEqual({ code: null, language: null, reliable: false });
    expect((await id.identify('Erste Zeile.\nZweite Zeile, auf Deutsch.')).language).toBe('de');
    for (const l of ['en', 'de', 'sw', 'mt', 'bo', 'zh', 'nn', 'gsw']) expect(id.languages.has(l), l).toBe(true);
  });

  it('reads lid.176\'s Wikipedia code als as Alemannic (gsw), not ISO 639-3 Tosk Albanian; GlotLID\'s als_Latn stays Albanian', () => {
    expect(fastTextLabelCode('__label__als')).toBe('gsw');
    expect(normaliseLanguageCode(fastTextLabelCode('__label__als'))).toBe('gsw');
    expect(normaliseLanguageCode(fastTextLabelCode('__label__als_Latn'))).toBe('sq');
    expect(normaliseLanguageCode(fastTextLabelCode('__label__eng_Latn'))).toBe('en');
    expect(fastTextLabelCode('__label__en')).toBe('en');
  });

  it('refuses what is not a fastText model, naming the file; --langid values it does not know', async () => {
    await expect(loadFastText('/nonexistent/lid.bin')).rejects.toThrow(/\/nonexistent\/lid\.bin: cannot read the fastText model/);
    await expect(loadFastText(path.join(fixtures, 'texts.jsonl'))).rejects.toThrow(/texts\.jsonl: not a fastText model/);
    const dir = await makeTempDir('ln-langid-');
    try {
      const future = path.join(dir, 'future.bin');
      const head = Buffer.alloc(16);
      head.writeInt32LE(793712314, 0);
      head.writeInt32LE(99, 4);
      await fsp.writeFile(future, head);
      await expect(loadFastText(future)).rejects.toThrow(/future\.bin: fastText model format version 99, expected 1 to 12/);
      // over fs.readFile's 2 GiB (a sparse file: no disk used) is refused before the package tries to read it whole
      const big = path.join(dir, 'big.bin');
      head.writeInt32LE(12, 4);
      await fsp.writeFile(big, head);
      await fsp.truncate(big, 2 ** 31);
      await expect(loadFastText(big)).rejects.toThrow(/big\.bin: 2\.0 GiB; fastText models of up to 2 GiB load here/);
    } finally {
      await removeDir(dir);
    }
    expect(parseIdentifier('fasttext')).toEqual({ name: 'fasttext' });
    expect(parseIdentifier('fasttext:/m/lid.176.bin')).toEqual({ name: 'fasttext', model: '/m/lid.176.bin' });
    expect(parseIdentifier('cld')).toEqual({ name: 'cld' });
    expect(() => parseIdentifier('fastext')).toThrow(/--langid "fastext": expected cld, eld, fasttext or fasttext:<model/);
    expect(() => parseIdentifier('eld:x')).toThrow(/--langid "eld:x"/);
  });

  it('forcing counts a target as forced when fastText labels the output with it', async () => {
    const prompts: ForcingPrompt[] = [0, 1, 2].map((i) => ({ text: `p${i}`, language: 'en', file: 'en.txt', line: i + 1 }));
    const out = ['Die Würde des Menschen ist unantastbar.', 'Das ist ein Haus.', 'This is English.'];
    const r = await computeForcing({ prompts, targets: ['de'], intervention: () => null, generate: async () => out, identifier: await fastTextIdentifier(), baseline: false });
    expect(r.identifier).toBe('fasttext');
    expect(r.targets[0]).toMatchObject({ identifiable: true, forced: { successes: 2, prompts: 3, detected: { de: 2, en: 1 } } });
  });
});

describe('steer forcing --langid fasttext, --stop, --repetition-penalty (Language Arithmetics\' generation)', () => {
  const bin = path.join(repoRoot, 'bin', 'langneurons.js');
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const modelDir = path.join(repoRoot, 'models', 'udhr20'); // the bundled model: it writes words of its languages
  let dir: string, maskFile: string;
  beforeAll(async () => {
    dir = await makeTempDir('ln-forcing-ft-');
    const id = modelIdentity(await openCheckpoint(modelDir));
    const units = (k: number) => Array.from({ length: id.layers }, (_, l) => [k, k + 10 + l]);
    const mask: NeuronMask = { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: id, sources: [], layers: id.layers, width: id.intermediate,
      languages: { en: units(1), de: units(2) } };
    maskFile = path.join(dir, 'mask.json');
    await writeMaskJson(maskFile, mask);
  });
  afterAll(async () => { await removeDir(dir); });

  it('generates as `generate` does with the same stops and penalty, and labels with the model given', async () => {
    const prompts = await writeFiles(path.join(dir, 'prompts'), { 'en.jsonl': [
      JSON.stringify({ prompt: 'Q: How are you today? \nA:' }), JSON.stringify({ prompt: 'Q: What is your name? \nA:' })].join('\n') + '\n' });
    const out = path.join(dir, 'forcing.json');
    const f = cli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', prompts, '--target', 'de', '--amplify', 'add-mean:1', '--max-new-tokens', '12',
      '--stop', '\\nQ:', '--stop', '\\nA:', '--repetition-penalty', '1.1', '--langid', `fasttext:${tinyModel}`, '--out', out, '--threads', '2', '--json',
      '--stats', path.join(dir, 'no-stats'));
    // add-mean needs statistics: refused before the model runs, naming them
    expect(f.code).toBe(1);
    const g = cli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', prompts, '--target', 'de', '--amplify', 'scale:3', '--max-new-tokens', '12',
      '--stop', '\\nQ:', '--stop', '\\nA:', '--repetition-penalty', '1.1', '--langid', `fasttext:${tinyModel}`, '--out', out, '--threads', '2', '--json');
    expect(g.stderr).toBe('');
    expect(g.code).toBe(0);
    const res = JSON.parse(readFileSync(out, 'utf8'));
    expect(res).toMatchObject({ identifier: 'fasttext', identifierModel: tinyModel, stop: ['\nQ:', '\nA:'], repetitionPenalty: 1.1, maxNewTokens: 12 });
    const ref = cli('generate', modelDir, '--prompt', 'Q: How are you today? \nA:', '--prompt', 'Q: What is your name? \nA:', '--max-new-tokens', '12',
      '--stop', '\\nQ:', '--stop', '\\nA:', '--repetition-penalty', '1.1', '--threads', '2', '--json');
    expect(ref.code, ref.stderr).toBe(0);
    const refTexts = (JSON.parse(ref.stdout) as { generations: { text: string }[] }).generations.map((x) => x.text);
    // the penalty and the stops reach the generator: without them the same prompts continue otherwise
    const plain = cli('generate', modelDir, '--prompt', 'Q: How are you today? \nA:', '--prompt', 'Q: What is your name? \nA:', '--max-new-tokens', '12', '--threads', '2', '--json');
    expect((JSON.parse(plain.stdout) as { generations: { text: string }[] }).generations.map((x) => x.text)).not.toEqual(refTexts);
    const baseline = res.targets[0].baseline.generations as { text: string; code: string | null }[];
    expect(baseline.map((x) => x.text)).toEqual(refTexts);
    // each label is the tiny model's top label for that text
    const ft = await loadFastText(tinyModel);
    for (const x of baseline) expect(x.code).toBe(x.text.trim() ? fastTextLabelCode(ft.predict(x.text.trim(), 1)[0]!.label) : null);
  });

  it('a bad --langid model or an empty --stop is one line naming it, before any model work', () => {
    const r = cli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', path.join(dir, 'prompts'), '--target', 'de', '--amplify', 'scale:3', '--langid', 'fasttext:/nope/lid.176.bin', '--out', path.join(dir, 'x.json'));
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/\/nope\/lid\.176\.bin: cannot read the fastText model/);
    const s = cli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', path.join(dir, 'prompts'), '--target', 'de', '--amplify', 'scale:3', '--stop', '', '--out', path.join(dir, 'x.json'));
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/--stop: a stop string must not be empty/);
  });
});
