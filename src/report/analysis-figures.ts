// The analyses' figures (docs/ANALYSES.md): each analysis result becomes one or more Figures (SVG chart, table,
// data, caption) drawn with the charts of svg-charts.ts. Used by the `analyze` and `results pivot` commands and
// meant for the demo and sweep reports too (the SVG inlines with inlineSvg).
import path from 'node:path';

import type { ActivationsAnalysis } from '../analyze/activations.js';
import type { AlignmentAnalysis, AlignmentRun } from '../analyze/alignment.js';
import type { LogitLensAnalysis } from '../analyze/logit-lens.js';
import type { LayersAnalysis, OverlapAnalysis } from '../analyze/masks.js';
import type { Pivot } from '../analyze/pivot.js';
import type { WeightUpdateAnalysis } from '../analyze/weights.js';
import type { Cell, Figure } from './figures.js';
import { barChart, colourOf, heatmapChart, lineChart } from './svg-charts.js';

const r6 = (x: number) => Number(x.toPrecision(6));

export function layersFigures(a: LayersAnalysis, source: string): Figure[] {
  const layers = Array.from({ length: a.layers }, (_, l) => String(l));
  const what = `${a.method} neurons (site ${a.site}, ${a.width} units per layer) of ${a.model}, from ${source}`;
  const totals = a.languages.map((l, i) => `${l} ${a.total[i]}`).join(', ');
  const counts: Figure = {
    name: 'layers',
    caption: `Language-specific ${what}: neurons per layer, stacked by language (${totals}). ` +
      `The busiest layer is ${a.layerTotal.indexOf(Math.max(...a.layerTotal))} with ${Math.max(...a.layerTotal)} (language, neuron) pairs.`,
    svg: barChart({
      title: `Language-specific neurons per layer (${a.method}, ${a.model})`, categories: layers, stacked: true, xLabel: 'layer', yLabel: 'neurons',
      groups: a.languages.map((l, i) => ({ name: l, values: a.perLayer[i]! })),
    }),
    table: {
      columns: ['language', 'layer', 'neurons', 'share_of_language', 'share_of_layer'],
      rows: a.languages.flatMap((l, i) => layers.map((_, k) => [l, k, a.perLayer[i]![k]!, r6(a.shareOfLanguage[i]![k]!), r6(a.shareOfLayer[i]![k]!)])),
    },
    data: a,
  };
  const share: Figure = {
    name: 'layers-share',
    caption: `Where each language's neurons sit: the share of the language's ${what.replace(/^\S+ /, '')} in each layer (each line sums to 100%).`,
    svg: lineChart({
      title: `Share of each language's neurons per layer (${a.method}, ${a.model})`, xLabel: 'layer', yLabel: 'share of the language\u2019s neurons (%)',
      series: a.languages.map((l, i) => ({ name: l, points: a.shareOfLanguage[i]!.map((v, k) => [k, 100 * v] as [number, number]) })),
    }),
    table: counts.table,
    data: { languages: a.languages, shareOfLanguage: a.shareOfLanguage },
  };
  return [counts, share];
}

export function overlapFigures(a: OverlapAnalysis, source: string): Figure[] {
  const n = a.languages.length;
  const rows = a.languages.flatMap((x, i) => a.languages.map((y, j) => [x, y, a.sizes[i]!, a.sizes[j]!, a.counts[i]![j]!, r6(a.jaccard[i]![j]!), r6(a.overlapCoefficient[i]![j]!)]));
  const table = { columns: ['language_a', 'language_b', 'size_a', 'size_b', 'shared', 'jaccard', 'overlap_coefficient'], rows };
  let maxOff = { v: -1, a: '', b: '' };
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (a.jaccard[i]![j]! > maxOff.v) maxOff = { v: a.jaccard[i]![j]!, a: a.languages[i]!, b: a.languages[j]! };
  const what = `${a.method} neurons (site ${a.site}) of ${a.model}, from ${source}; languages in clustered order (average linkage on 1 − Jaccard)`;
  const most = n > 1 ? ` Most similar pair: ${maxOff.a}–${maxOff.b} (Jaccard ${maxOff.v.toFixed(3)}).` : '';
  const heat = (metric: 'jaccard' | 'overlapCoefficient', title: string, legend: string) => heatmapChart({
    title, rowLabels: a.languages, columnLabels: a.languages, values: a[metric], legend,
    cellLabel: (i, j) => (metric === 'jaccard' ? `${a.counts[i]![j]}` : a[metric][i]![j]!.toFixed(2)),
    cellTitle: (i, j) => `${a.languages[i]} ∩ ${a.languages[j]}: ${a.counts[i]![j]} shared of ${a.sizes[i]} and ${a.sizes[j]}; Jaccard ${a.jaccard[i]![j]!.toFixed(4)}, overlap coefficient ${a.overlapCoefficient[i]![j]!.toFixed(4)}`,
  });
  return [
    { name: 'overlap', caption: `Overlap of the languages' ${what}. Colour: Jaccard |A∩B|/|A∪B|; number: shared neurons (diagonal: the language's own count).${most}`,
      svg: heat('jaccard', `Overlap of language-specific neurons: Jaccard (${a.method}, ${a.model})`, 'Jaccard'), table, data: a },
    { name: 'overlap-coefficient', caption: `Overlap coefficient |A∩B| / min(|A|, |B|) of the languages' ${what}: 1 when the smaller set lies inside the larger.`,
      svg: heat('overlapCoefficient', `Overlap coefficient of language-specific neurons (${a.method}, ${a.model})`, 'overlap coefficient'), table,
      data: { languages: a.languages, overlapCoefficient: a.overlapCoefficient } },
  ];
}


