// Identification methods on small hand-worked statistics (no model, no engine): every expected value below is
// derived in the comments next to it.
import { describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import type { ActivationStats, Histogram, SiteStats } from '../src/profile/stats.js';
import { pyRound, quantile, type LanguageStats } from '../src/identify/common.js';
import { identifyLape, lapeOfRow, lapeScores, LAPE_PRESETS } from '../src/identify/lape.js';
import { identifyActProb, histogramFractionAbove, histogramMeanAbs, histogramQuantile } from '../src/identify/act-prob.js';
import { averagePrecision, averagePrecisionScores, identifyAveragePrecision, identifyAveragePrecisionJoint } from '../src/identify/average-precision.js';
import { identifyRawActivated } from '../src/identify/raw-activated.js';

interface Extra { fingerprint?: string; seqMeans?: number[][][]; above?: { source: string; counts: number[][] }; histogram?: { edges: number[]; counts: number[][][] } }

/** Statistics of one language at site 'act': over_zero counts [layers][width], optional extras. */
function stats(language: string, tokens: number, overZero: number[][], extra: Extra = {}): LanguageStats {
  const layers = overZero.length, width = overZero[0]!.length;
  const flat = (a: number[][]) => Float64Array.from(a.flat());
  const st: SiteStats = { site: 'act', width, overZero: flat(overZero), sum: new Float64Array(layers * width), sumSq: new Float64Array(layers * width) };
  if (extra.seqMeans) st.seqMeans = Float32Array.from(extra.seqMeans.flat(2));
  if (extra.above) st.above = { source: extra.above.source, thresholds: new Float32Array(layers * width), counts: flat(extra.above.counts) };
  if (extra.histogram) st.histogram = { edges: Float64Array.from(extra.histogram.edges), counts: Float64Array.from(extra.histogram.counts.flat(2)) } satisfies Histogram;
  const s: ActivationStats = {
    meta: {
      format: 'langneurons-stats/1', language, layers: Array.from({ length: layers }, (_, i) => i),
      model: { name: 'toy', modelType: 'llama', layers, hidden: 4, intermediate: width, fingerprint: extra.fingerprint ?? 'f'.repeat(64) },
      scope: { mode: 'windows', maxLen: 16, bos: false, countPadding: false, tokenBudget: 0 },
      corpus: { files: [`${language}.txt`], fingerprint: `c-${language}` }, toolVersion: 'test', shards: 1,
    },
    tokens, sequences: extra.seqMeans?.length ?? 1, sites: new Map([['act', st]]),
  };
  return { file: `/stats/${language}.safetensors`, stats: s };
}

function refusal(fn: () => unknown): LangneuronsError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(LangneuronsError); return e as LangneuronsError; }
  throw new Error('expected a LangneuronsError');
}

describe('quantiles and rounding', () => {
  it('rounds half to even like Python', () => {
    expect([0.5, 1.5, 2.5, 3.5, 12.6, 1.2].map(pyRound)).toEqual([0, 2, 2, 4, 13, 1]);
  });

  it('kthvalue vs interpolated on a tiny pooled array', () => {
    const x = Float64Array.of(10, 3, 1, 4, 2); // sorted: 1 2 3 4 10
    // q = 0.5: kthvalue k = round(2.5) = 2 → 2;          interpolated pos 0.5·4 = 2 → 3
    expect(quantile(x, 0.5, 'kthvalue')).toBe(2);
    expect(quantile(x, 0.5, 'interpolated')).toBe(3);
    // q = 0.9: kthvalue k = round(4.5) = 4 → 4;          interpolated pos 3.6 → 4 + 0.6·(10 − 4) = 7.6
    expect(quantile(x, 0.9, 'kthvalue')).toBe(4);
    expect(quantile(x, 0.9, 'interpolated')).toBeCloseTo(7.6, 12);
    // q = 0.7: kthvalue k = round(3.5) = 4 → 4;          interpolated pos 2.8 → 3 + 0.8·1 = 3.8
    expect(quantile(x, 0.7, 'kthvalue')).toBe(4);
    expect(quantile(x, 0.7, 'interpolated')).toBeCloseTo(3.8, 12);
    expect(quantile(x, 0, 'kthvalue')).toBe(1); // k clamped to 1
    expect(quantile(x, 1, 'interpolated')).toBe(10);
    expect([...x]).toEqual([10, 3, 1, 4, 2]); // input untouched
  });
});

