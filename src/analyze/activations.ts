// Activations of chosen neurons across languages, from the statistics files of `profile` (docs/ANALYSES.md): per
// language and neuron the activation probability P(value > 0) and the mean value; the value distribution of the
// chosen neurons (from the histograms, when profiled with edges); the distribution of per-sequence means (when
// profiled with sequence means); and the polysemantic neurons: those active for several languages, "active" meaning
// an activation probability at or above the `activeQuantile` quantile of every profiled neuron's in that language
// (LAPE's filter, 0.95 by default).
import { LangneuronsError } from '../errors.js';
import { isMaskFile } from '../identify/masks.js';
import { readStats, statsFilesIn, type ActivationStats, type Site } from '../profile/stats.js';

/** The statistics files named: files as they are, folders for their *.safetensors. One file per language. */
export async function readStatsInputs(inputs: string[]): Promise<{ file: string; stats: ActivationStats }[]> {
  const files = await statsFilesIn(inputs);
  if (!files.length) throw new LangneuronsError('E_INPUT', `${inputs.join(', ')}: no statistics files (*.safetensors)`);
  const out: { file: string; stats: ActivationStats }[] = [];
  const seen = new Map<string, string>();
  for (const file of files) {
    // A mask given where statistics go (the command's other input) is said to be one, not diagnosed as a broken file.
    if (await isMaskFile(file))
      throw new LangneuronsError('E_INPUT', `${file}: a neuron mask, not statistics: give profile's statistics files (or their folder), and the mask with --neurons`, { file });
    const stats = await readStats(file);
    const lang = stats.meta.language, prev = seen.get(lang);
    if (prev) throw new LangneuronsError('E_INPUT', `${file}: a second statistics file of language '${lang}' (first: ${prev}); merge shards with \`stats merge\``, { file });
    seen.set(lang, file);
    if (out.length && stats.meta.model.fingerprint !== out[0]!.stats.meta.model.fingerprint)
      throw new LangneuronsError('E_INPUT', `${file}: statistics of another model (${stats.meta.model.name}) than ${out[0]!.file} (${out[0]!.stats.meta.model.name})`, { file });
    out.push({ file, stats });
  }
  return out;
}

export interface ChosenNeuron { layer: number; unit: number }

export interface ActivationsAnalysis {
  site: Site;
  model: string;
  /** What the neurons are, e.g. 'masks/lape.json:mt'. */
  neuronsSource: string;
  languages: string[];
  tokens: number[];
  neurons: ChosenNeuron[];
  /** [neuron][language] P(value > 0). */
  probability: number[][];
  /** [neuron][language] mean value. */
  mean: number[][];
  /** Per language: mean over the chosen neurons of P(value > 0), and the same over every profiled neuron. */
  chosenProbability: number[];
  allProbability: number[];
  activeQuantile: number;
  /** Per language: the probability at the quantile (a neuron at or above it is active for the language). */
  activeThreshold: number[];
  minLanguages: number;
  /** Chosen neurons active for at least minLanguages languages. */
  polysemantic: { layer: number; unit: number; languages: string[] }[];
  /** With histograms: the bin edges and, per language, the share of the chosen neurons' values in each bin. */
  histogram: { edges: number[]; share: number[][] } | null;
  /** With sequence means: per language, quantiles (10, 25, 50, 75, 90%) of the per-sequence mean over the chosen neurons. */
  sequenceMeans: { quantiles: number[]; values: number[][]; sequences: number[] } | null;
}

function quantile(sorted: ArrayLike<number>, q: number): number {
  if (!sorted.length) return NaN;
  const x = q * (sorted.length - 1), lo = Math.floor(x), hi = Math.ceil(x);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (x - lo);
}

