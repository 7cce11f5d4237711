// Defects found by running the model-free commands at paper scale (Llama-3.1-8B: 32 × 14336 = 458,752 units at
// `act`, 20–100 languages, per-sequence means, histograms). Each test reproduces the mechanism at a size that runs in
// seconds; the full-size cases (a tensor over 4 GiB, a histogram past V8's array limit) run with
// LANGNEURONS_LARGE_FILE_TESTS=1, as test/reliability-large-files.test.ts does.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';

import { analyzeOverlap } from '../src/analyze/masks.js';
import { topIndices } from '../src/identify/common.js';
import { identifyActProb } from '../src/identify/act-prob.js';
import { summarizeMask } from '../src/identify/mask-ops.js';
import type { NeuronMask } from '../src/identify/masks.js';
import { readSafetensorsHeader, readTensor, writeSafetensors } from '../src/io/safetensors.js';
import { readStats, writeStats, type ActivationStats, type SiteStats } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';

const ALL_LARGE = process.env['LANGNEURONS_LARGE_FILE_TESTS'] === '1';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-scale-qa-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => { vi.restoreAllMocks(); });

const FINGERPRINT = 'c'.repeat(64);

/** Statistics of one language at `act`, layers × width units, with optional per-sequence means and histogram. */
function statsOf(language: string, layers: number, width: number, o: { seqMeans?: Float32Array; bins?: number } = {}): ActivationStats {
  const units = layers * width, tokens = 1000;
  const overZero = Float64Array.from({ length: units }, (_, i) => (i * 37 + language.length * 101) % (tokens + 1));
  const st: SiteStats = { site: 'act', width, overZero, sum: Float64Array.from(overZero, (c) => c * 0.5), sumSq: Float64Array.from(overZero), absSum: Float64Array.from(overZero, (c) => c * 0.5 + 1) };
  if (o.seqMeans) st.seqMeans = o.seqMeans;
  if (o.bins) {
    const edges = Float64Array.from({ length: o.bins + 1 }, (_, b) => b / o.bins!);
    st.histogram = { edges, counts: Float64Array.from({ length: units * o.bins }, (_, i) => (i % 7 === 0 ? 2 ** 40 + i : i % 5)) };
  }
  return {
    meta: {
      format: 'langneurons-stats/1', language, layers: Array.from({ length: layers }, (_, i) => i),
      model: { name: 'toy', modelType: 'llama', layers, hidden: 8, intermediate: width, fingerprint: FINGERPRINT },
      scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
      corpus: { files: [`${language}.txt`], fingerprint: `c-${language}` }, toolVersion: 'test', shards: 1,
    },
    tokens, sequences: o.seqMeans ? o.seqMeans.length / units : 3, sites: new Map([['act', st]]),
  };
}

/** Fails when a typed array is made by TypedArray.from(source, mapFn) over `atLeast` values or more. */
function refuseMappedFrom(atLeast: number): void {
  for (const T of [BigInt64Array, Float64Array, Float32Array] as const) {
    const from = T.from.bind(T) as (...a: unknown[]) => unknown;
    vi.spyOn(T, 'from').mockImplementation(((src: ArrayLike<unknown>, mapFn?: unknown, thisArg?: unknown) => {
      if (typeof mapFn === 'function' && src.length >= atLeast)
        throw new Error(`${T.name}.from(${src.length} values, mapFn): V8 copies them into a JS array first and aborts the process past ~112M`);
      return from(src, mapFn, thisArg);
    }) as never);
  }
}

