import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import type { LoadedTokenizer } from '../src/model/tokenizer.js';
import {
  openCorpus,
  scopeBatches,
  START_POSITION,
  type BatchOptions,
  type DocumentSource,
  type SequenceBatch,
} from '../src/corpus/index.js';
import { BOS, byteIds, byteTokenizer, collect, writeFiles } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

let tok: LoadedTokenizer;
beforeAll(async () => {
  tok = await byteTokenizer();
});

const docs = (...texts: string[]): DocumentSource => ({
  async *documents() {
    yield* texts;
  },
});

type Scope = BatchOptions['scope'];
const windows = (maxLen: number, extra: Partial<Scope> = {}): Scope => ({ mode: 'windows', maxLen, bos: false, tokenBudget: 0, ...extra });
const sentences = (maxLen: number, extra: Partial<Scope> = {}): Scope => ({ mode: 'sentences', maxLen, bos: false, tokenBudget: 0, ...extra });

async function run(source: DocumentSource, options: Omit<BatchOptions, 'batchTokens'> & { batchTokens?: number }): Promise<SequenceBatch[]> {
  return collect(scopeBatches(source, tok, { batchTokens: 1 << 20, ...options }));
}
const seqs = (batches: SequenceBatch[]) => batches.flatMap((b) => b.sequences);
const masks = (batches: SequenceBatch[]) => batches.flatMap((b) => b.countMask);
const ids = (s: string) => byteIds(s);

describe('windows scope', () => {
  it('cuts the concatenated stream into maxLen windows, keeping the last partial one', async () => {
    const out = await run(docs('abc', 'defg'), { scope: windows(3) });
    expect(seqs(out)).toEqual([ids('abc'), ids('def'), ids('g')]);
    expect(masks(out)).toEqual([[1, 1, 1], [1, 1, 1], [1]]);
    expect(out[0]!.tokens).toBe(7);
  });

  it('feeds an uncounted BOS before each window when asked (same windows)', async () => {
    const out = await run(docs('abc', 'defg'), { scope: windows(3, { bos: true }) });
    expect(seqs(out)).toEqual([[BOS, ...ids('abc')], [BOS, ...ids('def')], [BOS, ...ids('g')]]);
    expect(masks(out)).toEqual([[0, 1, 1, 1], [0, 1, 1, 1], [0, 1]]);
    expect(out.reduce((n, b) => n + b.tokens, 0)).toBe(7);
  });

  it('windows span documents; multi-byte characters are several byte tokens', async () => {
    expect(seqs(await run(docs('ab', 'cde', 'f'), { scope: windows(4) }))).toEqual([ids('abcd'), ids('ef')]);
    expect(seqs(await run(docs('ħa'), { scope: windows(2) }))).toEqual([ids('ħ'), ids('a')]);
  });

  it('stops at the token budget exactly, truncating the last window', async () => {
    const out = await run(docs('abc', 'defg'), { scope: windows(3, { tokenBudget: 5, bos: true }) });
    expect(seqs(out)).toEqual([[BOS, ...ids('abc')], [BOS, ...ids('de')]]);
    expect(out.reduce((n, b) => n + b.tokens, 0)).toBe(5);
    expect(seqs(await run(docs('abc', 'defg'), { scope: windows(3, { tokenBudget: 6 }) }))).toEqual([ids('abc'), ids('def')]);
    expect(seqs(await run(docs('ab'), { scope: windows(3, { tokenBudget: 100 }) }))).toEqual([ids('ab')]);
  });

  it('partialWindow drop keeps whole windows only, as Tang\'s activation.py (l // max_length * max_length)', async () => {
    const out = await run(docs('abc', 'defg'), { scope: windows(3, { partialWindow: 'drop' }) });
    expect(seqs(out)).toEqual([ids('abc'), ids('def')]);
    expect(out.reduce((n, b) => n + b.tokens, 0)).toBe(6);
    // the budget's cut: min(7, 5) // 3 * 3 = 3 tokens; a budget of whole windows is met exactly
    expect(seqs(await run(docs('abc', 'defg'), { scope: windows(3, { partialWindow: 'drop', tokenBudget: 5 }) }))).toEqual([ids('abc')]);
    expect(seqs(await run(docs('abc', 'defg'), { scope: windows(3, { partialWindow: 'drop', tokenBudget: 6 }) }))).toEqual([ids('abc'), ids('def')]);
    expect(seqs(await run(docs('ab'), { scope: windows(3, { partialWindow: 'drop' }) }))).toEqual([]);
    // shards of the same stream drop the same window: together they are the single run
    const shards = await Promise.all([0, 1].map((index) => run(docs('abc', 'defg', 'hij', 'k'), { scope: windows(3, { partialWindow: 'drop' }), shard: { index, count: 2 } })));
    expect(shards.map((b) => seqs(b))).toEqual([[ids('abc'), ids('ghi')], [ids('def')]]); // (jk left out)
    await expect(run(docs('abc'), { scope: sentences(3, { partialWindow: 'drop' }) })).rejects.toThrow(/partialWindow "drop" applies to the windows scope/);
  });
});

