// The report page from hand-made report data: self-contained (no scripts, no external assets), every figure
// present, the checks shown, and it renders in headless Chromium with its plots visible.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readReport, renderReportHtml, writeReport, REPORT_FORMAT, type ReportData } from '../src/report/index.js';
// @ts-expect-error: a plain ES module script without type declarations
import { findChromium, renderHtml } from '../scripts/render-html.mjs';
import { runCli } from './helpers/cli.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

const langs = ['en', 'ru', 'ar', 'zh'];
const curve = (from: number, to: number, steps: number): [number, number][] =>
  Array.from({ length: steps }, (_, i) => [i + 1, from + ((to - from) * i) / (steps - 1)]);

function sampleReport(): ReportData {
  return {
    format: REPORT_FORMAT, title: 'langneurons demo: sample <model>', generatedAt: '2025-01-01T00:00:00Z',
    model: { dir: '/models/sample', name: 'sample', parameters: 1_100_000, layers: 3, hidden: 128, intermediate: 384, vocab: 2048, recipe: 'recipe.json' },
    languages: langs, lowResource: 'ar', seconds: 123.4,
    steps: [{ name: 'profile', seconds: 10, skipped: false }, { name: 'identify', seconds: 0.1, skipped: true }],
    options: { topRate: 0.05 },
    checks: [
      { name: 'diagonal-dominance', claim: 'own deactivation hurts most', passed: true, measured: '4/4 languages (100%)' },
      { name: 'steering', claim: 'steering raises the target share', passed: false, measured: 'ru: 0% → 0%' },
    ],
    ok: false,
    figures: {
      neurons: { method: 'lape', parameters: { topRate: 0.05 }, languages: langs, layers: 3, perLayer: [[1, 2, 3], [0, 4, 5], [2, 2, 2], [6, 0, 1]], total: [6, 9, 6, 7], union: 25 },
      deactivation: {
        rows: langs, columns: langs, deltaNll: langs.map((_, i) => langs.map((_, j) => (i === j ? 1 + i * 0.2 : 0.05 * (i - j)))),
        baselineNll: [3, 3.2, 2.9, 4], baselinePerplexity: [20.1, 24.5, 18.2, 54.6], tokens: [800, 900, 700, 600], diagonalShare: 1, rowShare: 0.75, misses: [],
      },
      steering: {
        identifier: 'char-ngram (1-3)', identifierAccuracy: 0.98, targets: ['ru', 'zh'], settings: ['none', 'p_max', 'mean'],
        share: [[0, 0.6, 0.3], [0.05, 0.8, 0.5]], generations: [12, 12], maxNewTokens: 32, baselineKeepsPromptLanguage: 0.9,
        examples: [{ target: 'ru', setting: 'p_max', source: 'ar', prompt: 'لكل شخص', text: 'Каждый человек <имеет> & право', detected: 'ru' }],
      },
      training: {
        language: 'ar', trainArticles: [4, 5, 6], validArticles: [25, 26], baseValidLoss: 4.2,
        methods: ['neurons', 'random', 'full'].map((method, k) => ({
          method, lr: 1e-3, trainableParameters: 1000 * (k + 1), trainableShare: 0.001 * (k + 1), steps: 10, stepSeconds: 0.05, tokensPerSecond: 9000,
          bestValid: 4 - k * 0.1, bestStep: 10, finalValid: 4 - k * 0.1, trainLoss: curve(4.5, 3.5 - k * 0.2, 10), validLoss: [[0, 4.2], [5, 4.1 - k * 0.05], [10, 4 - k * 0.1]],
        })),
      },
    },
  };
}

let dir: string;
beforeAll(async () => { dir = await makeTempDir('ln-report-html-'); });
afterAll(async () => { await removeDir(dir); });