describe('counts convert element by element (TypedArray.from with a mapping function aborts V8 past ~112M values)', () => {
  // An 8B model's histogram at 256 bins per neuron holds 117M counts: writeStats (profile's last step, and each of its
  // checkpoints) and readStats died with "FATAL ERROR: invalid array length Allocation failed - JavaScript heap out of
  // memory", after 42 s and 4.3 GB, a crash no catch sees. Here: the same code path, on a small histogram.
  it('writeStats and readStats round-trip a histogram without a mapped TypedArray.from', async () => {
    const s = statsOf('en', 2, 48, { bins: 64 }); // 6,144 counts, some past 2^32
    const file = path.join(tmp, 'hist.safetensors');
    refuseMappedFrom(1000);
    await writeStats(file, s);
    const back = await readStats(file);
    vi.restoreAllMocks();
    const h = back.sites.get('act')!.histogram!;
    expect(h.counts).toEqual(s.sites.get('act')!.histogram!.counts);
    expect(back.sites.get('act')!.overZero).toEqual(s.sites.get('act')!.overZero);
  });

  it('act-prob divides by the tokens in a loop (Float64Array.from with a mapping function took 10 s over 100 languages)', () => {
    const inputs = ['en', 'fr'].map((l) => ({ file: `/stats/${l}.safetensors`, stats: statsOf(l, 2, 600) }));
    refuseMappedFrom(1000);
    for (const variant of ['act-prob-zero', 'act-prob-mean-abs'] as const) {
      const mask = identifyActProb(inputs, variant, { topRate: 0.01 });
      expect(summarizeMask(mask).total).toEqual({ en: 12, fr: 12 });
    }
  });

  it.skipIf(!ALL_LARGE)('a histogram of 2^27 + 1 counts is written and read back (LANGNEURONS_LARGE_FILE_TESTS=1)', async () => {
    const s = statsOf('en', 1, 8, { bins: 2 });
    const n = 2 ** 27 + 1;
    const counts = new Float64Array(n);
    counts[0] = 3; counts[n - 1] = 2 ** 40;
    const st = s.sites.get('act')!;
    st.width = 1; st.overZero = Float64Array.of(5); st.sum = Float64Array.of(0); st.sumSq = Float64Array.of(0); st.absSum = Float64Array.of(0);
    s.meta.model.intermediate = 1;
    st.histogram = { edges: Float64Array.from({ length: n + 1 }, (_, b) => b), counts };
    const file = path.join(tmp, 'hist-large.safetensors');
    await writeStats(file, s);
    const h = (await readStats(file)).sites.get('act')!.histogram!;
    expect([h.counts.length, h.counts[0], h.counts[n - 1]]).toEqual([n, 3, 2 ** 40]);
  }, 600_000);
});

