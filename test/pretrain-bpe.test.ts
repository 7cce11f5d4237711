import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LangneuronsError } from '../src/errors.js';
import { loadTokenizer, type LoadedTokenizer } from '../src/model/tokenizer.js';
import { byteToUnicode, splitWords, tokenizerConfigJson, tokenizerJson, trainBpe } from '../src/pretrain/bpe.js';
import { buildPretrainCorpus } from '../src/pretrain/corpus.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

const LANGS = 'en,de,fr,es,pt,it,nl,pl,tr,sw,vi,ru,uk,el,ar,fa,hi,zh,ja,ko,he,mt'.split(',');
// ... plus the other scripts of the bundled model's languages (Thai, Georgian, Armenian, Ethiopic, Tamil, Bengali) and Finnish
const ALL_LANGS = [...LANGS, 'fi', 'th', 'ka', 'hy', 'am', 'ta', 'bn'];

describe('byte-level BPE trainer', () => {
  it('learns the hand-worked merges of "aaabdaaabac"', () => {
    // ids: <|bos|> 0, <|eos|> 1, byte b -> 2 + b: a 99, b 100, c 101, d 102.
    // pairs: aa 4 (two in each "aaab"), ab 2, bd 1, da 1, ba 1, ac 1          -> merge a+a (id 258)
    // "aa a b d aa a b a c": (aa,a) 2 = (258,99), (a,b) 2 = (99,100); tie -> smaller left id -> merge a+b (259)
    // "aa ab d aa ab a c":   (aa,ab) 2, all others 1                              -> merge aa+ab (260)
    // "aaab d aaab a c":     every pair once: below minFrequency 2, stop.
    const bpe = trainBpe(['aaabdaaabac'], { vocabSize: 1000 });
    expect(bpe.merges).toEqual([['a', 'a'], ['a', 'b'], ['aa', 'ab']]);
    expect(bpe.vocab.size).toBe(261);
    expect(bpe.vocab.get('aaab')).toBe(260);
    expect(bpe.vocab.get('<|bos|>')).toBe(0);
    expect(bpe.vocab.get('a')).toBe(99);
    // minFrequency 1: the count-1 pairs (aaab,d) (d,aaab) (aaab,a) (a,c) tie; (a,c) = (99,101) has the smallest left id.
    const more = trainBpe(['aaabdaaabac'], { vocabSize: 262, minFrequency: 1 });
    expect(more.merges.at(-1)).toEqual(['a', 'c']);
    // the vocabulary size bounds the merges
    expect(trainBpe(['aaabdaaabac'], { vocabSize: 259 }).merges).toEqual([['a', 'a']]);
  });

  it('counts words across texts and maps spaces to Ġ', () => {
    // words: "ab", " ab" x2, " abc": pairs (a,b) 4, (Ġ,a) 3, then (b,c) 1
    const bpe = trainBpe(['ab ab ab', ' abc'], { vocabSize: 300 });
    expect(bpe.merges).toEqual([['a', 'b'], ['Ġ', 'ab']]);
    expect(splitWords("it's 12345 ok")).toEqual(['it', "'s", ' ', '123', '45', ' ok']);
  });

  it('has the GPT-2 byte alphabet', () => {
    const t = byteToUnicode();
    expect(new Set(t).size).toBe(256);
    expect(t[32]).toBe('Ġ');
    expect(t[10]).toBe('Ċ');
    expect(t[65]).toBe('A');
  });

  it('refuses a vocabulary smaller than the bytes and special tokens', () => {
    expect(() => trainBpe(['x'], { vocabSize: 257 })).toThrow(LangneuronsError);
    expect(() => trainBpe(['x'], { vocabSize: 257 })).toThrow(/at least 258|>= 258/);
  });

  it('is fast (~1 MB of text in seconds) and deterministic', () => {
    const corpus = buildPretrainCorpus({ langs: LANGS, seed: 0 });
    const big: string[] = [];
    for (let k = 0; k < 4; k++) big.push(...corpus.lines.map((l) => (k ? `${k} ${l}` : l)));
    const bytes = big.reduce((s, l) => s + Buffer.byteLength(l), 0);
    expect(bytes).toBeGreaterThan(900_000);
    const t0 = performance.now();
    const a = trainBpe(big, { vocabSize: 4096 });
    expect((performance.now() - t0) / 1000).toBeLessThan(30); // ~3 s on a quiet core
    expect(a.vocab.size).toBe(4096);
    const once = JSON.stringify(tokenizerJson(trainBpe(corpus.lines, { vocabSize: 2048 })));
    expect(JSON.stringify(tokenizerJson(trainBpe(corpus.lines, { vocabSize: 2048 })))).toBe(once);
  });
});