describe('sentences scope', () => {
  it('one sequence per document, truncated to maxLen, BOS fed and never counted', async () => {
    expect(seqs(await run(docs('abc', 'defg', 'h'), { scope: sentences(3) }))).toEqual([ids('abc'), ids('def'), ids('h')]);
    const withBos = await run(docs('abc', 'defg'), { scope: sentences(3, { bos: true }) });
    expect(seqs(withBos)).toEqual([[BOS, ...ids('abc')], [BOS, ...ids('def')]]);
    expect(masks(withBos)).toEqual([[0, 1, 1, 1], [0, 1, 1, 1]]);
    expect(withBos[0]!.tokens).toBe(6);
  });

  it("Kojima's countBos: the BOS is fed and counted as one of the sentence's tokens (mask 1, counted, budget)", async () => {
    // selfcond (kojima-takeshi188/lang_neuron, selfcond/data.py: tokenizer.encode(text) adds <s>; responses.py keeps every
    // non-padding position; models.py pools them by np.mean) averages over the BOS too.
    const out = await run(docs('abc', 'defg'), { scope: sentences(3, { bos: true, countBos: true }) });
    expect(seqs(out)).toEqual([[BOS, ...ids('abc')], [BOS, ...ids('def')]]);
    expect(masks(out)).toEqual([[1, 1, 1, 1], [1, 1, 1, 1]]);
    expect(out[0]!.tokens).toBe(8);
    expect(out.at(-1)!.position).toEqual({ documentIndex: 2, tokenOffset: 0, sequencesEmitted: 2, tokensCounted: 8 });
    // the budget counts the BOS: 6 = BOS + abc, BOS + de; a budget with room for the BOS only ends the language
    expect(seqs(await run(docs('abc', 'defg'), { scope: sentences(3, { bos: true, countBos: true, tokenBudget: 7 }) }))).toEqual([[BOS, ...ids('abc')], [BOS, ...ids('de')]]);
    expect(seqs(await run(docs('abc', 'defg'), { scope: sentences(3, { bos: true, countBos: true, tokenBudget: 5 }) }))).toEqual([[BOS, ...ids('abc')]]);
  });

  it("Kojima's longSentences 'drop': a sentence over maxLen is left out, not cut (no sequence id taken)", async () => {
    // selfcond/data.py _remove_too_long_data drops sentences of more than seq_len tokens
    const out = await run(docs('abc', 'defg', 'h'), { scope: sentences(3, { longSentences: 'drop' }) });
    expect(seqs(out)).toEqual([ids('abc'), ids('h')]);
    expect(out.flatMap((b) => b.sequenceIds)).toEqual([0, 1]);
    expect(out.at(-1)!.position).toEqual({ documentIndex: 3, tokenOffset: 0, sequencesEmitted: 2, tokensCounted: 4 });
    expect(seqs(await run(docs('abc', 'defg', 'h'), { scope: sentences(3, { longSentences: 'truncate' }) }))).toEqual([ids('abc'), ids('def'), ids('h')]);
  });

  it('stops at the budget exactly', async () => {
    const out = await run(docs('abc', 'defg', 'hij'), { scope: sentences(10, { tokenBudget: 5 }) });
    expect(seqs(out)).toEqual([ids('abc'), ids('de')]);
    expect(out.at(-1)!.position).toEqual({ documentIndex: 2, tokenOffset: 0, sequencesEmitted: 2, tokensCounted: 5 });
  });
});

describe('batches', () => {
  it('packs whole sequences into batches of at most batchTokens fed tokens', async () => {
    const noBos = await run(docs('abcdefghij'), { scope: windows(3), batchTokens: 7 });
    expect(noBos.map((b) => b.sequences.map((s) => s.length))).toEqual([[3, 3], [3, 1]]);
    expect(noBos.map((b) => b.tokens)).toEqual([6, 4]);
    expect(noBos[0]!.position).toEqual({ documentIndex: 0, tokenOffset: 6, sequencesEmitted: 2, tokensCounted: 6 });
    expect(noBos[1]!.position).toEqual({ documentIndex: 1, tokenOffset: 0, sequencesEmitted: 4, tokensCounted: 10 });
    const withBos = await run(docs('abcdefghij'), { scope: windows(3, { bos: true }), batchTokens: 8 });
    expect(withBos.map((b) => b.sequences.map((s) => s.length))).toEqual([[4, 4], [4, 2]]);
    expect(withBos.map((b) => b.sequenceIds)).toEqual([[0, 1], [2, 3]]);
  });

  it('refuses bad options with LangneuronsError', async () => {
    const bad = async (options: BatchOptions, pattern: RegExp, tokenizer = tok) => {
      const err = await collect(scopeBatches(docs('abc'), tokenizer, options)).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(LangneuronsError);
      expect((err as Error).message).toMatch(pattern);
    };
    await bad({ scope: windows(4, { bos: true }), batchTokens: 4 }, /at least one full sequence \(5 tokens\)/);
    await bad({ scope: windows(0), batchTokens: 4 }, /maxLen/);
    await bad({ scope: windows(3), batchTokens: 4, shard: { index: 2, count: 2 } }, /shard index/);
    await bad({ scope: sentences(3), batchTokens: 4, resumeFrom: { ...START_POSITION, tokenOffset: 2 } }, /sentences-mode resume/);
    await bad({ scope: windows(3), batchTokens: 4, resumeFrom: { ...START_POSITION, documentIndex: 5 } }, /only 1 documents/);
    await bad({ scope: sentences(3, { countBos: true }), batchTokens: 8 }, /countBos .* needs the sentences scope with bos/);
    await bad({ scope: windows(3, { bos: true, countBos: true }), batchTokens: 8 }, /countBos .* needs the sentences scope with bos/);
    await bad({ scope: windows(3, { longSentences: 'drop' }), batchTokens: 8 }, /applies to the sentences scope/);
    const noBosTokenizer = { encode: (t: string) => byteIds(t), bosTokenId: null };
    await bad({ scope: windows(3, { bos: true }), batchTokens: 4 }, /no BOS token/, noBosTokenizer as unknown as LoadedTokenizer);
  });
});