export function pivotFigures(p: Pivot, source: string): Figure[] {
  const mark = (r: string) => (p.lowResource.includes(r) ? `${r} *` : r);
  const meanRows: { label: string; values: (number | null)[]; delta: (number | null)[] | null }[] = [
    { label: `mean (${p.rows.length})`, values: p.mean.all, delta: p.mean.deltaAll },
    ...(p.mean.lowResource ? [{ label: `mean low-resource (${p.lowResource.length})`, values: p.mean.lowResource, delta: p.mean.deltaLowResource }] : []),
  ];
  const rowLabels = [...p.rows.map(mark), ...meanRows.map((m) => m.label)];
  const allValues = [...p.values, ...meanRows.map((m) => m.values)];
  const allDelta = p.delta ? [...p.delta, ...meanRows.map((m) => m.delta!)] : null;
  const shownCols = p.baseline ? p.cols.filter((c) => c !== p.baseline) : p.cols;
  const colIdx = shownCols.map((c) => p.cols.indexOf(c));
  const shown = (allDelta ?? allValues).map((r) => colIdx.map((j) => r[j] ?? NaN));
  const num = (v: number | null | undefined, sign = false) => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : `${sign && v >= 0 ? '+' : ''}${v.toFixed(Math.abs(v) >= 10 ? 1 : 3)}`);
  // (the data files' paths are in the data, not the caption; the whole split is the default)
  const fixed = Object.entries(p.fixed).filter(([k, v]) => v !== '' && k !== 'data' && !(k === 'limit' && v === 'all')).map(([k, v]) => `${k} ${v}`).join(', ');
  const lower = /ppl|perplexity|nll|loss/i.test(p.metric) ? ' (lower is better for this metric)' : '';
  const caption = `${p.metric} of ${p.results} evaluation results under ${source}${fixed ? ` (${fixed})` : ''}, ${p.rowKey} × ${p.colKey}` +
    (p.baseline ? `: each cell is the difference to ${p.colKey} ${p.baseline} in the same row${lower}` : lower) +
    `; mean rows average the ${p.rowKey}s that have a value` + (p.lowResource.length ? `; * marks the low-resource ${p.rowKey}s (${p.lowResource.join(', ')})` : '') + '.';
  const table = {
    columns: [p.rowKey, 'low_resource', ...p.cols, ...(p.baseline ? shownCols.map((c) => `delta_${c}`) : [])],
    rows: rowLabels.map((_, i) => [i < p.rows.length ? p.rows[i]! : meanRows[i - p.rows.length]!.label, i < p.rows.length ? (p.lowResource.includes(p.rows[i]!) ? 1 : 0) : null,
      ...allValues[i]!, ...(allDelta ? colIdx.map((j) => allDelta[i]![j]!) : [])]),
  };
  return [{
    name: 'pivot', caption, table, data: p,
    svg: heatmapChart({
      title: p.baseline ? `Δ ${p.metric} against ${p.baseline}` : `${p.metric} by ${p.rowKey} and ${p.colKey}`,
      rowLabels, columnLabels: shownCols, values: shown, rowAxis: p.rowKey, columnAxis: p.colKey, legend: p.baseline ? `Δ ${p.metric}` : p.metric,
      cellLabel: (i, j) => num(shown[i]![j]!, !!p.baseline),
      cellTitle: (i, j) => `${rowLabels[i]} / ${shownCols[j]}: ${p.metric} ${num(allValues[i]![colIdx[j]!])}` + (p.baseline ? ` (baseline ${num(allValues[i]![0])}, Δ ${num(shown[i]![j]!, true)})` : ''),
      ...(p.lowResource.length ? { footer: `* low-resource ${p.rowKey}` } : {}),
    }),
  }];
}

