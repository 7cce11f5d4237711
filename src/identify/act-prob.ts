// Activation-probability thresholding (Mondal et al. 2025, "Language-specific neurons do not facilitate cross-lingual
// transfer"; reference code soumenkm/LangSpecificNeurons, code/activation.py and code/lang_neurons.py).
//
// Per language separately, a score per (layer, neuron); keep the round(0.00125·L·I) highest (torch.topk). No contrast
// across languages. Variants:
// - act-prob-75p / 90p / 95p: fraction of tokens whose value exceeds a per-neuron percentile threshold. In the
//   reference the threshold is the language's OWN per-neuron percentile (act_stat/rel_<lang>.pkl of the same language),
//   computed in a first pass as the mean over batches of the per-batch torch.quantile over the batch's b·T positions
//   (padding included), then a second, reshuffled pass counts act > threshold. Were the threshold the exact percentile
//   of the same data, every neuron would score 1 − q; the reference's scores differ from 1 − q only through the
//   mean-of-batch-quantiles estimator (and padding), i.e. they rank neurons by how bursty their activations are across
//   batches. We therefore offer, by `percentileOf`:
//     'above-counts' (default, the reference reading): the statistics' `above` counts over per-unit thresholds the
//        profiler computed in an earlier pass; how those thresholds are estimated is the profiler's choice, and the
//        score is only informative if they are not the exact quantiles of the same corpus;
//     'pooled-histogram': per neuron, the percentile of all languages' values pooled (each language weighted equally),
//        from the histograms; a language scores high when it pushes the neuron above the multilingual norm;
//     'layer-histogram': per language and layer, the percentile over all neurons of the layer, from the histograms.
//   Histogram estimates assume values spread uniformly inside a bin (the end bins also hold the out-of-range values).
// - act-prob-zero: p = over_zero / n (LAPE's p).
// - act-prob-mean-abs: mean |value| (reference `act_abs_mean`; its `act_prob_mean` is computed identically) =
//   SiteStats.absSum / tokens (the profiler records Σ|value|); statistics files written before it was recorded have
//   no `abs_sum`: then it is estimated from the histogram, else refused.
import type { Histogram, Site } from '../profile/stats.js';
import { checkInputs, checkRate, identifyError, pyRound, topIndices, type IdentifyContext, type LanguageStats } from './common.js';
import { maskFromFlat, type NeuronMask } from './masks.js';

export type ActProbVariant = 'act-prob-75p' | 'act-prob-90p' | 'act-prob-95p' | 'act-prob-zero' | 'act-prob-mean-abs';
export const ACT_PROB_VARIANTS: readonly ActProbVariant[] = ['act-prob-75p', 'act-prob-90p', 'act-prob-95p', 'act-prob-zero', 'act-prob-mean-abs'];
export type PercentileSource = 'above-counts' | 'pooled-histogram' | 'layer-histogram';

export interface ActProbOptions {
  site?: Site;
  /** Fraction of (layer, neuron) kept per language (default 0.00125 = 0.125%). */
  topRate?: number;
  /** Thresholds of the percentile variants (see the header); default 'above-counts'. */
  percentileOf?: PercentileSource;
}

const PERCENT: Partial<Record<ActProbVariant, number>> = { 'act-prob-75p': 75, 'act-prob-90p': 90, 'act-prob-95p': 95 };

/** Weighted quantile of a histogram (`w` over bins between `edges`), interpolating uniformly inside the bin. */
export function histogramQuantile(w: Float64Array, edges: Float64Array, q: number): number {
  let total = 0;
  for (const x of w) total += x;
  const r = q * total;
  let cum = 0;
  for (let b = 0; b < w.length; b++) {
    const c = w[b]!;
    if (c > 0 && cum + c >= r) return edges[b]! + (edges[b + 1]! - edges[b]!) * Math.max(0, r - cum) / c;
    cum += c;
  }
  return edges[edges.length - 1]!;
}

/** Fraction of a histogram's mass above t, values spread uniformly inside each bin. */
export function histogramFractionAbove(w: Float64Array, edges: Float64Array, t: number): number {
  let total = 0, above = 0;
  for (let b = 0; b < w.length; b++) {
    const c = w[b]!, lo = edges[b]!, hi = edges[b + 1]!;
    total += c;
    if (lo >= t) above += c;
    else if (hi > t) above += c * (hi - t) / (hi - lo);
  }
  return total > 0 ? above / total : 0;
}

/** E|x| of a histogram with values uniform inside each bin. */
export function histogramMeanAbs(w: Float64Array, edges: Float64Array): number {
  let total = 0, sum = 0;
  for (let b = 0; b < w.length; b++) {
    const c = w[b]!, lo = edges[b]!, hi = edges[b + 1]!;
    total += c;
    const meanAbs = lo >= 0 ? (lo + hi) / 2 : hi <= 0 ? -(lo + hi) / 2 : (lo * lo + hi * hi) / (2 * (hi - lo));
    sum += c * meanAbs;
  }
  return total > 0 ? sum / total : 0;
}

/** totals / tokens, in a loop: Float64Array.from(totals, mapFn) goes through a JS array, ~25 times slower (10 s over
 *  100 languages of an 8B model). */
function perToken(totals: Float64Array, tokens: number): Float64Array {
  const out = new Float64Array(totals.length);
  for (let i = 0; i < totals.length; i++) out[i] = totals[i]! / tokens;
  return out;
}

