// The statistics contract: file round trip, exact merging, and refusals that name what differs.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { actProbScores } from '../src/identify/act-prob.js';
import { activationProbability, mergeStats, readStats, writeStats, type ActivationStats } from '../src/profile/stats.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

function make(lang: string, tokens: number, overZero: number[], extra: Partial<ActivationStats['meta']> = {}): ActivationStats {
  const width = overZero.length / 2;
  return {
    meta: {
      format: 'langneurons-stats/1',
      model: { name: 'm', modelType: 'llama', layers: 2, hidden: 4, intermediate: width, fingerprint: 'f'.repeat(64) },
      language: lang,
      scope: { mode: 'windows', maxLen: 8, bos: false, countPadding: false, tokenBudget: 0 },
      layers: [0, 1],
      corpus: { files: [`${lang}.txt`], fingerprint: 'c1' },
      toolVersion: '0.1.0',
      shards: 1,
      ...extra,
    },
    tokens,
    sequences: 2,
    sites: new Map([['act', {
      site: 'act', width,
      overZero: Float64Array.from(overZero),
      sum: Float64Array.from(overZero, (x) => x * 0.5),
      sumSq: Float64Array.from(overZero, (x) => x * 0.25),
      histogram: { edges: Float64Array.of(-1, 0, 1), counts: Float64Array.from({ length: overZero.length * 2 }, (_, i) => i) },
      seqMeans: Float32Array.from({ length: 2 * overZero.length }, (_, i) => i / 10),
    }]]),
  };
}

const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await removeDir(d); });