// Three languages, 10 tokens each, 2 layers × 3 neurons; p = over_zero / 10, rows [en, fr, zh]:
//   (0,0) .9 0  0    en only          LAPE 0
//   (0,1) 0  .8 .8   fr and zh        p̂ = ½,½ → LAPE ln 2 ≈ 0.693
//   (0,2) 0  0  0    all-zero row     excluded
//   (1,0) .1 .1 .1   never above τ    excluded
//   (1,1) 0  0  .9   zh only          LAPE 0
//   (1,2) .5 .5 .6                    p̂ = .3125 .3125 .375 → LAPE ≈ 1.0948
// Pooled sorted p (N = 18): eight 0, three .1, .5 .5 .6, .8 .8, .9 .9.
// filterRate 0.7: kthvalue k = round(12.6) = 13 → τ = .5; interpolated pos 11.9 between the 12th and 13th (.5, .5) → .5.
const en = stats('en', 10, [[9, 0, 0], [1, 0, 5]]);
const fr = stats('fr', 10, [[0, 8, 0], [1, 0, 5]]);
const zh = stats('zh', 10, [[0, 8, 0], [1, 9, 6]]);
const trio = [en, fr, zh];

describe('LAPE', () => {
  it('computes p, entropy and the exclusion by τ (all-zero rows give no NaN)', () => {
    const { lape, threshold } = lapeScores(trio, { filterRate: 0.7 });
    expect(threshold).toBe(0.5);
    expect(lape[0]).toBe(0);
    expect(lape[1]).toBeCloseTo(Math.LN2, 12);
    expect(lape[2]).toBe(Infinity);
    expect(lape[3]).toBe(Infinity);
    expect(lape[4]).toBe(0);
    expect(lape[5]).toBeCloseTo(-(2 * 0.3125 * Math.log(0.3125) + 0.375 * Math.log(0.375)), 12);
    expect([...lape].some(Number.isNaN)).toBe(false);
    expect(lapeOfRow(Float64Array.of(0, 0, 0))).toBe(0);
    expect(lapeScores(trio, { filterRate: 0.7, quantile: 'interpolated' }).threshold).toBe(0.5);
  });

  it('keeps round(top_rate·L·I) lowest and assigns to every language above the bar (shared neurons)', () => {
    // quota = round(0.5·6) = 3: (0,0) and (1,1) at 0, then (0,1) at ln 2. Bar = τ = .5:
    // (0,0) → en; (1,1) → zh; (0,1) → fr and zh.
    const mask = identifyLape(trio, { filterRate: 0.7, topRate: 0.5 });
    expect(mask.languages).toEqual({ en: [[0], []], fr: [[1], []], zh: [[1], [1]] });
    expect(mask.derived).toMatchObject({ threshold: 0.5, activationBar: 0.5, quota: 3, kept: 3, candidates: 4, unassigned: 0 });
    expect(mask.model.fingerprint).toBe('f'.repeat(64));
    expect(mask.sources.map((s) => s.file)).toEqual(['/stats/en.safetensors', '/stats/fr.safetensors', '/stats/zh.safetensors']);
  });

  it('ties at the cutoff: Tang keeps the quota, Mondal (keepTies) keeps every tie', () => {
    // quota = round(0.2·6) = round(1.2) = 1; (0,0) and (1,1) tie at LAPE 0.
    const tang = identifyLape(trio, { filterRate: 0.7, topRate: 0.2 });
    expect(tang.languages).toEqual({ en: [[0], []], fr: [[], []], zh: [[], []] }); // tie broken by (layer, neuron)
    const mondal = identifyLape(trio, { filterRate: 0.7, topRate: 0.2, keepTies: true });
    expect(mondal.languages).toEqual({ en: [[0], []], fr: [[], []], zh: [[], [1]] });
    expect(mondal.derived).toMatchObject({ quota: 1, kept: 2, cutoffLape: 0 });
    const preset = identifyLape(trio, { ...LAPE_PRESETS.mondal, filterRate: 0.7, topRate: 0.2 });
    expect(preset.parameters).toMatchObject({ quantile: 'interpolated', keepTies: true });
    expect(preset.languages).toEqual(mondal.languages);
  });

  it('a language with no neuron above the bar gets an empty mask', () => {
    // activationBarRatio 0.9: k = round(16.2) = 16 → bar = .8; p > .8 is strict, so fr (.8 on (0,1)) gets nothing,
    // zh keeps (1,1) only and (0,1) belongs to no language.
    const mask = identifyLape(trio, { filterRate: 0.7, topRate: 0.5, activationBarRatio: 0.9 });
    expect(mask.languages).toEqual({ en: [[0], []], fr: [[], []], zh: [[], [1]] });
    expect(mask.derived).toMatchObject({ activationBar: 0.8, unassigned: 1 });
  });

  it('never keeps excluded neurons, even when the quota is larger than the survivors', () => {
    const mask = identifyLape(trio, { filterRate: 0.7, topRate: 1 }); // quota 6, only 4 survive τ
    expect(mask.derived).toMatchObject({ quota: 6, kept: 4 });
    // (1,2): only zh (.6) is above .5
    expect(mask.languages).toEqual({ en: [[0], []], fr: [[1], []], zh: [[1], [1, 2]] });
  });

  it('refuses a language with no tokens, naming its file', () => {
    const empty = stats('sw', 0, [[0, 0, 0], [0, 0, 0]]);
    const err = refusal(() => identifyLape([en, empty]));
    expect(err.message).toContain('/stats/sw.safetensors');
    expect(err.message).toMatch(/"sw" has 0 tokens/);
  });

  it('refuses statistics of different models, duplicate languages and a missing site', () => {
    const other = stats('de', 10, [[1, 1, 1], [1, 1, 1]], { fingerprint: 'a'.repeat(64) });
    expect(refusal(() => identifyLape([en, other])).message).toMatch(/de\.safetensors: statistics of another model.*en\.safetensors/);
    expect(refusal(() => identifyLape([en, en])).message).toMatch(/"en" is given twice/);
    expect(refusal(() => identifyLape([en], { site: 'gate' })).message).toMatch(/no statistics for site "gate"/);
    expect(refusal(() => identifyLape([en], { topRate: 2 })).message).toMatch(/topRate/);
  });
});

