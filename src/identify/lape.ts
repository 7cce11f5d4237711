// LAPE: language activation probability entropy (Tang et al. 2024, RUCAIBox/Language-Specific-Neurons identify.py;
// also Gurgurov, Rahmanisa; Mondal et al. 2025 re-implement it in soumenkm/LangSpecificNeurons lang_neurons.py).
//
//   p[l,j,k] = over_zero / n_k;  p̂ = p / Σ_k p (0 when the sum is 0);  LAPE = −Σ_k p̂ ln p̂ (0·ln 0 = 0)
//   τ = filter_rate quantile of every p pooled over layer × neuron × language; no p > τ ⇒ LAPE = +∞ (excluded)
//   keep the round(top_rate·L·I) lowest LAPE over all layers; assign to each language whose p > bar, where bar is the
//   activation_bar_ratio quantile of the same pooled p (Tang: `flattened_probs.kthvalue(...)` again; Mondal: the
//   same interpolated threshold τ).
//
// Choices beyond the references (documented in the report):
// - probabilities are float64 (Tang's are float32); Mondal's 1e-10 epsilons are not added (they only shift values
//   by ~1e-10 and would make all-zero rows non-zero);
// - each neuron's terms are summed in ascending order, so neurons whose p rows are permutations of each other get
//   bit-identical LAPE and tie as they should;
// - excluded (+∞) neurons are never kept, even when fewer than round(top_rate·L·I) survive the filter (torch.topk
//   would fill the quota with +∞ entries, and Mondal's `lape <= cutoff` would then keep every neuron);
// - ties at the cutoff without keepTies are broken by (layer, neuron) order, deterministic where topk is not.
// L is the number of profiled layers (all by default).
import type { Site } from '../profile/stats.js';
import { checkInputs, checkRate, identifyError, pyRound, quantile, type IdentifyContext, type LanguageStats, type QuantileVariant } from './common.js';
import { maskFromFlat, type NeuronMask } from './masks.js';

export interface LapeOptions {
  site?: Site;
  /** Fraction of all (layer, neuron) kept by lowest LAPE (default 0.01; Gurgurov's masks 0.05). */
  topRate?: number;
  /** Quantile of pooled p below which a neuron is "never active enough" (default 0.95). */
  filterRate?: number;
  /** Quantile of pooled p a language must exceed to own a kept neuron (default: filterRate). */
  activationBarRatio?: number;
  /** 'kthvalue' (Tang, default) or 'interpolated' (Mondal). */
  quantile?: QuantileVariant;
  /** Keep every neuron whose LAPE equals the cutoff (Mondal: `lape <= cutoff`); default false (Tang). */
  keepTies?: boolean;
}

/** The two published settings; Gurgurov = tang with topRate 0.05. */
export const LAPE_PRESETS = {
  tang: { topRate: 0.01, filterRate: 0.95, quantile: 'kthvalue', keepTies: false },
  mondal: { topRate: 0.01, filterRate: 0.95, quantile: 'interpolated', keepTies: true },
} as const satisfies Record<string, LapeOptions>;

export interface LapeScores {
  /** [L·I][K] activation probabilities, language-minor. */
  p: Float64Array;
  /** [L·I] LAPE (+∞ when excluded by τ). */
  lape: Float64Array;
  threshold: number;
}

/** Entropy of one neuron's probabilities over languages; `row` is sorted in place (see the header). */
export function lapeOfRow(row: Float64Array): number {
  row.sort();
  let sum = 0;
  for (const x of row) sum += x;
  if (!(sum > 0)) return 0; // all-zero row: p̂ = 0 everywhere, entropy 0 (it is excluded by τ anyway unless τ < 0)
  let h = 0;
  for (const x of row) if (x > 0) { const q = x / sum; h -= q * Math.log(q); }
  return h;
}

/** p, LAPE and τ for every (layer, neuron) of the inputs (for inspection and plots). */
export function lapeScores(inputs: readonly LanguageStats[], options: LapeOptions = {}): LapeScores {
  const ctx = checkInputs(inputs, options.site ?? 'act');
  return computeLape(ctx, checkRate('filterRate', options.filterRate ?? 0.95), options.quantile ?? 'kthvalue');
}

function computeLape(ctx: IdentifyContext, filterRate: number, variant: QuantileVariant): LapeScores {
  const K = ctx.languages.length;
  // With one language every p̂ is 1 or 0 and every LAPE 0: the "lowest entropy" would be the first neurons in
  // (layer, neuron) order among those above τ, an arbitrary set.
  if (K < 2) throw identifyError(`LAPE needs at least two languages (a neuron's entropy is taken over the languages; with only ${ctx.languages[0]} every neuron's is 0)`);
  const units = ctx.layers.length * ctx.width;
  const p = new Float64Array(units * K);
  ctx.siteStats.forEach((st, k) => {
    const n = ctx.inputs[k]!.stats.tokens;
    for (let i = 0; i < units; i++) p[i * K + k] = st.overZero[i]! / n;
  });
  const threshold = quantile(p, filterRate, variant);
  const lape = new Float64Array(units);
  const row = new Float64Array(K);
  for (let i = 0; i < units; i++) {
    let active = false;
    for (let k = 0; k < K; k++) { row[k] = p[i * K + k]!; if (row[k]! > threshold) active = true; }
    lape[i] = active ? lapeOfRow(row) : Infinity;
  }
  return { p, lape, threshold };
}

/** Identifies language-specific neurons by LAPE; every language of the inputs is in the mask (possibly empty). */
export function identifyLape(inputs: readonly LanguageStats[], options: LapeOptions = {}): NeuronMask {
  const site = options.site ?? 'act';
  const ctx = checkInputs(inputs, site);
  const topRate = checkRate('topRate', options.topRate ?? 0.01);
  const filterRate = checkRate('filterRate', options.filterRate ?? 0.95);
  const barRatio = checkRate('activationBarRatio', options.activationBarRatio ?? filterRate);
  const variant = options.quantile ?? 'kthvalue';
  const keepTies = options.keepTies ?? false;
  const { p, lape, threshold } = computeLape(ctx, filterRate, variant);
  const K = ctx.languages.length;
  const units = lape.length;

  const candidates: number[] = [];
  for (let i = 0; i < units; i++) if (lape[i] !== Infinity) candidates.push(i);
  candidates.sort((a, b) => lape[a]! - lape[b]! || a - b);
  const quota = pyRound(units * topRate);
  let kept = candidates.slice(0, quota);
  const cutoff = kept.length ? lape[kept[kept.length - 1]!]! : null;
  if (keepTies && cutoff !== null) kept = candidates.filter((i) => lape[i]! <= cutoff);

  const bar = barRatio === filterRate ? threshold : quantile(p, barRatio, variant);
  const perLanguage = new Map<string, number[]>(ctx.languages.map((l) => [l, []]));
  for (const i of kept) for (let k = 0; k < K; k++) if (p[i * K + k]! > bar) perLanguage.get(ctx.languages[k]!)!.push(i);

  return maskFromFlat(ctx, 'lape', { topRate, filterRate, activationBarRatio: barRatio, quantile: variant, keepTies }, perLanguage, {
    threshold, activationBar: bar, candidates: candidates.length, quota, kept: kept.length, cutoffLape: cutoff,
    unassigned: kept.filter((i) => { for (let k = 0; k < K; k++) if (p[i * K + k]! > bar) return false; return true; }).length,
  });
}
