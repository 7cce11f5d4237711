// The demo report as one self-contained HTML page: inline SVG figures, tables, no scripts, no external assets.
import { escapeXml } from '../steer/svg.js';
import type { ReportData } from './report-data.js';
import { overlapFigures, weightUpdateFigures } from './analysis-figures.js';
import { barChart, heatmapChart, inlineSvg, lineChart } from './svg-charts.js';

const esc = escapeXml;
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

function table(head: string[], rows: string[][], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

function figure(id: string, caption: string, svg: string): string {
  return `<figure id="${id}">${svg}<figcaption>${caption}</figcaption></figure>`;
}

function checksSection(d: ReportData): string {
  const rows = d.checks.map((c) => [`<span class="${c.passed ? 'pass' : 'fail'}">${c.passed ? 'PASS' : 'FAIL'}</span>`, esc(c.name), esc(c.claim), esc(c.measured)]);
  return `<section id="checks"><h2>Checks: ${d.ok ? '<span class="pass">all passed</span>' : '<span class="fail">some failed</span>'}</h2>${table(['', 'check', 'claim', 'measured'], rows, 'checks')}</section>`;
}

function neuronsSection(d: ReportData): string {
  const f = d.figures.neurons;
  const svg = barChart({
    title: `Language-specific neurons (${f.method}) per language, stacked by layer`, categories: f.languages, stacked: true, yLabel: 'neurons',
    groups: Array.from({ length: f.layers }, (_, l) => ({ name: `layer ${l}`, values: f.perLayer.map((row) => row[l] ?? 0) })),
  });
  const params = Object.entries(f.parameters).map(([k, v]) => `${esc(k)} ${esc(String(v))}`).join(', ');
  const ladder = f.topRateLadder ? ` Top rate chosen automatically: the first giving every language enough neurons (tried: ${
    f.topRateLadder.map((t) => `${t.topRate} → fewest ${t.fewest}`).join(', ')}).` : '';
  return `<section id="neurons"><h2>1. Language-specific neurons</h2>` +
    figure('fig-neurons', `${f.union} distinct neurons in at least one language; LAPE parameters: ${params}.${ladder}`, svg) + '</section>';
}

function deactivationSection(d: ReportData): string {
  const f = d.figures.deactivation;
  const svg = heatmapChart({
    title: 'Change of held-out NLL when a language\u2019s neurons are deactivated', rowLabels: f.rows, columnLabels: f.columns, values: f.deltaNll,
    rowAxis: 'deactivated language', columnAxis: 'held-out text', legend: 'ΔNLL (nats/token)',
    cellLabel: (i, j) => `${f.deltaNll[i]![j]! >= 0 ? '+' : ''}${f.deltaNll[i]![j]!.toFixed(2)}`,
    cellTitle: (i, j) => `deactivate ${f.rows[i]} → ${f.columns[j]} text: ΔNLL ${f.deltaNll[i]![j]!.toFixed(4)} (baseline NLL ${f.baselineNll[j]!.toFixed(3)})`,
  });
  const misses = f.misses.length ? ` Misses (text ← the deactivation that hurt it most): ${f.misses.map((m) => `${esc(m.language)} ← ${esc(m.strongest)}`).join(', ')}.` : '';
  return `<section id="deactivation"><h2>2. Deactivation perplexity matrix (held-out text)</h2>` +
    figure('fig-deactivation', `Diagonal dominance: ${pct(f.diagonalShare)} of the languages' texts are hurt most by their own deactivation (columns); ` +
      `${pct(f.rowShare)} of the deactivations hurt their own language's text most (rows).${misses} ` +
      `Baseline perplexity: ${f.columns.map((c, j) => `${esc(c)} ${f.baselinePerplexity[j]!.toFixed(2)}`).join(', ')}.`, svg) + '</section>';
}

function steeringSection(d: ReportData): string {
  const f = d.figures.steering;
  const svg = barChart({
    title: 'Target language\u2019s share of the generated text', categories: f.targets.map((t) => `→ ${t}`), yLabel: 'share of continuations (%)', yMax: 100,
    groups: f.settings.map((s, k) => ({ name: s === 'none' ? 'no intervention' : `steered (${s})`, values: f.share.map((row) => 100 * row[k]!) })),
    format: (v) => `${v.toFixed(0)}%`, valueLabels: true,
  });
  const examples = table(['target', 'setting', 'prompt', 'continuation', 'identified'],
    f.examples.map((e) => [esc(e.target), esc(e.setting), `<span dir="auto">${esc(e.prompt)}</span> <small>(${esc(e.source)})</small>`, `<span dir="auto">${esc(e.text)}</span>`, esc(e.detected ?? 'none')]), 'examples');
  return `<section id="steering"><h2>3. Steering generation toward a language</h2>` +
    figure('fig-steering', `Prompts: the first tokens of held-out articles of every other language; ${f.maxNewTokens} tokens generated greedily; the prompt ` +
      `language's neurons deactivated and the target's amplified. Language identified by ${esc(f.identifier)} (held-out accuracy ${pct(f.identifierAccuracy)}); ` +
      `without intervention ${pct(f.baselineKeepsPromptLanguage)} of the continuations stay in the prompt's language.`, svg) +
    `<details open><summary>Example continuations</summary>${examples}</details></section>`;
}

function trainingSection(d: ReportData): string {
  const f = d.figures.training;
  const train = lineChart({ title: `Training loss (${f.language})`, xLabel: 'optimizer step', yLabel: 'loss (nats/token)',
    series: f.methods.map((m) => ({ name: m.method, points: m.trainLoss })) });
  const valid = lineChart({ title: `Held-out loss (${f.language})`, xLabel: 'optimizer step', yLabel: 'loss (nats/token)',
    series: f.methods.map((m) => ({ name: m.method, points: m.validLoss, dashed: true })) });
  // (a run of one step has no timed step: its step time and rate are NaN in memory, null once read from report.json)
  const fixed = (x: number | null, digits: number) => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(digits));
  const rows = f.methods.map((m) => [esc(m.method), m.lr.toExponential(0), m.trainableParameters.toLocaleString('en-US'),
    m.trainableShare === null || !Number.isFinite(m.trainableShare) ? '–' : `${(100 * m.trainableShare).toFixed(2)}%`,
    fixed(m.stepSeconds === null ? null : 1000 * m.stepSeconds, 0), fixed(m.tokensPerSecond, 0), m.finalValid.toFixed(4), `${m.bestValid.toFixed(4)} (step ${m.bestStep})`]);
  return `<section id="training"><h2>4. Fine-tuning ${esc(f.language)}: neurons against the baselines</h2>` +
    `<p>Training text: ${esc(f.language)}'s train articles the model never saw (${f.trainArticles.join(', ')}); validation: its held-out articles ` +
    `(${f.validArticles.join(', ')}); validation loss before training ${f.baseValidLoss.toFixed(4)}.</p>` +
    figure('fig-train-loss', 'Training loss per step and method.', train) +
    figure('fig-valid-loss', 'Held-out loss (step 0: the model before fine-tuning).', valid) +
    table(['method', 'lr', 'trainable parameters', 'of the model', 'ms / step', 'tokens / s', 'final held-out loss', 'best held-out loss'], rows, 'methods') + '</section>';
}