describe('activation-probability thresholding (Mondal)', () => {
  // 1 layer × 8 neurons, 100 tokens: act-prob-zero scores = over_zero / 100; topRate 0.25 → quota round(2) = 2.
  const a = stats('en', 100, [[10, 50, 50, 20, 90, 0, 0, 5]]);
  const b = stats('fr', 100, [[80, 0, 70, 70, 0, 0, 0, 1]]);

  it('act-prob-zero keeps the top scores per language, ties by index', () => {
    const mask = identifyActProb([a, b], 'act-prob-zero', { topRate: 0.25 });
    // en: .9 (4), then .5 at 1 and 2 tie → 1. fr: .8 (0), then .7 at 2 and 3 tie → 2.
    expect(mask.languages).toEqual({ en: [[1, 4]], fr: [[0, 2]] });
    expect(mask.method).toBe('act-prob-zero');
  });

  it('act-prob-90p reads the counts above the profiler thresholds and checks their label', () => {
    const above = (lang: string, source: string, counts: number[]) => stats(lang, 100, [[0, 0, 0, 0, 0, 0, 0, 0]], { above: { source, counts: [counts] } });
    const x = above('en', 'p90', [10, 12, 30, 9, 9, 11, 0, 10]);
    const y = above('fr', 'p90', [10, 10, 10, 10, 10, 10, 25, 15]);
    const mask = identifyActProb([x, y], 'act-prob-90p', { topRate: 0.25 });
    expect(mask.languages).toEqual({ en: [[1, 2]], fr: [[6, 7]] });
    expect(refusal(() => identifyActProb([x, y], 'act-prob-75p')).message).toMatch(/thresholds "p90", this variant needs p75/);
    expect(refusal(() => identifyActProb([a, b], 'act-prob-95p')).message).toMatch(/en\.safetensors: no counts above per-neuron thresholds/);
  });

  it('histogram helpers: quantile, mass above, mean |x|', () => {
    const edges = Float64Array.of(0, 1, 2, 3, 4);
    const w = Float64Array.of(0.5, 0.5, 0.5, 0.5); // total 2
    // q = .9 → rank 1.8; cumulated .5 1 1.5 → in bin [3,4): 3 + (1.8 − 1.5)/.5 = 3.6
    expect(histogramQuantile(w, edges, 0.9)).toBeCloseTo(3.6, 12);
    // above 3.6 in counts [0,0,5,5]: 5·(4 − 3.6) = 2 of 10
    expect(histogramFractionAbove(Float64Array.of(0, 0, 5, 5), edges, 3.6)).toBeCloseTo(0.2, 12);
    // edges −1 0 1 2, counts 1 1 2: E|x| = (.5 + .5 + 2·1.5) / 4 = 1; a bin straddling 0, [−1, 1): E|x| = (1 + 1)/(2·2) = .5
    expect(histogramMeanAbs(Float64Array.of(1, 1, 2), Float64Array.of(-1, 0, 1, 2))).toBeCloseTo(1, 12);
    expect(histogramMeanAbs(Float64Array.of(3), Float64Array.of(-1, 1))).toBeCloseTo(0.5, 12);
  });

  it('act-prob-90p against the pooled-languages and per-layer percentiles (histograms)', () => {
    // edges 0..4, 10 tokens each. Neuron 0: en [5,5,0,0], fr [0,0,5,5]; neuron 1 the mirror image.
    // pooled (each language /10): [.5,.5,.5,.5] → p90 = 3.6 (above): en 0, fr .2 on neuron 0; en .2, fr 0 on neuron 1.
    // layer (en: [5,5,5,5] summed over both neurons) → also 3.6. topRate .5 → quota round(1) = 1.
    const hist = (counts: number[][]) => ({ edges: [0, 1, 2, 3, 4], counts: [counts] });
    const x = stats('en', 10, [[0, 0]], { histogram: hist([[5, 5, 0, 0], [0, 0, 5, 5]]) });
    const y = stats('fr', 10, [[0, 0]], { histogram: hist([[0, 0, 5, 5], [5, 5, 0, 0]]) });
    for (const percentileOf of ['pooled-histogram', 'layer-histogram'] as const) {
      const mask = identifyActProb([x, y], 'act-prob-90p', { topRate: 0.5, percentileOf });
      expect(mask.languages).toEqual({ en: [[1]], fr: [[0]] });
      expect(mask.parameters).toMatchObject({ percentileOf });
    }
    // mean |act| from the histograms: en neuron 0 = (5·.5 + 5·1.5)/10 = 1, neuron 1 = 3 → keeps 1; fr keeps 0.
    expect(identifyActProb([x, y], 'act-prob-mean-abs', { topRate: 0.5 }).languages).toEqual({ en: [[1]], fr: [[0]] });
    expect(refusal(() => identifyActProb([a, b], 'act-prob-mean-abs')).message).toMatch(/abs_sum/);
  });
});