describe('activation statistics', () => {
  it('round-trips through a safetensors file', async () => {
    const dir = await makeTempDir(); dirs.push(dir);
    const s = make('sw', 10, [1, 2, 3, 0, 5, 6]);
    const f = path.join(dir, 'sw.safetensors');
    await writeStats(f, s);
    const r = await readStats(f);
    expect(r.meta).toEqual(s.meta);
    expect(r.tokens).toBe(10);
    const a = r.sites.get('act')!;
    expect(Array.from(a.overZero)).toEqual([1, 2, 3, 0, 5, 6]);
    expect(Array.from(a.sumSq)).toEqual([0.25, 0.5, 0.75, 0, 1.25, 1.5]);
    expect(Array.from(a.histogram!.counts)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(a.seqMeans!.length).toBe(12);
    expect(Array.from(activationProbability(r))).toEqual([0.1, 0.2, 0.3, 0, 0.5, 0.6]);
  });

  it('merges shards by adding counts and sums and concatenating sequence means', () => {
    const a = make('sw', 10, [1, 2, 3, 0, 5, 6]);
    const b = make('sw', 4, [0, 1, 1, 4, 0, 2], { corpus: { files: ['sw.txt'], fingerprint: 'c1' } });
    const m = mergeStats(a, b);
    expect(m.tokens).toBe(14);
    expect(m.sequences).toBe(4);
    expect(m.meta.shards).toBe(2);
    expect(Array.from(m.sites.get('act')!.overZero)).toEqual([1, 3, 4, 4, 5, 8]);
    expect(m.sites.get('act')!.seqMeans!.length).toBe(24);
    expect(Array.from(m.sites.get('act')!.histogram!.counts)).toEqual(Array.from({ length: 12 }, (_, i) => 2 * i));
  });

  it('refuses to merge statistics of different models, languages, layers or scopes, naming both', () => {
    const a = make('sw', 10, [1, 2, 3, 0, 5, 6]);
    const other = (x: Partial<ActivationStats['meta']>) => make('sw', 1, [0, 0, 0, 0, 0, 0], x);
    expect(() => mergeStats(a, other({ model: { ...a.meta.model, fingerprint: 'e'.repeat(64) } }), ['p1.safetensors', 'p2.safetensors']))
      .toThrow(/cannot merge p1\.safetensors and p2\.safetensors: different models/);
    expect(() => mergeStats(a, make('de', 1, [0, 0, 0, 0, 0, 0]))).toThrow(/different languages \(sw vs de\)/);
    expect(() => mergeStats(a, other({ layers: [0] }))).toThrow(/different layers/);
    expect(() => mergeStats(a, other({ scope: { ...a.meta.scope, maxLen: 16 } }))).toThrow(/different token scopes/);
  });

  it('rejects files that are not statistics, with the file named', async () => {
    const dir = await makeTempDir(); dirs.push(dir);
    const f = path.join(dir, 'bad.safetensors');
    await fsp.writeFile(f, Buffer.from('not a safetensors file at all'));
    await expect(readStats(f)).rejects.toThrow(/bad\.safetensors/);
    const { writeSafetensors } = await import('../src/io/safetensors.js');
    await writeSafetensors(f, { x: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
    await expect(readStats(f)).rejects.toThrow(/bad\.safetensors: not a langneurons statistics file/);
  });

  it('keeps Σ|value| (abs_sum): round trip, merge adds it, files without it still read, act-prob-mean-abs uses it', async () => {
    const dir = await makeTempDir(); dirs.push(dir);
    const withAbs = (x: ActivationStats, abs: number[]) => { x.sites.get('act')!.absSum = Float64Array.from(abs); return x; };
    const a = withAbs(make('sw', 10, [1, 2, 3, 0, 5, 6]), [1.5, 2, 3, 0.25, 5, 6]);
    const f = path.join(dir, 'sw.safetensors');
    await writeStats(f, a);
    const r = await readStats(f);
    expect(Array.from(r.sites.get('act')!.absSum!)).toEqual([1.5, 2, 3, 0.25, 5, 6]);
    // an older file (no abs_sum tensor) reads without it
    const old = make('sw', 4, [0, 1, 1, 4, 0, 2]);
    const fOld = path.join(dir, 'old.safetensors');
    await writeStats(fOld, old);
    expect((await readStats(fOld)).sites.get('act')!.absSum).toBeUndefined();
    // merge adds it when both have it, and drops it when one shard lacks it
    const b = withAbs(make('sw', 4, [0, 1, 1, 4, 0, 2]), [1, 1, 1, 1, 1, 1]);
    expect(Array.from(mergeStats(a, b).sites.get('act')!.absSum!)).toEqual([2.5, 3, 4, 1.25, 6, 7]);
    expect(mergeStats(a, old).sites.get('act')!.absSum).toBeUndefined();
    // act-prob-mean-abs: Σ|value| / tokens, not a histogram estimate
    const de = withAbs(make('de', 5, [1, 1, 1, 1, 1, 1]), [5, 0, 0, 0, 0, 10]);
    const exact = actProbScores([{ file: f, stats: r }, { file: 'de', stats: de }], 'act-prob-mean-abs');
    expect(exact.estimated).toBe(false);
    expect(Array.from(exact.scores[0]!)).toEqual([0.15, 0.2, 0.3, 0.025, 0.5, 0.6]);
    expect(Array.from(exact.scores[1]!)).toEqual([1, 0, 0, 0, 0, 2]);
    const est = actProbScores([{ file: fOld, stats: await readStats(fOld) }, { file: 'de', stats: make('de', 5, [1, 1, 1, 1, 1, 1]) }], 'act-prob-mean-abs');
    expect(est.estimated).toBe(true);
  });
});

describe('--stats as a list (a sweep step\'s every language, each in its own profiling step\'s folder)', () => {
  it('finds <lang>.safetensors among files and folders, and names the list when a language is missing', async () => {
    const { languageStatsFile } = await import('../src/profile/stats.js');
    const dir = await makeTempDir('ln-stats-list-');
    try {
      await fsp.mkdir(path.join(dir, 'a'));
      await fsp.writeFile(path.join(dir, 'a', 'sw.safetensors'), '');
      const mt = path.join(dir, 'b', 'mt.safetensors');
      const list = `${mt},${path.join(dir, 'a')}`;
      expect(languageStatsFile(list, 'mt')).toBe(mt);
      expect(languageStatsFile(list, 'sw')).toBe(path.join(dir, 'a', 'sw.safetensors'));
      expect(() => languageStatsFile(list, 'de')).toThrow(/statistics: no de\.safetensors among .*b\/mt\.safetensors, .*\/a \(a list names files/);
      expect(languageStatsFile(path.join(dir, 'a'), 'de')).toBe(path.join(dir, 'a', 'de.safetensors')); // a folder as before
    } finally {
      await removeDir(dir);
    }
  });
});
