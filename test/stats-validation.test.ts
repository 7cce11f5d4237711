// Statistics files and imported Tang counts are checked when read: impossible values (counts above the tokens or
// negative, NaN sums, negative sums of squares, sequence means of another number of sequences) and malformed
// metadata (a field missing or of the wrong type, a language id that is not a plain name) are one line naming the
// file and the field or tensor, never a mask computed from them nor a raw TypeError. A Tang file without sums
// records them as absent: counts work, a mean is refused, nothing reads zeros.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { statsFromTang, statsToTang } from '../src/identify/tang.js';
import { neuronStatistic } from '../src/intervene/resolve.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { writeTorchFile, type TorchTensor } from '../src/io/torch-file.js';
import { activationProbability, mergeStats, readStats, writeStats, type ActivationStats, type ModelIdentity, type SiteStats } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

const L = 2, W = 3;
const model: ModelIdentity = { name: 'm', modelType: 'llama', layers: L, hidden: 4, intermediate: W, fingerprint: 'f'.repeat(64) };

/** Statistics of 10 tokens in 2 sequences, with every optional array, all values possible. */
function good(): ActivationStats {
  const n = L * W;
  return {
    meta: { format: 'langneurons-stats/1', model: { ...model }, language: 'sw', layers: [0, 1],
      scope: { mode: 'windows', maxLen: 8, bos: false, countPadding: false, tokenBudget: 0 },
      corpus: { files: ['sw.txt'], fingerprint: 'c1' }, toolVersion: '0.1.0', shards: 1, compute: 'f32' },
    tokens: 10, sequences: 2,
    sites: new Map([['act', {
      site: 'act', width: W, overZero: Float64Array.of(1, 2, 3, 0, 5, 10),
      sum: Float64Array.of(0.5, -1, 1.5, 0, 2.5, 3), sumSq: Float64Array.of(0.25, 1, 0.75, 0, 1.25, 1.5), absSum: Float64Array.of(0.5, 1, 1.5, 0, 2.5, 3),
      histogram: { edges: Float64Array.of(-1, 0, 1), counts: Float64Array.from({ length: n * 2 }, (_, i) => i % 5) },
      seqMeans: Float32Array.from({ length: 2 * n }, (_, i) => i / 10),
    } satisfies SiteStats]]),
  };
}

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-stats-validation-'); });
afterAll(async () => { await removeDir(tmp); });

let k = 0;
/** Writes s (whatever it holds: writeStats does not check) and returns the file. */
async function written(s: ActivationStats): Promise<string> {
  const f = path.join(tmp, `s${k++}.safetensors`);
  await writeStats(f, s);
  return f;
}
/** Writes good()'s tensors under the "langneurons" metadata `meta` (edited JSON). */
async function withMeta(edit: (meta: Record<string, unknown>) => void): Promise<string> {
  const f = await written(good());
  const meta = JSON.parse(JSON.stringify(good().meta)) as Record<string, unknown>;
  edit(meta);
  const s = good(), act = s.sites.get('act')!;
  const f2 = path.join(tmp, `m${k++}.safetensors`);
  await writeSafetensors(f2, {
    tokens: { dtype: 'I64', shape: [1], data: BigInt64Array.of(10n) }, sequences: { dtype: 'I64', shape: [1], data: BigInt64Array.of(2n) },
    'act.over_zero': { dtype: 'I64', shape: [L, W], data: BigInt64Array.from(act.overZero, (x) => BigInt(x)) },
    'act.sum': { dtype: 'F64', shape: [L, W], data: act.sum }, 'act.sum_sq': { dtype: 'F64', shape: [L, W], data: act.sumSq },
  }, { langneurons: JSON.stringify(meta) });
  await fsp.rm(f);
  return f2;
}
const site = (s: ActivationStats) => s.sites.get('act')!;