export function analyzeActivations(inputs: { file: string; stats: ActivationStats }[], neurons: ChosenNeuron[], o: {
  site: Site; neuronsSource: string; activeQuantile?: number; minLanguages?: number;
}): ActivationsAnalysis {
  const activeQuantile = o.activeQuantile ?? 0.95, minLanguages = o.minLanguages ?? 2;
  const languages = inputs.map((x) => x.stats.meta.language);
  const first = inputs[0]!.stats;
  const slotsOf = (s: ActivationStats) => new Map(s.meta.layers.map((l, i) => [l, i]));
  const cols = inputs.map(({ file, stats }) => {
    const st = stats.sites.get(o.site);
    if (!st) throw new LangneuronsError('E_STATS', `${file}: no site '${o.site}' (has: ${[...stats.sites.keys()].join(', ')})`, { file });
    if (stats.meta.layers.join(',') !== first.meta.layers.join(',')) throw new LangneuronsError('E_STATS', `${file}: other layers profiled than ${inputs[0]!.file}`, { file });
    return { file, stats, st };
  });
  const W = cols[0]!.st.width, slots = slotsOf(first);
  const idx = neurons.map((n) => {
    const slot = slots.get(n.layer);
    if (slot === undefined) throw new LangneuronsError('E_INPUT', `neuron ${n.layer}:${n.unit}: layer ${n.layer} was not profiled (layers ${first.meta.layers.join(', ')})`);
    if (n.unit < 0 || n.unit >= W) throw new LangneuronsError('E_INPUT', `neuron ${n.layer}:${n.unit}: unit out of [0, ${W}) at site ${o.site}`);
    return slot * W + n.unit;
  });
  const probability = idx.map((i) => cols.map(({ stats, st }) => (stats.tokens ? st.overZero[i]! / stats.tokens : 0)));
  const mean = idx.map((i) => cols.map(({ stats, st }) => (stats.tokens ? st.sum[i]! / stats.tokens : 0)));
  const allProbability: number[] = [], activeThreshold: number[] = [];
  for (const { stats, st } of cols) {
    const p = Float64Array.from(st.overZero, (v) => (stats.tokens ? v / stats.tokens : 0));
    allProbability.push(p.reduce((a, b) => a + b, 0) / (p.length || 1));
    activeThreshold.push(quantile(p.slice().sort(), activeQuantile));
  }
  const chosenProbability = languages.map((_, k) => (idx.length ? probability.reduce((s, r) => s + r[k]!, 0) / idx.length : 0));
  const polysemantic = neurons.map((n, i) => ({ ...n, languages: languages.filter((_, k) => probability[i]![k]! >= activeThreshold[k]! && probability[i]![k]! > 0) }))
    .filter((n) => n.languages.length >= minLanguages);
  let histogram: ActivationsAnalysis['histogram'] = null;
  const h0 = cols[0]!.st.histogram;
  if (h0 && cols.every(({ st }) => st.histogram && st.histogram.edges.join(',') === h0.edges.join(','))) {
    const B = h0.edges.length - 1;
    histogram = { edges: [...h0.edges], share: cols.map(({ st }) => {
      const counts = new Array<number>(B).fill(0);
      for (const i of idx) for (let b = 0; b < B; b++) counts[b]! += st.histogram!.counts[i * B + b]!;
      const n = counts.reduce((a, b) => a + b, 0);
      return counts.map((c) => (n ? c / n : 0));
    }) };
  }
  let sequenceMeans: ActivationsAnalysis['sequenceMeans'] = null;
  if (idx.length && cols.every(({ st }) => st.seqMeans && st.seqMeans.length)) {
    const qs = [0.1, 0.25, 0.5, 0.75, 0.9], L = first.meta.layers.length;
    const per = cols.map(({ st }) => {
      const S = st.seqMeans!.length / (L * W), v = new Float64Array(S);
      for (let s = 0; s < S; s++) { let m = 0; for (const i of idx) m += st.seqMeans![s * L * W + i]!; v[s] = m / idx.length; }
      return v.sort();
    });
    sequenceMeans = { quantiles: qs, values: per.map((v) => qs.map((q) => quantile(v, q))), sequences: per.map((v) => v.length) };
  }
  return {
    site: o.site, model: first.meta.model.name, neuronsSource: o.neuronsSource, languages, tokens: cols.map(({ stats }) => stats.tokens), neurons,
    probability, mean, chosenProbability, allProbability, activeQuantile, activeThreshold, minLanguages, polysemantic, histogram, sequenceMeans,
  };
}