describe('average precision (Kojima)', () => {
  it('matches sklearn on hand-worked rankings, ties included', () => {
    // .9+ .8− .7+ .6−: precision at the positives 1/1 and 2/3 → (1 + 2/3)/2 = 5/6
    expect(averagePrecision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])).toBeCloseTo(5 / 6, 12);
    // three tied at .5 (two positives, one negative), .1−: one threshold holds both positives with precision 2/3
    // → AP 2/3 (optimistic ordering would give 1, pessimistic (1/2 + 2/3)/2 = 7/12)
    expect(averagePrecision([0.5, 0.5, 0.5, 0.1], [1, 1, 0, 0])).toBeCloseTo(2 / 3, 12);
    // .9− .5+ .5− .1+: t=.5: (1/2)(1/3); t=.1: (1/2)(2/4) → 5/12
    expect(averagePrecision([0.9, 0.5, 0.5, 0.1], [0, 1, 0, 1])).toBeCloseTo(5 / 12, 12);
  });

  // 1 layer × 3 units; sentence means en: [.9 .1 .5], [.8 .2 .5]; fr: [.1 .9 .5], [.2 .8 .5]
  const x = stats('en', 10, [[0, 0, 0]], { seqMeans: [[[0.9, 0.1, 0.5]], [[0.8, 0.2, 0.5]]] });
  const y = stats('fr', 10, [[0, 0, 0]], { seqMeans: [[[0.1, 0.9, 0.5]], [[0.2, 0.8, 0.5]]] });

  it('scores every unit per language and keeps the top and bottom N/2', () => {
    // en: unit 0 ranks both en sentences first → 1; unit 1: .9− .8− .2+ .1+ → (1/2)(1/3) + (1/2)(2/4) = 5/12;
    // unit 2: all tied at .5 → (2/2)(2/4) = 1/2. fr is the mirror image.
    const { ap } = averagePrecisionScores([x, y]);
    expect([...ap[0]!].map((v) => +v.toFixed(12))).toEqual([1, +(5 / 12).toFixed(12), 0.5]);
    expect([...ap[1]!].map((v) => +v.toFixed(12))).toEqual([+(5 / 12).toFixed(12), 1, 0.5]);
    // N = 2: top 1 and bottom 1
    expect(identifyAveragePrecision([x, y], { n: 2 }).languages).toEqual({ en: [[0, 1]], fr: [[0, 1]] });
    expect(identifyAveragePrecision([x, y], { n: 2, part: 'top' }).languages).toEqual({ en: [[0]], fr: [[1]] });
    expect(identifyAveragePrecision([x, y], { n: 2, part: 'bottom' }).languages).toEqual({ en: [[1]], fr: [[0]] });
  });

  it('the per-unit fast path (one radix sort for all languages) agrees with the plain AP, ties and ±0 included', () => {
    // 3 languages × 7 sentences, 1 layer × 40 units, values on a coarse grid so ties are frequent
    let seed = 1;
    const rand = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
    const grid = () => [-0.5, -0, 0, 0.25, 0.5, 1, 2][Math.floor(rand() * 7)]!;
    const langs = ['en', 'fr', 'zh'].map((l) => stats(l, 10, [new Array(40).fill(0)], { seqMeans: Array.from({ length: 7 }, () => [Array.from({ length: 40 }, grid)]) }));
    const { ap } = averagePrecisionScores(langs);
    for (let unit = 0; unit < 40; unit++) {
      const scores = langs.flatMap((l) => Array.from({ length: 7 }, (_, s) => l.stats.sites.get('act')!.seqMeans![s * 40 + unit]!));
      langs.forEach((_, k) => {
        const labels = scores.map((_, i) => Math.floor(i / 7) === k);
        expect(ap[k]![unit]).toBeCloseTo(averagePrecision(scores, labels), 12);
      });
    }
  });

  it('ranks the units of several sites together (Kojima: every linear layer\'s outputs), one mask per site', () => {
    // site 'act' as above (en APs 1, 5/12, 1/2); site 'q' (2 units): en sentences [.3 .7], [.4 .6], fr [.6 .2], [.7 .1]:
    // unit 0: .7− .6− .4+ .3+ → 5/12 (as act's unit 1), ranked after it (act comes first); unit 1: en first → 1.
    const withQ = (l: LanguageStats, q: number[][]): LanguageStats => {
      const st: SiteStats = { site: 'q', width: 2, overZero: new Float64Array(2), sum: new Float64Array(2), sumSq: new Float64Array(2), seqMeans: Float32Array.from(q.flat()) };
      return { ...l, stats: { ...l.stats, sites: new Map([...l.stats.sites, ['q', st]]) } };
    };
    const xq = withQ(x, [[0.3, 0.7], [0.4, 0.6]]), yq = withQ(y, [[0.6, 0.2], [0.7, 0.1]]);
    // N = 4: en's two highest of [1, 5/12, 1/2 | 5/12, 1] are act 0 and q 1, its two lowest act 1 and q 0
    const joint = identifyAveragePrecisionJoint([xq, yq], ['act', 'q'], { n: 4 });
    expect([...joint.keys()]).toEqual(['act', 'q']);
    expect(joint.get('act')!.languages['en']).toEqual([[0, 1]]);
    expect(joint.get('q')!.languages['en']).toEqual([[0, 1]]);
    expect(joint.get('act')!.site).toBe('act');
    expect(joint.get('q')!.parameters).toEqual({ n: 4, part: 'both', sites: ['act', 'q'] });
    // N = 2, top only: the one highest AP among all five units is act 0 (1, first of the tie with q 1)
    const top = identifyAveragePrecisionJoint([xq, yq], ['act', 'q'], { n: 2, part: 'top' });
    expect([top.get('act')!.languages['en'], top.get('q')!.languages['en']]).toEqual([[[0]], [[]]]);
    // fr's APs [5/12, 1, 1/2 | 1, 5/12]: act 1 and q 0 tie at 1, act (the first site) wins
    expect(top.get('act')!.languages['fr']).toEqual([[1]]);
    expect(top.get('q')!.derived!['unitsOfSite']).toEqual({ en: 0, fr: 0 });
    expect(identifyAveragePrecisionJoint([xq, yq], ['q', 'act'], { n: 2, part: 'top' }).get('q')!.languages['fr']).toEqual([[0]]); // q first: q 0 wins
    // one site: the single-site selection
    expect(identifyAveragePrecisionJoint([x, y], ['act'], { n: 2 }).get('act')).toEqual(identifyAveragePrecision([x, y], { n: 2 }));
    expect(refusal(() => identifyAveragePrecisionJoint([xq, yq], ['act', 'act'])).message).toMatch(/distinct sites/);
  });

  it('needs sequence means and at least two languages', () => {
    expect(refusal(() => identifyAveragePrecision([x])).message).toMatch(/at least two languages/);
    expect(refusal(() => identifyAveragePrecision([x, stats('de', 10, [[0, 0, 0]])])).message).toMatch(/de\.safetensors: average precision needs per-sequence means/);
  });
});