describe('readStats refuses impossible values, naming the file and the tensor', () => {
  it('reads a file of possible values (the reference for the cases below)', async () => {
    const r = await readStats(await written(good()));
    expect(Array.from(site(r).overZero)).toEqual([1, 2, 3, 0, 5, 10]);
    expect(r.meta.compute).toBe('f32');
  });

  const cases: [string, (s: ActivationStats) => void, RegExp][] = [
    ['over_zero above the tokens', (s) => { site(s).overZero[4] = 11; }, /tensor "act\.over_zero" holds 11 at \[1, 1\], which is not a count of tokens \(0 to tokens = 10\)/],
    ['a negative over_zero', (s) => { site(s).overZero[0] = -3; }, /tensor "act\.over_zero" holds -3 at \[0, 0\]/],
    ['NaN in the sums', (s) => { site(s).sum[2] = NaN; }, /tensor "act\.sum" holds NaN at \[0, 2\], which is not a finite sum/],
    ['an infinite sum', (s) => { site(s).sum[1] = -Infinity; }, /tensor "act\.sum" holds -Infinity/],
    ['a negative sum of squares', (s) => { site(s).sumSq[3] = -0.5; }, /tensor "act\.sum_sq" holds -0\.5 at \[1, 0\]/],
    ['a negative sum of |value|', (s) => { site(s).absSum![5] = -1; }, /tensor "act\.abs_sum" holds -1 at \[1, 2\]/],
    ['a negative histogram count', (s) => { site(s).histogram!.counts[7] = -2; }, /tensor "act\.hist_counts" holds -2 at \[1, 0, 1\]/],
    ['histogram edges not ascending', (s) => { site(s).histogram!.edges[1] = 5; }, /tensor "act\.hist_edges" is not finite and ascending \(at edge 2: 1\)/],
    ['sequence means of another number of sequences', (s) => { s.sequences = 3; }, /tensor "act\.seq_means" has shape \[2, 2, 3\], expected \[3, 2, 3\]/],
    ['NaN in the sequence means', (s) => { site(s).seqMeans![0] = NaN; }, /tensor "act\.seq_means" holds NaN at \[0, 0, 0\]/],
    ['negative tokens', (s) => { s.tokens = -1; }, /tensor "tokens" holds -1, not a count/],
  ];
  for (const [what, spoil, message] of cases) {
    it(what, async () => {
      const s = good();
      spoil(s);
      const f = await written(s);
      await expect(readStats(f)).rejects.toThrow(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${message.source}`));
    });
  }

  it('identify on such a file: one line naming it, exit 1, no mask', async () => {
    const s = good();
    site(s).overZero[1] = 1e6;
    const f = await written(s);
    const ok = await written({ ...good(), meta: { ...good().meta, language: 'en' } });
    const out = path.join(tmp, 'mask.json');
    const r = await runCli('identify', f, ok, '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^langneurons: error: .*: tensor "act\.over_zero" holds 1000000 at \[0, 1\]/)]);
    await expect(fsp.stat(out)).rejects.toThrow();
  });
});

describe('readStats checks the metadata, naming the file and the field', () => {
  const cases: [string, (m: Record<string, unknown>) => void, RegExp][] = [
    ['"model" missing', (m) => { delete m.model; }, /metadata field "model" must be an object/],
    ['"model.layers" a string', (m) => { m.model = { ...(m.model as object), layers: 'four' }; }, /metadata field "model\.layers" must be an integer ≥ 1/],
    ['"model.fingerprint" missing', (m) => { m.model = { ...(m.model as object), fingerprint: undefined }; }, /metadata field "model\.fingerprint" must be a non-empty string/],
    ['"language" a number', (m) => { m.language = 5; }, /metadata field "language" must be a string/],
    ['"language" a path', (m) => { m.language = '../../etc'; }, /metadata field "language": "\.\.\/\.\.\/etc" is not a plain language id/],
    ['"layers" not a list', (m) => { m.layers = 'four'; }, /metadata field "layers" must be a list of the profiled layers/],
    ['"layers" beyond the model', (m) => { m.layers = [0, 7]; }, /metadata field "layers" must be ascending distinct layer numbers in \[0, 2\)/],
    ['"scope.mode" unknown', (m) => { m.scope = { ...(m.scope as object), mode: 'tokens' }; }, /metadata field "scope\.mode" must be "windows" or "sentences"/],
    ['"scope.countBos" not a boolean', (m) => { m.scope = { ...(m.scope as object), countBos: 'yes' }; }, /metadata field "scope\.countBos" must be true or false/],
    ['"scope.longSentences" unknown', (m) => { m.scope = { ...(m.scope as object), longSentences: 'skip' }; }, /metadata field "scope\.longSentences" must be "truncate" or "drop"/],
    ['"corpus" missing', (m) => { delete m.corpus; }, /metadata field "corpus" must be an object/],
    ['"parts" of bad shards', (m) => { m.parts = [{ corpus: 'c', shard: [3, 2], budget: 0, id: 'x' }]; }, /metadata field "parts\[0\]\.shard" must be null/],
    ['"compute" unknown', (m) => { m.compute = 'f16'; }, /metadata field "compute" must be one of f32, bf16/],
    ['not an object', (m) => { for (const key of Object.keys(m)) delete m[key]; Object.assign(m, { format: 'langneurons-stats/1', model: [] }); }, /metadata field "model" must be an object/],
  ];
  for (const [what, edit, message] of cases) {
    it(what, async () => {
      const f = await withMeta(edit);
      await expect(readStats(f)).rejects.toThrow(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${message.source}`));
    });
  }

  it('identify on a file without "model": one line naming the file, not a TypeError', async () => {
    const f = await withMeta((m) => { delete m.model; });
    const r = await runCli('identify', f, await written({ ...good(), meta: { ...good().meta, language: 'en' } }), '--out', path.join(tmp, 'mask2.json'));
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`langneurons: error: ${f}: metadata field "model" must be an object`]);
  });

  it('files written before the compute mode was recorded still read, without it', async () => {
    const f = await withMeta((m) => { delete m.compute; });
    expect((await readStats(f)).meta.compute).toBeUndefined();
  });
});