// The `analyze` figures of the run (the same renderer as `langneurons analyze`), when the report has them.
function analysesSection(d: ReportData): string {
  const a = d.figures.analyses;
  if (!a || (!a.overlap && !a.weightUpdates?.length)) return '';
  const parts: string[] = [];
  if (a.overlap) {
    const f = overlapFigures(a.overlap, 'the demo\u2019s LAPE mask')[0]!;
    parts.push(figure('fig-overlap', esc(f.caption), inlineSvg(f.svg)));
  }
  const updates = a.weightUpdates ?? [];
  if (updates.length) {
    const main = updates.find((u) => u.method === 'neurons') ?? updates[0]!;
    const figs = weightUpdateFigures(main.analysis);
    parts.push(figure('fig-weight-updates', `${esc(main.method)}: ${esc(figs[0]!.caption)}`, inlineSvg(figs[0]!.svg)));
    parts.push(table(['method', '‖ΔW‖', 'share of ‖ΔW‖² on the language\u2019s neurons'], updates.map((u) => [esc(u.method), u.analysis.totalNorm.toPrecision(4),
      u.analysis.mask?.fraction != null ? `${(100 * u.analysis.mask.fraction).toFixed(1)}%` : 'n/a']), 'methods'));
  }
  return `<section id="analyses"><h2>5. Analyses</h2>${parts.join('')}</section>`;
}

const STYLE = `body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}
figure{margin:12px 0;overflow-x:auto}figure svg{max-width:100%;height:auto}figcaption{font-size:13px;color:#444;max-width:1100px}.meta{font-size:13px;color:#555}
table.examples td{max-width:420px}`;

export function renderReportHtml(d: ReportData): string {
  const m = d.model;
  const steps = d.steps.map((s) => `${esc(s.name)} ${s.skipped ? '(reused)' : `${s.seconds.toFixed(1)} s`}`).join(', ');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(d.title)}</title><style>${STYLE}</style></head>
<body>
<h1>${esc(d.title)}</h1>
<p class="meta">Model <b>${esc(m.name)}</b> (${esc(m.dir)}): ${m.parameters.toLocaleString('en-US')} parameters, ${m.layers} layers, hidden ${m.hidden}, ` +
    `${m.intermediate} FFN neurons per layer, vocabulary ${m.vocab}; recipe ${esc(m.recipe)}. Languages: ${d.languages.map(esc).join(', ')}` +
    `${d.lowResource ? `; low-resource: ${esc(d.lowResource)}` : ''}.<br>Run ${esc(d.generatedAt)}, ${d.seconds.toFixed(1)} s (${steps}).</p>
${checksSection(d)}
${neuronsSection(d)}
${deactivationSection(d)}
${steeringSection(d)}
${trainingSection(d)}
${analysesSection(d)}
</body></html>
`;
}