export function alignmentFigures(a: AlignmentAnalysis): Figure[] {
  const others = a.languages.filter((l) => l !== a.anchor);
  const series = (metric: 'similarity' | 'retrieval', scale: number) => a.runs.flatMap((run, r) => others.map((l) => ({
    name: a.runs.length > 1 ? `${l} (${run.variant})` : l, dashed: r > 0, colour: colourOf(others.indexOf(l)),
    points: run[metric][l]!.map((v, k) => [k, scale * v] as [number, number]),
  })));
  const table = {
    columns: ['variant', 'language', 'layer', 'similarity', 'retrieval'],
    rows: a.runs.flatMap((run) => others.flatMap((l) => run.similarity[l]!.map((s, k) => [run.variant, l, k, r6(s), r6(run.retrieval[l]![k]!)]))),
  };
  const variants = a.runs.length > 1 ? ` Solid: ${a.runs[0]!.variant} (${a.runs[0]!.model}); dashed: ${a.runs.slice(1).map((r) => `${r.variant} (${r.model})`).join(', ')}.` : ` Model: ${a.runs[0]!.model}.`;
  const what = `${a.sentences} parallel sentences of ${a.source} (at most ${a.maxTokens} tokens each), each mean-pooled over its tokens (BOS excluded) in the residual stream after every layer${a.centered ? ', each language\u2019s mean vector subtracted' : ''}`;
  const best = (run: AlignmentRun, l: string) => { const s = run.similarity[l]!; const k = s.indexOf(Math.max(...s)); return `${l} ${s[k]!.toFixed(3)} at layer ${k}`; };
  return [
    { name: 'alignment-similarity', table, data: a,
      caption: `Cross-lingual alignment to ${a.anchor} per layer: the mean cosine similarity between each sentence and its ${a.anchor} translation, over ${what}.` +
        ` Highest: ${others.map((l) => best(a.runs[0]!, l)).join('; ')}.${variants}`,
      svg: lineChart({ title: `Cosine similarity to ${a.anchor} per layer (parallel sentences)`, xLabel: 'layer', yLabel: `mean cosine to ${a.anchor}`, series: series('similarity', 1) }) },
    { name: 'alignment-retrieval', table, data: a,
      caption: `Parallel-sentence retrieval per layer: the share of sentences whose ${a.anchor} translation is their nearest ${a.anchor} sentence (cosine, among all ${a.sentences}; chance ${(100 / a.sentences).toFixed(1)}%), over ${what}.${variants}`,
      svg: lineChart({ title: `Retrieval accuracy of the ${a.anchor} translation per layer`, xLabel: 'layer', yLabel: 'retrieval accuracy (%)', series: series('retrieval', 100) }) },
  ];
}