describe('Tang counts are checked when imported', () => {
  const tensor = (values: number[], dtype: 'int32' | 'float32' = 'int32'): TorchTensor =>
    ({ dtype, shape: [L, W], data: dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values) });
  const tang = (o: { n?: unknown; overZero?: number[]; sum1?: number[] | null; sum2?: number[] | null } = {}) => {
    const m = new Map<string, unknown>([['n', o.n ?? 10], ['over_zero', tensor(o.overZero ?? [1, 2, 3, 0, 5, 10])]]);
    if (o.sum1 !== null) m.set('sum1', tensor(o.sum1 ?? [0.5, 1, 1.5, 0, 2.5, 3], 'float32'));
    if (o.sum2 !== null) m.set('sum2', tensor(o.sum2 ?? [0.25, 1, 0.75, 0, 1.25, 1.5], 'float32'));
    return m;
  };
  const opts = { language: 'en', model, maxLen: 4, sha256: 'a'.repeat(64) };

  it('refuses counts above n or negative, NaN or infinite sums, negative sums of squares, n = 0, naming the key and the place', () => {
    expect(statsFromTang(tang(), opts, 'ok.pt').tokens).toBe(10);
    expect(() => statsFromTang(tang({ overZero: [1, 2, 3, 0, 11, 0] }), opts, 'c.pt'))
      .toThrow(/^c\.pt: 'over_zero' holds 11 at layer 1, neuron 1, which is not a count of tokens \(an integer from 0 to n = 10\)/);
    expect(() => statsFromTang(tang({ overZero: [1, -2, 3, 0, 1, 0] }), opts, 'c.pt')).toThrow(/^c\.pt: 'over_zero' holds -2 at layer 0, neuron 1/);
    expect(() => statsFromTang(tang({ sum1: [0, 0, NaN, 0, 0, 0] }), opts, 'c.pt')).toThrow(/^c\.pt: 'sum1' holds NaN at layer 0, neuron 2, which is not a finite sum/);
    expect(() => statsFromTang(tang({ sum1: [0, 0, 0, Infinity, 0, 0] }), opts, 'c.pt')).toThrow(/^c\.pt: 'sum1' holds Infinity at layer 1, neuron 0/);
    expect(() => statsFromTang(tang({ sum2: [0, 0, 0, 0, -1, 0] }), opts, 'c.pt')).toThrow(/^c\.pt: 'sum2' holds -1 at layer 1, neuron 1/);
    expect(() => statsFromTang(tang({ n: 0, overZero: [0, 0, 0, 0, 0, 0] }), opts, 'c.pt')).toThrow(/^c\.pt: 'n' must be the number of tokens counted \(at least 1\), got 0/);
    expect(() => statsFromTang(tang({ sum2: null }), opts, 'c.pt')).toThrow(/^c\.pt: the dict has 'sum1' but no 'sum2'/);
    expect(() => statsFromTang(tang(), { ...opts, language: '../x' }, 'c.pt')).toThrow(/language id "\.\.\/x" is not a plain name/);
  });

  it('a file without sums: counts usable, sums recorded as absent (no zeros), a mean refused naming the file', async () => {
    const s = statsFromTang(tang({ sum1: null, sum2: null }), opts, 'counts-only.pt');
    expect(Array.from(activationProbability(s))).toEqual([0.1, 0.2, 0.3, 0, 0.5, 1]);
    expect(site(s).sumsAbsent).toBe(true);
    expect(() => site(s).sum).toThrow(/^counts-only\.pt: site act holds no sums of the values/);
    expect(() => neuronStatistic(s, site(s), 'mean', 0, 0)).toThrow(/^counts-only\.pt: site act holds no sums/);
    // Written without sum tensors, read back the same way; merged with a file that has sums, the total has none.
    const f = path.join(tmp, 'counts-only.safetensors');
    await writeStats(f, s);
    const r = await readStats(f);
    expect(site(r).sumsAbsent).toBe(true);
    // stats show says so (it printed nothing of it)
    const shown = await runCli('stats', 'show', f);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/site act .*counts only \(no sums: LAPE and act-prob work; means and variances are refused\)/);
    const shownJson = await runCli('stats', 'show', f, '--json');
    expect((JSON.parse(shownJson.stdout).sites as { sums: boolean }[]).map((x) => x.sums)).toEqual([false]);
    expect(() => neuronStatistic(r, site(r), 'mean', 0, 0)).toThrow(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: site act holds no sums`));
    const withSums = statsFromTang(tang(), { ...opts, sha256: 'b'.repeat(64) }, 'ok.pt');
    const merged = mergeStats(withSums, r, ['ok.pt', f]);
    expect(Array.from(site(merged).overZero)).toEqual([2, 4, 6, 0, 10, 20]);
    expect(site(merged).sumsAbsent).toBe(true);
    // Exported back to Tang's format: no sums rather than zeros.
    expect(Object.keys(statsToTang(r) as object).sort()).toEqual(['n', 'over_zero']);
  });

  it('stats import of a bad file: one line naming it, exit 1, nothing written', async () => {
    const stories = fixturePath('stories260k');
    const I = 172, layers = 5;
    const overZero = new Int32Array(layers * I).fill(3);
    overZero[I + 7] = 2000;
    const bad = path.join(tmp, 'bad.pt');
    await writeTorchFile(bad, { n: 1000, over_zero: { dtype: 'int32', shape: [layers, I], data: overZero } });
    const out = path.join(tmp, 'bad.safetensors');
    const r = await runCli('stats', 'import', bad, '--lang', 'en', '--model', stories, '--max-len', '100', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`langneurons: error: ${bad}: 'over_zero' holds 2000 at layer 1, neuron 7, which is not a count of tokens (an integer from 0 to n = 1000)`]);
    await expect(fsp.stat(out)).rejects.toThrow();
  });
});