describe('a trained tokenizer.json through loadTokenizer and the Rust tokenizers', () => {
  let dir: string;
  let tok: LoadedTokenizer;
  let rust: RustTokenizer;
  const corpus = buildPretrainCorpus({ langs: ALL_LANGS, seed: 1 });
  const samples: [string, string][] = [
    ...[...corpus.heldout].map(([lang, arts]) => [lang, arts.join('\n')] as [string, string]),
    ['edge', "  leading\n\n\ttabs\r\nCRLF   trailing   \nit's IT'S 1234567 x²  👋🏽 🇲🇹 ħżċ <|eos|> end"],
    ['empty', ''],
  ];

  beforeAll(async () => {
    dir = await makeTempDir('langneurons-bpe-');
    const bpe = trainBpe(corpus.lines, { vocabSize: 1500 });
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe)));
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(bpe, 256)));
    tok = await loadTokenizer(dir);
    rust = RustTokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  });
  afterAll(async () => removeDir(dir));

  it('gives the same ids as the Rust tokenizers on all 29 languages (with and without BOS)', async () => {
    expect(tok.bosTokenId).toBe(0);
    expect(tok.eosTokenIds).toContain(1);
    expect(tok.addsBos).toBe(true);
    for (const [name, text] of samples) {
      const rustPlain = (await rust.encode(text, null, { addSpecialTokens: false })).getIds();
      expect(tok.encode(text, { addSpecialTokens: false }), name).toEqual(rustPlain);
      const rustWith = (await rust.encode(text, null, { addSpecialTokens: true })).getIds();
      expect(tok.encode(text), name).toEqual(rustWith);
      expect(rustWith[0], name).toBe(0);
    }
  });

  it('decodes every text back exactly', async () => {
    for (const [name, text] of samples) {
      const ids = tok.encode(text);
      expect(tok.decode(ids, { skipSpecialTokens: true }), name).toBe(text.replace('<|eos|>', ''));
      if (ids.length > 1) expect(await rust.decode(ids, true), name).toBe(text.replace('<|eos|>', ''));
    }
    expect(tok.encode('a<|eos|>b', { addSpecialTokens: false })).toEqual([tok.tokenToId('a'), 1, tok.tokenToId('b')]);
  });

  it('compresses the training languages (fewer tokens than bytes)', () => {
    for (const [lang, arts] of corpus.heldout) {
      const text = arts.join('\n');
      expect(tok.encode(text, { addSpecialTokens: false }).length, lang).toBeLessThan(Buffer.byteLength(text) / 1.25);
    }
  });
});

describe('langneurons tokenizer train', () => {
  it('writes a tokenizer folder that loadTokenizer reads', async () => {
    const { main } = await import('../src/cli/main.js');
    const dir = await makeTempDir('langneurons-tokcli-');
    const write = process.stdout.write.bind(process.stdout);
    let out = '';
    process.stdout.write = ((s: string) => { out += s; return true; }) as typeof process.stdout.write;
    try {
      expect(await main(['node', 'langneurons', 'tokenizer', 'train', '--langs', 'en,ru', '--vocab', '400', '--out', dir, '--json'])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    try {
      const r = JSON.parse(out) as { vocab: number; tokens: number; bytes: number };
      expect(r.vocab).toBe(400);
      expect(r.tokens).toBeLessThan(r.bytes);
      const tok = await loadTokenizer(dir);
      expect(tok.vocabSize).toBe(400);
      expect(tok.decode(tok.encode('Все люди рождаются свободными'), { skipSpecialTokens: true })).toBe('Все люди рождаются свободными');
    } finally {
      await removeDir(dir);
    }
  });
});
