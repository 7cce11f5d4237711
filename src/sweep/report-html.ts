// The sweep report's page: tables and SVG figures (the chart helpers of src/report), no scripts, no external files.
import { barChart, heatmapChart, lineChart } from '../report/svg-charts.js';
import { escapeXml as esc } from '../steer/svg.js';
import { LOWER_IS_BETTER, primaryMetric, type SweepReport } from './report.js';

const STYLE = `body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.better{color:#1a7f37}.worse{color:#cf222e}
figure{margin:12px 0;overflow-x:auto;display:inline-block;vertical-align:top}figure svg{max-width:100%;height:auto}figcaption{font-size:13px;color:#444}.meta{font-size:13px;color:#555}`;

const fmt = (v: number | null | undefined, digits = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits));
const table = (head: string[], rows: string[][]) =>
  `<table><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</table>`;
const figure = (svg: string, caption: string) => `<figure>${svg}<figcaption>${caption}</figcaption></figure>`;
const unique = <T>(xs: T[]) => [...new Set(xs)];

function evalSection(r: SweepReport): string {
  if (!r.eval.length) return '';
  const parts: string[] = [];
  for (const model of unique(r.eval.map((e) => e.model))) for (const task of unique(r.eval.filter((e) => e.model === model).map((e) => e.task))) {
    const rows = r.eval.filter((e) => e.model === model && e.task === task);
    const metric = primaryMetric(task, rows[0]!.metrics);
    if (!metric) continue;
    const variants = unique(rows.map((e) => e.variant)).sort((a, b) => (a === 'base' ? -1 : b === 'base' ? 1 : a.localeCompare(b)));
    const langs = unique(rows.map((e) => e.language));
    const lower = LOWER_IS_BETTER.has(metric);
    const cells = langs.map((l) => [esc(l), ...variants.map((v) => {
      const e = rows.find((x) => x.language === l && x.variant === v);
      const val = e?.metrics[metric];
      if (val === undefined) return '';
      const base = e!.base?.[metric];
      if (v === 'base' || base === undefined) return fmt(val);
      const d = val - base;
      const cls = d === 0 ? '' : (d < 0) === lower ? 'better' : 'worse';
      return `${fmt(val)} <span class="${cls}">(${d >= 0 ? '+' : ''}${fmt(d)})</span>`;
    })]);
    // what each intervention variant did, per language ({mask}: the identify setting's mask)
    const specs = unique(rows.filter((e) => e.intervention).map((e) => `${e.variant} (${e.language}): ${e.intervention}`));
    parts.push(`<h3>${esc(task)} on ${esc(model)}: ${esc(metric)} (${lower ? 'lower' : 'higher'} is better; Δ against base)</h3>` +
      table(['language', ...variants.map(esc)], cells) +
      (specs.length ? `<p class="caption">Interventions: ${specs.map(esc).join('; ')}.</p>` : ''));
  }
  return `<section id="eval"><h2>Evaluation: language × setting</h2>${parts.join('')}</section>`;
}

function neuronsSection(r: SweepReport): string {
  if (!r.neurons.length) return '';
  const figs = r.neurons.map((n) => {
    const langs = Object.keys(n.perLayer);
    const layers = n.perLayer[langs[0]!]?.length ?? 0;
    const svg = barChart({ title: `${n.identify}`, categories: Array.from({ length: layers }, (_, i) => `L${i}`), xLabel: 'layer', groups: langs.map((l) => ({ name: l, values: n.perLayer[l]! })),
      stacked: true, yLabel: 'neurons', width: 420, height: 260 });
    return figure(svg, `${esc(n.model)}, ${esc(n.identify)}: ${langs.map((l) => `${esc(l)} ${n.total[l]}`).join(', ')} (${n.union} distinct).`);
  });
  return `<section id="neurons"><h2>Neurons per language and layer</h2>${figs.join('')}</section>`;
}

function deactivationSection(r: SweepReport): string {
  if (!r.deactivation.length) return '';
  const figs = r.deactivation.map((m) => figure(heatmapChart({
    title: `ΔNLL, ${m.identify}${m.variant ? ` ${m.variant}` : ''}`, rowLabels: m.rows.map((x) => `−${x}`), columnLabels: m.columns, values: m.deltaNll,
    rowAxis: 'neurons deactivated', columnAxis: 'held-out text', legend: 'ΔNLL (nats/token)',
  }), `${esc(m.model)}, ${esc(m.identify)}: diagonal dominance ${(100 * m.diagonalShare).toFixed(0)}%; baseline NLL ${m.columns.map((c, j) => `${esc(c)} ${fmt(m.baselineNll[j])}`).join(', ')}.`));
  return `<section id="deactivation"><h2>Deactivation matrices</h2>${figs.join('')}</section>`;
}

function lssSection(r: SweepReport): string {
  if (!r.lss.length) return '';
  const settings = unique(r.lss.flatMap((l) => l.settings.map((x) => x.setting)));
  const rows = r.lss.map((l) => [`${esc(l.model)}, ${esc(l.identify)}`, ...settings.map((name) => {
    const x = l.settings.find((y) => y.setting === name);
    return x ? (name === l.best ? `<b>${fmt(x.meanLss)}</b>` : fmt(x.meanLss)) : '';
  })]);
  return `<section id="lss"><h2>Language Steering Shift per setting</h2><p class="meta">Mean LSS over (base, target) pairs: the share of facts whose ` +
    `target-language object gains on the base-language one when the target's neurons are amplified; the best amplification per identification setting in bold.</p>` +
    table(['identification setting', ...settings.map(esc)], rows) + '</section>';
}

