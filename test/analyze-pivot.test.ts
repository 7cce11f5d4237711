// `results pivot` on hand-made result files (nested folders, other JSON files, older and newer record shapes):
// the table, Δ against the baseline, the means over all and the low-resource rows, worked by hand.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pivotResults, readResultsRecursive } from '../src/analyze/pivot.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';
import { decodePng, inkOf } from './helpers/png.js';
import { runCli } from './helpers/cli.js';

let dir: string;
const result = (lang: string, variant: unknown, acc: number, extra: Record<string, unknown> = {}) => ({
  schema: 'langneurons.eval/1', task: 'xcopa', lang, variant, model: 'm', prompt: 'default', data: [], toolVersion: 't', items: 100,
  metrics: { acc, acc_norm: acc / 2, note: 'text metrics are ignored' }, created: '2025-01-01', ...extra,
});

beforeAll(async () => {
  dir = await makeTempDir('ln-pivot-');
  const put = async (rel: string, v: unknown) => {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fsp.writeFile(path.join(dir, rel), JSON.stringify(v));
  };
  // base: en 0.8, de 0.7, mt 0.5; mt-neurons: en 0.78, de 0.7, mt 0.6; random: en 0.8, mt 0.45 (no de)
  await put('base/en.json', result('en', { name: 'base' }, 0.8));
  await put('base/de.json', result('de', { name: 'base' }, 0.7));
  await put('base/mt.json', result('mt', { name: 'base' }, 0.5));
  await put('ft/a/en.json', result('en', { name: 'mt-neurons', delta: 'x' }, 0.78));
  await put('ft/a/de.json', result('de', 'mt-neurons', 0.7));  // a variant given as a bare name
  // a newer record: another schema version, a fingerprint key and fields this version does not know
  await put('ft/b/mt.json', result('mt', { name: 'mt-neurons' }, 0.6, { schema: 'langneurons.eval/2', fingerprint: { model: 'abc' }, seeds: [1, 2] }));
  await put('rand/en.json', result('en', { name: 'random' }, 0.8));
  await put('rand/mt.json', result('mt', { name: 'random' }, 0.45));
  await put('rand/other.json', { format: 'langneurons-figure/1', data: {} });  // not a result: skipped
});
afterAll(async () => { await removeDir(dir); });

describe('pivot', () => {
  it('languages × variants with Δ against base, mean over languages and over the low-resource subset', async () => {
    const recs = await readResultsRecursive(dir);
    expect(recs).toHaveLength(8);
    const p = pivotResults(recs, { rows: 'lang', cols: 'variant', baseline: 'base', lowResource: ['mt'] });
    expect(p.metric).toBe('acc');
    expect(p.rows).toEqual(['de', 'en', 'mt']);
    expect(p.cols).toEqual(['base', 'mt-neurons', 'random']);
    expect(p.values).toEqual([[0.7, 0.7, null], [0.8, 0.78, 0.8], [0.5, 0.6, 0.45]]);
    const d = p.delta!;
    expect(d[0]).toEqual([0, 0, null]);
    expect(d[1]![1]).toBeCloseTo(-0.02, 12);
    expect(d[2]![1]).toBeCloseTo(0.1, 12);
    expect(d[2]![2]).toBeCloseTo(-0.05, 12);
    expect(p.mean.all[0]).toBeCloseTo((0.7 + 0.8 + 0.5) / 3, 12);
    expect(p.mean.all[2]).toBeCloseTo((0.8 + 0.45) / 2, 12);  // de has no random result
    expect(p.mean.deltaAll![1]).toBeCloseTo((0 - 0.02 + 0.1) / 3, 12);
    expect(p.mean.lowResource).toEqual([0.5, 0.6, 0.45]);
    expect(p.mean.deltaLowResource![1]).toBeCloseTo(0.1, 12);
    expect(p.fixed).toEqual({ task: 'xcopa', prompt: 'default', model: 'm' });
    expect(pivotResults(recs, { rows: 'lang', cols: 'variant', metric: 'acc_norm' }).values[1]).toEqual([0.4, 0.39, 0.4]);
  });

  it('refuses two results in one cell, an unknown baseline or metric, and a malformed record, naming the file', async () => {
    const recs = await readResultsRecursive(dir);
    expect(() => pivotResults(recs, { rows: 'lang', cols: 'task' })).toThrow(/a second result for lang=\w+, task=xcopa .* differ in variant/);
    expect(() => pivotResults(recs, { rows: 'lang', cols: 'variant', baseline: 'nope' })).toThrow(/--baseline: no results with variant=nope/);
    expect(() => pivotResults(recs, { rows: 'lang', cols: 'variant', metric: 'bleu' })).toThrow("--metric: no result has 'bleu' (they have: acc, acc_norm)");
    const bad = await makeTempDir('ln-pivot-bad-');
    await fsp.writeFile(path.join(bad, 'r.json'), JSON.stringify({ ...result('en', 'base', 1), metrics: [1] }));
    await expect(readResultsRecursive(bad)).rejects.toThrow(/r\.json: field 'metrics' must be an object/);
    await removeDir(bad);
  });

  it('results pivot --json writes the heatmap (PNG with content) and the table', async () => {
    const out = path.join(dir, 'fig');
    const r = await runCli('results', 'pivot', dir, '--rows', 'lang', '--cols', 'variant', '--baseline', 'base', '--low-resource', 'mt', '--out', out, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.figures.pivot.data.values[2]).toEqual([0.5, 0.6, 0.45]);
    expect(j.figures.pivot.caption).toMatch(/\* marks the low-resource langs \(mt\)/);
    const csv = await fsp.readFile(path.join(out, 'pivot.csv'), 'utf8');
    expect(csv.split('\n')[0]).toBe('lang,low_resource,base,mt-neurons,random,delta_mt-neurons,delta_random');
    expect(csv).toMatch(/^mt,1,0\.5,0\.6,0\.45,0\.09999/m);
    expect(inkOf(decodePng(await fsp.readFile(path.join(out, 'pivot.png')))).inkShare).toBeGreaterThan(0.02);
    // its own figure JSON in the results tree is not read as a result on a second run
    const again = await runCli('results', 'pivot', dir, '--baseline', 'base', '--out', out, '--json');
    expect(again.code).toBe(0);
    expect(existsSync(path.join(out, 'pivot.svg'))).toBe(true);
    const bad = await runCli('results', 'pivot', dir, '--rows', 'colour', '--out', out);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--rows: unknown key 'colour'/);
  });
});