// A corpus with documents of varied lengths (1-40 characters, some multi-byte) from a fixed LCG.
function variedDocs(count: number): string[] {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const alphabet = ['a', 'b', 'c', ' ', 'ħ', 'ż', '中', 'é', '\t'];
  return Array.from({ length: count }, () => Array.from({ length: 1 + (next() % 40) }, () => alphabet[next() % alphabet.length]).join(''));
}

const CASES: [string, Scope, number][] = [
  ['windows', windows(16), 40],
  ['windows + BOS + budget', windows(7, { bos: true, tokenBudget: 900 }), 30],
  ['sentences', sentences(20), 45],
  ['sentences + BOS + budget', sentences(25, { bos: true, tokenBudget: 700 }), 60],
  ['sentences + counted BOS + dropped long ones + budget (Kojima)', sentences(25, { bos: true, countBos: true, longSentences: 'drop', tokenBudget: 500 }), 60],
];

describe.each(CASES)('resume, shards and determinism: %s', (_name, scope, batchTokens) => {
  const source = docs(...variedDocs(120));

  it('is deterministic', async () => {
    expect(await run(source, { scope, batchTokens })).toEqual(await run(source, { scope, batchTokens }));
  });

  it('resuming from the position after batch k yields exactly the remaining batches', async () => {
    const full = await run(source, { scope, batchTokens });
    expect(full.length).toBeGreaterThan(5);
    for (let k = 0; k < full.length; k++) {
      const rest = await run(source, { scope, batchTokens, resumeFrom: full[k]!.position });
      expect([...full.slice(0, k + 1), ...rest]).toEqual(full);
    }
  });

  it('shards partition the sequences round-robin and resume on their own', async () => {
    const single = seqs(await run(source, { scope, batchTokens }));
    const totalTokens = (await run(source, { scope, batchTokens })).reduce((n, b) => n + b.tokens, 0);
    const count = 3;
    const sharded: SequenceBatch[][] = [];
    for (let index = 0; index < count; index++) sharded.push(await run(source, { scope, batchTokens, shard: { index, count } }));
    // Sequence i goes to shard i % count.
    for (let index = 0; index < count; index++) {
      const got = sharded[index]!.flatMap((b) => b.sequenceIds);
      expect(got).toEqual(single.map((_, i) => i).filter((i) => i % count === index));
      expect(seqs(sharded[index]!)).toEqual(single.filter((_, i) => i % count === index));
    }
    const key = (s: number[]) => s.join(',');
    expect(sharded.flatMap(seqs).map(key).sort()).toEqual(single.map(key).sort());
    expect(sharded.flat().reduce((n, b) => n + b.tokens, 0)).toBe(totalTokens);
    // A shard resumed mid-way continues exactly.
    const shard1 = sharded[1]!;
    const k = Math.floor(shard1.length / 2);
    const rest = await run(source, { scope, batchTokens, shard: { index: 1, count }, resumeFrom: shard1[k]!.position });
    expect([...shard1.slice(0, k + 1), ...rest]).toEqual(shard1);
  });
});

describe('end to end', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('langneurons-scopes-');
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('a folder corpus through the fixture tokenizer: "abc\\ndefg" with maxLen 3', async () => {
    await writeFiles(dir, { 'en.txt': 'abc\ndefg\n' });
    const corpus = await openCorpus(dir);
    const out = await collect(scopeBatches(corpus.source('en'), tok, { scope: windows(3, { bos: true }), batchTokens: 8 }));
    expect(out.map((b) => b.sequences)).toEqual([[[BOS, 100, 101, 102], [BOS, 103, 104, 105]], [[BOS, 106]]]);
    expect(out.map((b) => b.position)).toEqual([
      { documentIndex: 1, tokenOffset: 3, sequencesEmitted: 2, tokensCounted: 6 }, // "defg" resumes at "g"
      { documentIndex: 2, tokenOffset: 0, sequencesEmitted: 3, tokensCounted: 7 },
    ]);
    expect(path.basename(corpus.source('en').files[0]!)).toBe('en.txt');
  });
});