function forcingSection(r: SweepReport): string {
  if (!r.forcing.length) return '';
  const targets = unique(r.forcing.flatMap((f) => f.targets.map((t) => t.target)));
  const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(0)}%`);
  const rows = r.forcing.map((f) => [`${esc(f.model)}, ${esc(f.identify)}, ${esc(f.amplify)}`, pct(f.meanRate), ...targets.map((t) => {
    const x = f.targets.find((y) => y.target === t);
    return !x ? '' : `${pct(x.rate)}${x.baselineRate === null ? '' : ` <span class="meta">(${pct(x.baselineRate)})</span>`}${x.identifiable ? '' : ' ?'}`;
  })]);
  return `<section id="forcing"><h2>Language forcing</h2><p class="meta">Share of generations the identifier (${unique(r.forcing.map((f) => esc(f.identifier))).join(', ')}) ` +
    'labels with the target language when its neurons are amplified (and the prompt language\'s deactivated); without intervention in brackets; ? a target the identifier does not know.</p>' +
    table(['setting, amplification', 'mean', ...targets.map(esc)], rows) + '</section>';
}

function fallbackSection(r: SweepReport): string {
  if (!r.fallback.length) return '';
  const parts = r.fallback.map((f) => {
    const rows = f.steps.map((st) => {
      const n = Object.values(st.distribution).reduce((a, b) => a + b, 0);
      return [esc(st.deactivated.join(' + ') || 'none'), esc(st.mostCommon ?? '–'),
        Object.entries(st.distribution).sort((a, b) => b[1] - a[1]).map(([l, c]) => `${esc(l)} ${(100 * c / n).toFixed(0)}%`).join(', ')];
    });
    return `<h3>${esc(f.model)}, ${esc(f.identify)} (neurons set to ${fmt(f.deactivateValue)}; ${esc(f.identifier)})</h3>` + table(['deactivated', 'most common', 'answers'], rows);
  });
  return `<section id="fallback"><h2>Language fallback</h2><p class="meta">The language the model answers neutral prompts in as the neurons of more and more languages are deactivated.</p>${parts.join('')}</section>`;
}

function finetuneSection(r: SweepReport): string {
  if (!r.finetune.length) return '';
  const label = (f: SweepReport['finetune'][number]) => `${f.method}${f.identify ? `@${f.identify}` : ''}`;
  const figs = unique(r.finetune.map((f) => `${f.model}\u0000${f.language}`)).map((key) => {
    const [model, lang] = key.split('\u0000') as [string, string];
    const runs = r.finetune.filter((f) => f.model === model && f.language === lang);
    return ['train', 'held-out'].map((which) => figure(lineChart({
      title: `${lang}: ${which === 'train' ? 'training' : 'held-out'} loss`, xLabel: 'optimizer step', yLabel: 'loss (nats/token)', width: 620, height: 320,
      series: runs.map((f) => ({ name: label(f), points: which === 'train' ? f.trainLoss : f.validLoss, dashed: which !== 'train' })),
    }), `${esc(model)}, fine-tuning on ${esc(lang)}: ${which === 'train' ? 'training loss per step' : 'held-out loss at each evaluation'}, per method.`)).join('');
  });
  const rows = r.finetune.map((f) => [esc(f.language), esc(label(f)), f.trainableParameters.toLocaleString('en-US'), String(f.steps), fmt(f.bestValid, 4),
    f.secondsPerStep === null ? '–' : (1000 * f.secondsPerStep).toFixed(0)]);
  return `<section id="finetune"><h2>Fine-tuning: curves and cost per method</h2>${figs.join('')}` +
    table(['language', 'method', 'trainable parameters', 'steps', 'best held-out loss', 'ms / step'], rows) + '</section>';
}

export function renderSweepHtml(r: SweepReport): string {
  const missing = r.steps.missing.length
    ? `<p class="meta">${r.steps.missing.length} of ${r.steps.total} steps are not done; their cells are left out: ${r.steps.missing.slice(0, 20).map(esc).join(', ')}${r.steps.missing.length > 20 ? ', …' : ''}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sweep ${esc(r.sweep)}</title><style>${STYLE}</style></head>
<body>
<h1>Sweep ${esc(r.sweep)}</h1>
<p class="meta">Models ${r.models.map((m) => `<b>${esc(m.name)}</b> (${m.fingerprint.slice(0, 12)})`).join(', ')}; languages ${r.languages.map(esc).join(', ')}` +
    `${r.lowResource.length ? ` (low-resource: ${r.lowResource.map(esc).join(', ')})` : ''}; ${r.steps.done}/${r.steps.total} steps done; langneurons ${esc(r.toolVersion)}.</p>
${missing}
${evalSection(r)}
${deactivationSection(r)}
${lssSection(r)}
${forcingSection(r)}
${fallbackSection(r)}
${neuronsSection(r)}
${finetuneSection(r)}
</body></html>
`;
}