describe('readers leave out the per-sequence means and histograms they do not use', () => {
  // identify --method lape on 20 languages with 100 sequence means each (3.7 GB of files at 8B) read every mean:
  // 30 s and 4.0 GB, against 4 s and 0.5 GB for the counts LAPE ranks; a language of 2,400 sequences could not be
  // read at all (a tensor over 4 GiB, below).
  it('readStats(file, { seqMeans: false, histogram: false }) reads the counts only, still checking the shapes', async () => {
    const units = 2 * 16;
    const s = statsOf('en', 2, 16, { seqMeans: Float32Array.from({ length: 3 * units }, (_, i) => i / 10), bins: 4 });
    const file = path.join(tmp, 'parts.safetensors');
    await writeStats(file, s);
    const lean = await readStats(file, { seqMeans: false, histogram: false });
    const st = lean.sites.get('act')!;
    expect(st.seqMeans).toBeUndefined();
    expect(st.histogram).toBeUndefined();
    expect(st.overZero).toEqual(s.sites.get('act')!.overZero);
    expect((await readStats(file)).sites.get('act')!.seqMeans).toEqual(s.sites.get('act')!.seqMeans);
    // A file whose sequence means do not fit its sequence count is refused even when they are left out.
    const wrong = statsOf('en', 2, 16, { seqMeans: new Float32Array(3 * units) });
    wrong.sequences = 4;
    const wrongFile = path.join(tmp, 'parts-wrong.safetensors');
    await writeStats(wrongFile, wrong);
    await expect(readStats(wrongFile, { seqMeans: false })).rejects.toThrow(/seq_means" has shape \[3, 2, 16\], expected \[4, 2, 16\]/);
  });

  it('identify --method lape does not read the sequence means (ap and raw-activated do)', async () => {
    const dir = path.join(tmp, 'lape-seq');
    mkdirSync(dir);
    const units = 2 * 64;
    for (const lang of ['en', 'fr', 'de']) {
      // Means LAPE never looks at: read, they would be refused (NaN is not a finite mean).
      await writeStats(path.join(dir, `${lang}.safetensors`), statsOf(lang, 2, 64, { seqMeans: new Float32Array(2 * units).fill(NaN) }));
    }
    const lape = await runCli('identify', dir, '--method', 'lape', '--out', path.join(tmp, 'lape-seq.json'), '--json');
    expect(lape.code, lape.stderr).toBe(0);
    const raw = await runCli('identify', dir, '--method', 'raw-activated', '--out', path.join(tmp, 'raw-seq.json'));
    expect(raw.code).toBe(1);
    expect(raw.stderr).toMatch(/seq_means" holds NaN/);
  });
});

it.skipIf(!ALL_LARGE)('a tensor over 4 GiB is written and read back (no typed array of its bytes is made at once; LANGNEURONS_LARGE_FILE_TESTS=1)', async () => {
  // The per-sequence means of 2,341 or more sequences at an 8B model's act exceed 4 GiB: writeStats failed with
  // "Invalid typed array length: 4294967312" at the end of a profile (or of stats merge), and readTensor likewise.
  const n = 2 ** 30 + 4;
  const data = new Float32Array(n);
  data[0] = 1.5; data[n - 1] = 2.5;
  const file = path.join(tmp, 'over-4g.safetensors');
  try {
    await writeSafetensors(file, { x: { dtype: 'F32', shape: [n], data } });
    const back = (await readTensor(file, (await readSafetensorsHeader(file)).tensors[0]!)) as Float32Array;
    expect([back.length, back[0], back[1], back[n - 1]]).toEqual([n, 1.5, 0, 2.5]);
  } finally {
    rmSync(file, { force: true });
  }
}, 600_000);

/** A mask of `K` languages over layers × width, each holding `per` units drawn from a shared pool (many overlaps). */
function maskOf(K: number, layers: number, width: number, per: number): NeuronMask {
  let seed = 42;
  const rand = () => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed / 4294967296; };
  const languages: Record<string, number[][]> = {};
  for (let k = 0; k < K; k++) {
    const perLayer: Set<number>[] = Array.from({ length: layers }, () => new Set());
    for (let i = 0; i < per; i++) perLayer[Math.floor(rand() * layers)]!.add(Math.floor(rand() * rand() * width));
    languages[`l${k}`] = perLayer.map((s) => [...s].sort((a, b) => a - b));
  }
  return {
    format: 'langneurons-mask/1', method: 'test', parameters: {}, site: 'act', sources: [], layers, width, languages,
    model: { name: 'toy', modelType: 'llama', layers, hidden: 8, intermediate: width, fingerprint: FINGERPRINT },
  };
}

describe('mask overlaps are counted unit by unit, not by intersecting every pair of languages', () => {
  it('summarizeMask and analyzeOverlap give the pairwise counts', () => {
    const mask = maskOf(7, 3, 50, 40);
    const sets = Object.values(mask.languages).map((pl) => new Set(pl.flatMap((u, l) => u.map((x) => `${l}:${x}`))));
    const names = Object.keys(mask.languages);
    const s = summarizeMask(mask);
    names.forEach((a, i) => names.forEach((b, j) => expect(s.overlap[a]![b], `${a} ${b}`).toBe([...sets[i]!].filter((x) => sets[j]!.has(x)).length)));
    const all = new Map<string, number>();
    for (const set of sets) for (const x of set) all.set(x, (all.get(x) ?? 0) + 1);
    expect(s.union).toBe(all.size);
    expect(s.sharedBy.reduce((a, b) => a + b, 0)).toBe(all.size);
    expect(s.sharedBy[7]).toBe([...all.values()].filter((c) => c === 7).length);
    const o = analyzeOverlap(mask);
    o.languages.forEach((a, i) => o.languages.forEach((b, j) => expect(o.counts[i]![j]).toBe(s.overlap[a]![b])));
    expect(o.sizes).toEqual(o.languages.map((l) => s.total[l]));
  });

  // masks show of 100 languages × 22,938 neurons (act-prob-mean-abs --top-rate 0.05 at 8B) took 20.5 s (1.9 s now);
  // analyze overlap 23 s, most of it the K² set intersections. Here 100 languages × 5,000 units: the pairwise
  // intersections cost 50M set lookups (several seconds), the pass over the units a few milliseconds.
  it('summarizeMask of 100 languages is linear in the units', () => {
    const mask = maskOf(100, 32, 14336, 5000);
    const t = performance.now();
    const s = summarizeMask(mask);
    expect(performance.now() - t).toBeLessThan(3000); // ~0.4 s; the pairwise intersections took 5.8 s
    expect(Object.keys(s.overlap)).toHaveLength(100);
  });
});

describe('topIndices orders only the best units', () => {
  // act-prob over 100 languages sorted every one of 458,752 indices by comparator for each language (~0.25 s each);
  // the selection must be the same, ties by the lower index and NaN never ranked.
  it('selects what a full sort selects, ties and NaN included', () => {
    let seed = 7;
    const rand = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
    const pool = [NaN, -0, 0, 1, 2, -1, Infinity, -Infinity, 0.5];
    const reference = (x: Float64Array, count: number, largest: boolean) => {
      const idx = [...x.keys()].filter((i) => !Number.isNaN(x[i]!));
      idx.sort((a, b) => (largest ? -1 : 1) * (x[a]! - x[b]!) || a - b);
      return idx.slice(0, Math.max(0, count));
    };
    for (let t = 0; t < 500; t++) {
      const n = 1 + Math.floor(rand() * 60);
      const x = Float64Array.from({ length: n }, () => (rand() < 0.7 ? pool[Math.floor(rand() * pool.length)]! : rand()));
      for (const count of [0, 1, 2, Math.floor(rand() * n), n, n + 3, -1])
        for (const largest of [true, false]) expect(topIndices(x, count, largest)).toEqual(reference(x, count, largest));
    }
  });
});
