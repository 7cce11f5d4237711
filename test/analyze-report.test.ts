// The analyses in the demo report: drawn by the same figure code as `analyze` (overlap heatmap, weight-update bars),
// absent from reports written without them.
import { describe, expect, it } from 'vitest';

import { analyzeOverlap } from '../src/analyze/masks.js';
import { analyzeWeightUpdates, type TensorChange } from '../src/analyze/weights.js';
import { MASK_FORMAT } from '../src/identify/masks.js';
import { overlapFigures } from '../src/report/analysis-figures.js';
import { renderReportHtml, REPORT_FORMAT, type ReportData } from '../src/report/index.js';
import { inlineSvg } from '../src/report/svg-charts.js';

const model = { name: 'toy', modelType: 'llama', layers: 2, hidden: 4, intermediate: 8, fingerprint: 'f'.repeat(64) };
const overlap = analyzeOverlap({ format: MASK_FORMAT, method: 'lape', parameters: {}, site: 'act', model, sources: [], layers: 2, width: 8,
  languages: { en: [[0, 1], []], mt: [[1], [2]], de: [[5], [6]] } });
const change = (layer: number, projection: string, rowSq: number[]): TensorChange => ({
  tensor: `model.layers.${layer}.mlp.${projection}_proj.weight`, layer, projection, rows: rowSq.length, cols: 1, rowSq: Float64Array.from(rowSq),
  colSq: Float64Array.from([rowSq.reduce((a, b) => a + b, 0)]), totalSq: rowSq.reduce((a, b) => a + b, 0), baseSq: null,
});
const updates = analyzeWeightUpdates([change(0, 'gate', [4, 0, 0, 0, 0, 0, 0, 0]), change(1, 'up', [0, 0, 9, 0, 0, 0, 0, 0])], 2, 'runs/neurons', 'delta',
  { source: 'lape.json:mt', layers: [[1], [2]] });

function report(withAnalyses: boolean): ReportData {
  const empty = { method: 'lape', parameters: {}, languages: ['en'], layers: 2, perLayer: [[1, 1]], total: [2], union: 2 };
  return {
    format: REPORT_FORMAT, title: 't', generatedAt: 'now', model: { dir: '/m', name: 'toy', parameters: 1, layers: 2, hidden: 4, intermediate: 8, vocab: 10, recipe: 'r' },
    languages: ['en'], lowResource: null, seconds: 1, steps: [], options: {}, checks: [], ok: true,
    figures: {
      neurons: empty,
      deactivation: { rows: ['en'], columns: ['en'], deltaNll: [[1]], baselineNll: [1], baselinePerplexity: [2.7], tokens: [1], diagonalShare: 1, rowShare: 1, misses: [] },
      steering: { identifier: 'x', identifierAccuracy: 1, targets: [], settings: ['none'], share: [], generations: [], maxNewTokens: 1, baselineKeepsPromptLanguage: 1, examples: [] },
      training: { language: 'en', trainArticles: [], validArticles: [], baseValidLoss: 1, methods: [] },
      ...(withAnalyses ? { analyses: { overlap, weightUpdates: [{ method: 'neurons', analysis: updates }] } } : {}),
    },
  };
}

describe('analyses in the demo report', () => {
  it('the overlap heatmap is the `analyze overlap` figure; the weight updates show the share on the language\u2019s neurons', () => {
    expect(updates.mask!.fraction).toBeCloseTo(9 / 13, 12);  // layer 1, row 2 is on the mask; layer 0, row 0 is not
    const html = renderReportHtml(report(true));
    expect(html).toContain('<section id="analyses">');
    expect(html).toContain(inlineSvg(overlapFigures(overlap, 'the demo\u2019s LAPE mask')[0]!.svg));
    expect(html.match(/class="cell"/g)!.length).toBeGreaterThanOrEqual(9 + 1);  // the 3 × 3 overlap (+ the deactivation matrix)
    expect(html).toMatch(/<td>neurons<\/td><td>3\.606<\/td><td>69\.2%<\/td>/);  // ‖ΔW‖ = √13
    expect(renderReportHtml(report(false))).not.toContain('id="analyses"');
  });
});