export function activationsFigures(a: ActivationsAnalysis, source: string, maxRows = 40): Figure[] {
  const label = (n: { layer: number; unit: number }) => `${n.layer}:${n.unit}`;
  const poly = new Set(a.polysemantic.map(label));
  const what = `${a.neurons.length} neurons (${a.neuronsSource}, site ${a.site}) of ${a.model}, from the statistics ${source} (${a.languages.map((l, k) => `${l} ${a.tokens[k]} tokens`).join(', ')})`;
  const polyText = `${a.polysemantic.length} of them are polysemantic: active (activation probability at or above the ${a.activeQuantile} quantile of all neurons' in a language) for at least ${a.minLanguages} languages` +
    (a.polysemantic.length ? ` (${a.polysemantic.slice(0, 8).map((n) => `${label(n)}: ${n.languages.join('+')}`).join(', ')}${a.polysemantic.length > 8 ? ', …' : ''})` : '');
  const table = {
    columns: ['layer', 'unit', 'polysemantic', ...a.languages.map((l) => `p_${l}`), ...a.languages.map((l) => `mean_${l}`)],
    rows: a.neurons.map((n, i) => [n.layer, n.unit, poly.has(label(n)) ? 1 : 0, ...a.probability[i]!.map(r6), ...a.mean[i]!.map(r6)]),
  };
  // The heatmap shows the neurons that fire most somewhere (at most maxRows), in layer order.
  const top = a.neurons.map((n, i) => ({ n, i, peak: Math.max(...a.probability[i]!) })).sort((x, y) => y.peak - x.peak).slice(0, maxRows)
    .sort((x, y) => x.n.layer - y.n.layer || x.n.unit - y.n.unit);
  const figs: Figure[] = [
    { name: 'activations', table, data: a,
      caption: `Activation probability P(value > 0) per language of ${what}, averaged over the chosen neurons, against the average over every profiled neuron. ${polyText}.`,
      svg: barChart({ title: `Activation probability of the chosen neurons per language (${a.neuronsSource})`, categories: a.languages, yLabel: 'P(value > 0) (%)',
        groups: [{ name: 'chosen neurons', values: a.chosenProbability.map((p) => 100 * p) }, { name: 'all neurons', values: a.allProbability.map((p) => 100 * p) }],
        format: (v) => `${v.toFixed(1)}%`, valueLabels: true }) },
    { name: 'activations-neurons', table, data: { languages: a.languages, neurons: top.map((t) => t.n), probability: top.map((t) => a.probability[t.i]) },
      caption: `Activation probability per neuron (rows: layer:unit; * polysemantic) and language of ${what}${top.length < a.neurons.length ? `; the ${top.length} with the highest peak are shown` : ''}. ${polyText}.`,
      svg: heatmapChart({ title: `Activation probability per neuron and language (${a.neuronsSource})`, rowLabels: top.map((t) => `${label(t.n)}${poly.has(label(t.n)) ? ' *' : ''}`),
        columnLabels: a.languages, values: top.map((t) => a.probability[t.i]!), rowAxis: 'neuron (layer:unit)', columnAxis: 'language', legend: 'P(value > 0)',
        cellLabel: (i, j) => a.probability[top[i]!.i]![j]!.toFixed(2) }) },
  ];
  if (a.histogram) {
    const e = a.histogram.edges;
    figs.push({ name: 'activations-histogram', data: { languages: a.languages, ...a.histogram },
      table: { columns: ['language', 'bin_low', 'bin_high', 'share'], rows: a.languages.flatMap((l, k) => a.histogram!.share[k]!.map((s, b) => [l, e[b]!, e[b + 1]!, r6(s)])) },
      caption: `Distribution of the values of ${what}: the share of their (token, neuron) values in each histogram bin (bin centres on the x axis; the outer bins also hold the values beyond them).`,
      svg: lineChart({ title: `Value distribution of the chosen neurons per language (${a.neuronsSource})`, xLabel: `value (bin centre, site ${a.site})`, yLabel: 'share of values (%)',
        series: a.languages.map((l, k) => ({ name: l, points: a.histogram!.share[k]!.map((s, b) => [(e[b]! + e[b + 1]!) / 2, 100 * s] as [number, number]) })) }) });
  }
  if (a.sequenceMeans) {
    const sm = a.sequenceMeans;
    figs.push({ name: 'activations-sequences', data: { languages: a.languages, ...sm },
      table: { columns: ['language', 'sequences', ...sm.quantiles.map((q) => `q${Math.round(100 * q)}`)], rows: a.languages.map((l, k) => [l, sm.sequences[k]!, ...sm.values[k]!.map(r6)]) },
      caption: `Per-sequence mean activation of ${what}, averaged over the chosen neurons: quantiles ${sm.quantiles.join(', ')} over each language's sequences.`,
      svg: barChart({ title: `Per-sequence mean activation of the chosen neurons: quantiles (${a.neuronsSource})`, categories: a.languages, yLabel: 'mean value per sequence',
        groups: sm.quantiles.map((q, j) => ({ name: `q${Math.round(100 * q)}`, values: sm.values.map((v) => v[j]!) })) }) });
  }
  return figs;
}

