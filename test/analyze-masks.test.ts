// The mask analyses (layers, overlap) on hand-made masks with hand-worked answers, the figure files they are
// written as (SVG, a PNG with real pixels, CSV, JSON, caption; foreign files and concurrent runs refused), and
// `analyze layers|overlap` as a user runs it.
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analyzeLayers, analyzeOverlap, averageLinkageOrder } from '../src/analyze/masks.js';
import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { overlapFigures } from '../src/report/analysis-figures.js';
import { pngFont, svgToPng, writeFigure } from '../src/report/figures.js';
import { barChart, tickLabels } from '../src/report/svg-charts.js';
import type { ModelIdentity } from '../src/profile/stats.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';
import { runCli } from './helpers/cli.js';
import { decodePng, inkOf } from './helpers/png.js';

const model: ModelIdentity = { name: 'toy', modelType: 'llama', layers: 2, hidden: 4, intermediate: 8, fingerprint: 'f'.repeat(64) };
const mask = (languages: Record<string, number[][]>): NeuronMask => ({
  format: MASK_FORMAT, method: 'lape', parameters: {}, site: 'act', model, sources: [], layers: 2, width: 8, languages,
});

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-analyze-'); });
afterAll(async () => { await removeDir(tmp); });

describe('overlap', () => {
  it('disjoint masks overlap 0, identical ones 1', () => {
    const d = analyzeOverlap(mask({ a: [[0, 1], [2]], b: [[2, 3], [0]], c: [[4], [5, 6]] }));
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
      expect(d.counts[i]![j]).toBe(i === j ? d.sizes[i] : 0);
      expect(d.jaccard[i]![j]).toBe(i === j ? 1 : 0);
      expect(d.overlapCoefficient[i]![j]).toBe(i === j ? 1 : 0);
    }
    const same = analyzeOverlap(mask({ a: [[0, 1], [2]], b: [[0, 1], [2]] }));
    expect(same.jaccard).toEqual([[1, 1], [1, 1]]);
    expect(same.counts).toEqual([[3, 3], [3, 3]]);
  });

  it('hand-worked: en {0:0, 0:1}, fr {0:1, 1:2}, zh {0:1}; clustered order en, zh, fr', () => {
    const o = analyzeOverlap(mask({ en: [[0, 1], []], fr: [[1], [2]], zh: [[1], []] }));
    // Distances 1 − J: en–fr 2/3, en–zh 1/2, fr–zh 1/2; the tie goes to the lower indices (en, zh), then fr joins at (2/3 + 1/2) / 2.
    expect(o.languages).toEqual(['en', 'zh', 'fr']);
    expect(o.maskOrder).toEqual(['en', 'fr', 'zh']);
    expect(o.sizes).toEqual([2, 1, 2]);
    expect(o.counts).toEqual([[2, 1, 1], [1, 1, 1], [1, 1, 2]]);
    expect(o.jaccard[0]![2]).toBeCloseTo(1 / 3, 12);
    expect(o.jaccard[0]![1]).toBeCloseTo(1 / 2, 12);
    expect(o.overlapCoefficient[0]![2]).toBeCloseTo(1 / 2, 12);
    expect(o.overlapCoefficient[1]![2]).toBe(1);
    expect(o.merges.map((m) => [m.left, m.right])).toEqual([[['en'], ['zh']], [['en', 'zh'], ['fr']]]);
    expect(o.merges[1]!.distance).toBeCloseTo(7 / 12, 12);
  });

  it('clustering puts the two close pairs together', () => {
    // a~c and b~d are close, the pairs far apart: leaves a, c, b, d.
    const D = [[0, 0.9, 0.1, 0.8], [0.9, 0, 0.85, 0.2], [0.1, 0.85, 0, 0.9], [0.8, 0.2, 0.9, 0]];
    expect(averageLinkageOrder(D, ['a', 'b', 'c', 'd']).order).toEqual([0, 2, 1, 3]);
  });
});

describe('layers', () => {
  it('counts, each language\u2019s share per layer and each layer\u2019s share per language', () => {
    const a = analyzeLayers(mask({ en: [[0, 1, 2], [3]], fr: [[1], []], zh: [[], []] }));
    expect(a.perLayer).toEqual([[3, 1], [1, 0], [0, 0]]);
    expect(a.total).toEqual([4, 1, 0]);
    expect(a.shareOfLanguage).toEqual([[0.75, 0.25], [1, 0], [0, 0]]);
    expect(a.shareOfLayer).toEqual([[0.75, 1], [0.25, 0], [0, 0]]);
    expect(a.layerTotal).toEqual([4, 1]);
    expect(a.layerCoverage).toEqual([3 / 8, 1 / 8]);  // distinct units 0, 1, 2 of 8 in layer 0
  });
});