describe('raw-activated (Rahmanisa)', () => {
  it('keeps neurons whose sentence mean is > 0 in every sentence', () => {
    // en: unit 0 > 0 twice ✓; unit 1 −.2 in sentence 2 ✗; unit 2 exactly 0 (not > 0) ✗. fr: units 1 and 2 ✓.
    const x = stats('en', 10, [[0, 0, 0]], { seqMeans: [[[0.9, 0.1, 0.5]], [[0.8, -0.2, 0]]] });
    const y = stats('fr', 10, [[0, 0, 0]], { seqMeans: [[[-0.1, 0.3, 0.5]], [[0.2, 0.1, 0.5]]] });
    const mask = identifyRawActivated([x, y]);
    expect(mask.languages).toEqual({ en: [[0]], fr: [[1, 2]] });
    expect(mask.derived).toEqual({ sentences: { en: 2, fr: 2 } });
  });
});

describe('identify (command): an empty selection is said', () => {
  it('warns, naming the languages and why, when LAPE selects nothing (stories260k: most probabilities are exactly 0 or 1)', async () => {
    const { runCli } = await import('./helpers/cli.js');
    const { fixturePath, makeTempDir, removeDir } = await import('./helpers/fixtures.js');
    const path = (await import('node:path')).default;
    const tmp = await makeTempDir('identify-empty');
    try {
      const stats = path.join(tmp, 'stats');
      const p = await runCli('profile', fixturePath('stories260k'), '--corpus', 'udhr:train', '--langs', 'en,de,ru', '--tokens', '3000', '--max-len', '128', '--seq-means', '--threads', '1', '--out', stats);
      expect(p.code, p.stderr).toBe(0);
      const r = await runCli('identify', stats, '--top-rate', '0.1', '--out', path.join(tmp, 'm.json'));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/lape: de 0, en 0, ru 0 neurons/);
      expect(r.stderr).toMatch(/^warning: lape selected no neuron for de, en, ru: no neuron's activation probability is above the --filter-rate quantile \(1\); .*lower --filter-rate\n$/);
      const ok = await runCli('identify', stats, '--top-rate', '0.1', '--filter-rate', '0.5', '--out', path.join(tmp, 'm2.json'));
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toBe('');
      // AP's default --n 2000 on a model of 5 × 172 neurons: every neuron, said
      const ap = await runCli('identify', stats, '--method', 'ap', '--out', path.join(tmp, 'ap.json'));
      expect(ap.code, ap.stderr).toBe(0);
      expect(ap.stderr).toMatch(/^warning: average-precision selected every one of the model's 860 neurons for de, en, ru: nothing language-specific is left \(--n 2000 is not below the model's size; give a smaller --n\)\n$/);
      const ap2 = await runCli('identify', stats, '--method', 'ap', '--n', '100', '--out', path.join(tmp, 'ap2.json'));
      expect(ap2.stderr).toBe('');
    } finally { await removeDir(tmp); }
  }, 60_000);
});