function histogramsOf(ctx: IdentifyContext, why: string): Histogram[] {
  const first = ctx.siteStats[0]!.histogram;
  return ctx.siteStats.map((st, k) => {
    const h = st.histogram;
    const file = ctx.inputs[k]!.file;
    if (!h) throw identifyError(`${why} needs per-neuron histograms at site "${ctx.site}"; profile with histograms`, file);
    if (h.edges.join(',') !== first!.edges.join(',')) throw identifyError(`histogram edges differ from those of ${ctx.inputs[0]!.file}`, file);
    return h;
  });
}

function percentileScores(ctx: IdentifyContext, percent: number, source: PercentileSource): Float64Array[] {
  const units = ctx.layers.length * ctx.width;
  if (source === 'above-counts') {
    return ctx.siteStats.map((st, k) => {
      const { file, stats } = ctx.inputs[k]!;
      if (!st.above) throw identifyError(`no counts above per-neuron thresholds at site "${ctx.site}": run the profiler's p${percent} threshold pass, or use percentileOf 'pooled-histogram'`, file);
      const label = /p(\d+)/i.exec(st.above.source);
      if (label && Number(label[1]) !== percent) throw identifyError(`the counts are above thresholds "${st.above.source}", this variant needs p${percent}`, file);
      return perToken(st.above.counts, stats.tokens);
    });
  }
  // The pooled percentile is the multilingual norm a language is measured against; of one language it is that
  // language's own percentile, which every neuron exceeds on about the same 1 − q of its tokens: an arbitrary ranking.
  if (source === 'pooled-histogram' && ctx.languages.length < 2)
    throw identifyError(`act-prob-${percent}p with percentileOf 'pooled-histogram' needs at least two languages (the percentile is pooled over them); use 'layer-histogram' or 'above-counts' for one`);
  const hists = histogramsOf(ctx, `percentileOf '${source}'`);
  const edges = hists[0]!.edges, B = edges.length - 1, q = percent / 100;
  const out = hists.map(() => new Float64Array(units));
  const w = new Float64Array(B);
  if (source === 'pooled-histogram') {
    for (let i = 0; i < units; i++) {
      w.fill(0);
      hists.forEach((h, k) => { const n = ctx.inputs[k]!.stats.tokens; for (let b = 0; b < B; b++) w[b]! += h.counts[i * B + b]! / n; });
      const t = histogramQuantile(w, edges, q);
      hists.forEach((h, k) => { out[k]![i] = histogramFractionAbove(h.counts.subarray(i * B, (i + 1) * B), edges, t); });
    }
  } else {
    hists.forEach((h, k) => {
      for (let s = 0; s < ctx.layers.length; s++) {
        w.fill(0);
        for (let j = 0; j < ctx.width; j++) for (let b = 0; b < B; b++) w[b]! += h.counts[(s * ctx.width + j) * B + b]!;
        const t = histogramQuantile(w, edges, q);
        for (let j = 0; j < ctx.width; j++) { const i = s * ctx.width + j; out[k]![i] = histogramFractionAbove(h.counts.subarray(i * B, (i + 1) * B), edges, t); }
      }
    });
  }
  return out;
}

function meanAbsScores(ctx: IdentifyContext): { scores: Float64Array[]; estimated: boolean } {
  const withAbs = ctx.siteStats.every((st) => st.absSum);
  if (withAbs) return { scores: ctx.siteStats.map((st, k) => perToken(st.absSum!, ctx.inputs[k]!.stats.tokens)), estimated: false };
  const hists = histogramsOf(ctx, "act-prob-mean-abs (the statistics have no Σ|value| 'abs_sum')");
  const B = hists[0]!.edges.length - 1, units = ctx.layers.length * ctx.width;
  const scores = hists.map((h) => {
    const out = new Float64Array(units);
    for (let i = 0; i < units; i++) out[i] = histogramMeanAbs(h.counts.subarray(i * B, (i + 1) * B), h.edges);
    return out;
  });
  return { scores, estimated: true };
}

/** Per-language scores of one variant, [layers][width] each, in input order. */
export function actProbScores(inputs: readonly LanguageStats[], variant: ActProbVariant, options: ActProbOptions = {}): { ctx: IdentifyContext; scores: Float64Array[]; estimated: boolean } {
  if (!ACT_PROB_VARIANTS.includes(variant)) throw identifyError(`unknown variant "${String(variant)}" (known: ${ACT_PROB_VARIANTS.join(', ')})`);
  const ctx = checkInputs(inputs, options.site ?? 'act');
  const percent = PERCENT[variant];
  if (percent !== undefined) {
    const source = options.percentileOf ?? 'above-counts';
    return { ctx, scores: percentileScores(ctx, percent, source), estimated: source !== 'above-counts' };
  }
  if (variant === 'act-prob-zero')
    return { ctx, scores: ctx.siteStats.map((st, k) => perToken(st.overZero, ctx.inputs[k]!.stats.tokens)), estimated: false };
  return { ctx, ...meanAbsScores(ctx) };
}

export function identifyActProb(inputs: readonly LanguageStats[], variant: ActProbVariant, options: ActProbOptions = {}): NeuronMask {
  const topRate = checkRate('topRate', options.topRate ?? 0.00125);
  const { ctx, scores, estimated } = actProbScores(inputs, variant, options);
  const quota = pyRound(topRate * ctx.layers.length * ctx.width);
  const perLanguage = new Map(ctx.languages.map((lang, k) => [lang, topIndices(scores[k]!, quota, true)]));
  const parameters: Record<string, unknown> = { variant, topRate };
  if (PERCENT[variant] !== undefined) parameters['percentileOf'] = options.percentileOf ?? 'above-counts';
  return maskFromFlat(ctx, variant, parameters, perLanguage, { quota, histogramEstimate: estimated });
}