describe('figure files', () => {
  it('a PNG rendered without a browser: the SVG\u2019s size × 2, with ink, colours and text', () => {
    const svg = barChart({ title: 'T', categories: ['a', 'b'], groups: [{ name: 'g', values: [1, 2] }], yLabel: 'y', width: 400, height: 300 });
    const png = decodePng(svgToPng(svg));
    expect([png.width, png.height]).toEqual([800, 600]);
    const ink = inkOf(png);
    expect(ink.inkShare).toBeGreaterThan(0.02);
    expect(ink.colours).toBeGreaterThan(10);  // bars, grid, anti-aliased text
  });

  // Without a font file (fonts-dejavu-core / fonts-liberation) text is drawn only if the system has some other font.
  it.skipIf(!pngFont())('text is drawn (a font was found)', () => {
    const text = decodePng(svgToPng('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="5" y="30" font-family="Helvetica, Arial, sans-serif" font-size="24">Jaccard</text></svg>'));
    expect(inkOf(text).inkShare).toBeGreaterThan(0.03);
  });

  it('writes SVG, PNG, CSV, JSON and caption; overwrites its own, refuses foreign files and a live lock', async () => {
    const dir = path.join(tmp, 'fig');
    const figs = overlapFigures(analyzeOverlap(mask({ en: [[0, 1], []], fr: [[1], [2]] })), 'm.json');
    const files = await writeFigure(dir, figs[0]!);
    expect((await fsp.readFile(files.svg, 'utf8'))).toMatch(/<svg[\s\S]*class="cell"[\s\S]*<\/svg>/);
    expect(inkOf(decodePng(await fsp.readFile(files.png))).inkShare).toBeGreaterThan(0.02);
    const csv = (await fsp.readFile(files.csv, 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('language_a,language_b,size_a,size_b,shared,jaccard,overlap_coefficient');
    expect(csv).toContain('en,fr,2,2,1,0.333333,0.5');
    const json = JSON.parse(await fsp.readFile(files.json, 'utf8'));
    expect(json.data.counts).toEqual([[2, 1], [1, 2]]);
    expect(await fsp.readFile(files.caption, 'utf8')).toMatch(/Jaccard/);
    await writeFigure(dir, figs[0]!);  // its own files: overwritten
    const foreign = path.join(tmp, 'foreign');
    await fsp.mkdir(foreign);
    await fsp.writeFile(path.join(foreign, 'overlap.png'), 'mine');
    await expect(writeFigure(foreign, figs[0]!)).rejects.toThrow(/overlap\.png: exists and was not written by a langneurons figure/);
    expect(await fsp.readFile(path.join(foreign, 'overlap.png'), 'utf8')).toBe('mine');
    // A live run holds it (vitest's parent process stands in for it); a dead one's lock is taken over.
    const holder = (pid: number) => JSON.stringify({ pid, hostname: os.hostname(), command: 'figure overlap', started: '' }) + '\n';
    await fsp.writeFile(path.join(dir, 'overlap.lock'), holder(process.ppid));
    await expect(writeFigure(dir, figs[0]!)).rejects.toThrow(new RegExp(`overlap: in use by figure overlap \\(pid ${process.ppid} `));
    await fsp.writeFile(path.join(dir, 'overlap.lock'), holder(999999999));
    await writeFigure(dir, figs[0]!);
    expect(existsSync(path.join(dir, 'overlap.lock'))).toBe(false);
  });
});

describe('analyze layers|overlap (CLI)', () => {
  it('--json prints the data and names the files; bad input is one line with exit 1', async () => {
    const file = path.join(tmp, 'mask.json');
    await writeMaskJson(file, mask({ en: [[0, 1], [5]], de: [[1], [2, 3]], mt: [[7], []] }));
    const out = path.join(tmp, 'cli');
    const r = await runCli('analyze', 'overlap', file, '--out', out, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.figures.overlap.data.languages.length).toBe(3);
    for (const f of Object.values(j.figures.overlap.files as Record<string, string>)) expect(existsSync(f)).toBe(true);
    const l = await runCli('analyze', 'layers', file, '--out', out, '--json');
    expect(l.code).toBe(0);
    expect(JSON.parse(l.stdout).figures.layers.data.perLayer).toEqual([[2, 1], [1, 2], [1, 0]]);
    expect(existsSync(path.join(out, 'layers-share.png'))).toBe(true);
    const bad = await runCli('analyze', 'layers', path.join(tmp, 'missing.json'), '--out', out);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/missing\.json/);
  });
});

describe('chart ticks', () => {
  it('as many decimals as the spacing needs', () => {
    expect(tickLabels([0.999, 0.9995, 1])).toEqual(['0.9990', '0.9995', '1.0000']);
    expect(tickLabels([0, 0.25, 0.5])).toEqual(['0.00', '0.25', '0.50']);
    expect(tickLabels([0, 20, 40])).toEqual(['0', '20', '40']);
  });
});