describe('the report page', () => {
  const html = renderReportHtml(sampleReport());

  it('is self-contained: no scripts, no external resources', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/\b(src|href)\s*=\s*"(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*['"]?https?:/i);
  });

  it('holds the five figures as inline SVG, each well-formed', () => {
    const svgs = html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
    expect(svgs).toHaveLength(5); // neurons, ΔNLL heatmap, steering, training loss, held-out loss
    for (const svg of svgs) expect(XMLValidator.validate(svg)).toBe(true);
    expect(html.match(/class="cell"/g)).toHaveLength(16);
    expect(html.match(/class="bar"/g)).toHaveLength(4 * 3 + 2 * 3); // neurons (stacked) + steering (grouped)
  });

  it('shows the checks with pass and fail, and escapes text from the model', () => {
    expect(html).toContain('<span class="pass">PASS</span>');
    expect(html).toContain('<span class="fail">FAIL</span>');
    expect(html).toContain('sample &lt;model&gt;');
    expect(html).toContain('Каждый человек &lt;имеет&gt; &amp; право');
    expect(html).not.toContain('<имеет>');
  });

  it('writes report.json and report.html that read back', async () => {
    const files = await writeReport(dir, sampleReport());
    expect(await readReport(dir)).toEqual(sampleReport());
    expect(await fsp.readFile(files.html, 'utf8')).toBe(html);
    await fsp.writeFile(path.join(dir, 'bad.json'), '{"format": "other"}');
    await expect(readReport(path.join(dir, 'bad.json'))).rejects.toThrow(/bad\.json: not a langneurons-demo-report\/1 file/);
  });

  it('`langneurons report` draws the page again from the data, and writes it only into a demo folder', async () => {
    const demo = path.join(dir, 'cli-demo');
    await fsp.mkdir(demo);
    const data = JSON.stringify(sampleReport(), null, 1) + '\n';
    await fsp.writeFile(path.join(demo, 'report.json'), data);
    await fsp.writeFile(path.join(demo, 'report.html'), 'an old page');
    const r = await runCli('report', demo, '--json');
    expect(r.code, r.stderr).toBe(1);  // the sample's checks do not all pass: exit 1, the page written all the same
    expect(JSON.parse(r.stdout).html).toBe(path.join(demo, 'report.html'));
    expect(await fsp.readFile(path.join(demo, 'report.html'), 'utf8')).toBe(html);
    expect(await fsp.readFile(path.join(demo, 'report.json'), 'utf8')).toBe(data);
    // A copy of the data elsewhere: a user's report.html beside it is not the demo's page.
    const other = path.join(dir, 'cli-other');
    await fsp.mkdir(other);
    await fsp.writeFile(path.join(other, 'copy.json'), data);
    await fsp.writeFile(path.join(other, 'report.html'), 'my page');
    const s = await runCli('report', path.join(other, 'copy.json'));
    expect([s.code, s.stderr.trim()]).toEqual([1, `langneurons: error: ${path.join(other, 'report.html')}: exists, and no demo report.json beside it says it is ours; it is not overwritten`]);
    expect(await fsp.readFile(path.join(other, 'report.html'), 'utf8')).toBe('my page');
    await fsp.rm(path.join(other, 'report.html'));
    expect((await runCli('report', path.join(other, 'copy.json'))).code).toBe(1);
    expect(await fsp.readFile(path.join(other, 'report.html'), 'utf8')).toBe(html);
  });

  it.skipIf(!findChromium())('renders in headless Chromium with its plots visible', async () => {
    const file = path.join(dir, 'report.html');
    await fsp.writeFile(file, html);
    const r = renderHtml(file, { width: 1300, height: 3600 });
    expect(r.svgs).toBe(5);
    expect((r.dom.match(/class="cell"/g) ?? []).length).toBe(16);
    expect(r.image.width).toBe(1300);
    expect(r.image.inkShare).toBeGreaterThan(0.02); // not a blank page: text, bars, heatmap cells, lines
    expect(r.image.colours).toBeGreaterThan(50);    // colours of the charts, not only black text on white
  });
});