export function weightUpdateFigures(a: WeightUpdateAnalysis): Figure[] {
  const layers = Array.from({ length: a.layers }, (_, l) => String(l));
  const relText = a.relative.some((r) => r.some((v) => v !== null)) ? ' (relative to the base weights in the CSV and JSON)' : '';
  const kind = { delta: 'a sparse delta (new values minus the base model\u2019s)', adapter: 'a PEFT LoRA adapter (ΔW = s·B·A)', checkpoints: 'two checkpoints' }[a.kind];
  const other = a.other.length ? ` Outside the layers' projections: ${a.other.map((o) => `${o.tensor} ${o.norm.toPrecision(3)}`).join(', ')}.` : '';
  const table = {
    columns: ['layer', 'projection', 'norm', 'relative'],
    rows: a.projections.flatMap((p, i) => layers.map((_, l) => [l, p, r6(a.norm[i]![l]!), a.relative[i]![l] === null ? null : r6(a.relative[i]![l]!)] as Cell[]))
      .concat(a.other.map((o) => [null, o.tensor, r6(o.norm), o.relative === null ? null : r6(o.relative)])),
  };
  const figs: Figure[] = [{
    name: 'delta', table, data: a,
    caption: `Where fine-tuning changed the weights: the Frobenius norm ‖ΔW‖ of each layer's projections${relText}, from ${kind} (${a.source}); total ‖ΔW‖ ${a.totalNorm.toPrecision(4)}.${other}`,
    svg: barChart({ title: `Norm of the weight change per layer and projection (${path.basename(a.source)})`, categories: layers, xLabel: 'layer', yLabel: '‖ΔW‖ (Frobenius)',
      groups: a.projections.map((p, i) => ({ name: p, values: a.norm[i]! })) }),
  }];
  if (a.mask) {
    const m = a.mask;
    figs.push({ name: 'delta-mask', data: { layers: a.layers, ...m },
      table: { columns: ['layer', 'fraction_in_mask'], rows: [...layers.map((l, k) => [Number(l), m.fractionPerLayer[k] === null ? null : r6(m.fractionPerLayer[k]!)] as Cell[]), ['all', m.fraction === null ? null : r6(m.fraction)]] },
      caption: `Share of the weight change's energy ‖ΔW‖² on the ${m.neurons} neurons of ${m.source} (rows of gate_proj and up_proj, columns of down_proj), per layer (of all of that layer's change) and overall: ${m.fraction === null ? 'none (nothing changed)' : `${(100 * m.fraction).toFixed(1)}%`}. From ${kind} (${a.source}).`,
      svg: barChart({ title: `Share of the weight change on the mask's neurons (${m.source})`, categories: layers, xLabel: 'layer', yLabel: 'share of ‖ΔW‖² (%)', yMax: 100,
        groups: [{ name: '', values: m.fractionPerLayer.map((f) => 100 * (f ?? 0)) }], format: (v) => `${v.toFixed(0)}%`, valueLabels: true }) });
  }
  return figs;
}

export function logitLensFigures(a: LogitLensAnalysis): Figure[] {
  const langs = Object.keys(a.byLanguage).sort();
  const series = langs.flatMap((l, i) => [
    { name: `${l}: ${l}`, colour: colourOf(i), points: a.layers.map((layer, j) => [layer, a.byLanguage[l]!.own[j]!] as [number, number]) },
    ...(l === 'en' ? [] : [{ name: `${l}: en`, colour: colourOf(i), dashed: true, points: a.layers.map((layer, j) => [layer, a.byLanguage[l]!.english[j]!] as [number, number]) }]),
  ]);
  const table = {
    columns: ['prompt_language', 'prompts', 'layer', 'output_language', 'mass'],
    rows: langs.flatMap((l) => Object.entries(a.byLanguage[l]!.mass).flatMap(([out, m]) => a.layers.map((layer, j) => [l, a.byLanguage[l]!.prompts, layer, out, r6(m[j]!)]))),
  };
  const peak = (l: string) => { const m = a.byLanguage[l]!.english; const j = m.indexOf(Math.max(...m)); return `${l} ${m[j]!.toFixed(2)} at layer ${a.layers[j]}`; };
  return [{
    name: 'logit-lens', table, data: a,
    caption: `The logit lens of ${a.model}${a.intervention ? ` under ${a.intervention.join(' + ')}` : ''}: the residual stream after each layer read through the final norm and ` +
      `LM head at each prompt's last position; the ${a.topK} most likely next tokens labelled by ${a.identifier}, and a language's mass the summed probability of ` +
      `those in it, averaged over the prompts of each language (${langs.map((l) => `${l} ${a.byLanguage[l]!.prompts}`).join(', ')}). Solid: the prompt's own language; ` +
      `dashed: English. English peaks: ${langs.filter((l) => l !== 'en').map(peak).join('; ') || 'none'}.`,
    svg: lineChart({ title: 'Logit lens: mass of the prompt language (solid) and English (dashed) per layer', xLabel: 'layer', yLabel: `probability in the top ${a.topK}`, series }),
  }];
}
