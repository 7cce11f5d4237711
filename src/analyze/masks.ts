// Analyses of one neuron mask (docs/ANALYSES.md): where each language's neurons sit across the layers, and how
// much the languages' sets overlap (counts, Jaccard, overlap coefficient), in an order that puts similar
// languages next to each other (average-linkage clustering on 1 − Jaccard).
import type { NeuronMask } from '../identify/masks.js';
import { summarizeMask } from '../identify/mask-ops.js';

export interface LayersAnalysis {
  method: string;
  site: string;
  model: string;
  layers: number;
  width: number;
  languages: string[];
  /** [language][layer] neuron counts. */
  perLayer: number[][];
  total: number[];
  /** [language][layer]: the share of the language's neurons in that layer (rows sum to 1; 0 for an empty language). */
  shareOfLanguage: number[][];
  /** [language][layer]: the language's share of the layer's (language, neuron) pairs (columns sum to 1 where any). */
  shareOfLayer: number[][];
  /** [layer]: (language, neuron) pairs per layer, and the share of the layer's width they cover (distinct neurons). */
  layerTotal: number[];
  layerCoverage: number[];
}

export function analyzeLayers(mask: NeuronMask): LayersAnalysis {
  const languages = Object.keys(mask.languages);
  const perLayer = languages.map((l) => Array.from({ length: mask.layers }, (_, k) => mask.languages[l]![k]?.length ?? 0));
  const total = perLayer.map((r) => r.reduce((a, b) => a + b, 0));
  const layerTotal = Array.from({ length: mask.layers }, (_, k) => perLayer.reduce((s, r) => s + r[k]!, 0));
  const layerCoverage = Array.from({ length: mask.layers }, (_, k) => {
    const distinct = new Set(languages.flatMap((l) => mask.languages[l]![k] ?? []));
    return mask.width > 0 ? distinct.size / mask.width : 0;
  });
  return {
    method: mask.method, site: mask.site, model: mask.model.name, layers: mask.layers, width: mask.width, languages, perLayer, total,
    shareOfLanguage: perLayer.map((r, i) => r.map((n) => (total[i]! > 0 ? n / total[i]! : 0))),
    shareOfLayer: perLayer.map((r) => r.map((n, k) => (layerTotal[k]! > 0 ? n / layerTotal[k]! : 0))),
    layerTotal, layerCoverage,
  };
}

export interface OverlapAnalysis {
  method: string;
  site: string;
  model: string;
  /** Languages in clustered order (the matrices follow it). */
  languages: string[];
  /** The mask's own order of the languages. */
  maskOrder: string[];
  sizes: number[];
  /** [a][b] = |A ∩ B|. */
  counts: number[][];
  /** |A ∩ B| / |A ∪ B| (0 when both are empty). */
  jaccard: number[][];
  /** |A ∩ B| / min(|A|, |B|) (0 when either is empty). */
  overlapCoefficient: number[][];
  /** Merges of the clustering, in order: the two clusters' languages and their average 1 − Jaccard distance. */
  merges: { left: string[]; right: string[]; distance: number }[];
}

export function analyzeOverlap(mask: NeuronMask): OverlapAnalysis {
  const maskOrder = Object.keys(mask.languages);
  // summarizeMask counts every pair's shared units in one pass over the units (not a set intersection per pair:
  // seconds, not minutes, for 100 languages of an 8B mask); the diagonal holds each language's size.
  const { overlap } = summarizeMask(mask);
  const counts0 = maskOrder.map((a) => maskOrder.map((b) => overlap[a]![b]!));
  const sets = maskOrder.map((_, i) => ({ size: counts0[i]![i]! }));
  // Two languages without neurons share none: 0 (masks compare's 1 for two empty sets is agreement of two masks of
  // one language, another question).
  const jac0 = counts0.map((r, i) => r.map((c, j) => { const u = sets[i]!.size + sets[j]!.size - c; return u > 0 ? c / u : 0; }));
  const { order, merges } = averageLinkageOrder(jac0.map((r) => r.map((v) => 1 - v)), maskOrder);
  const pick = <T>(m: T[][]) => order.map((i) => order.map((j) => m[i]![j]!));
  const counts = pick(counts0);
  return {
    method: mask.method, site: mask.site, model: mask.model.name, languages: order.map((i) => maskOrder[i]!), maskOrder,
    sizes: order.map((i) => sets[i]!.size), counts, jaccard: pick(jac0),
    overlapCoefficient: pick(counts0.map((r, i) => r.map((c, j) => { const m = Math.min(sets[i]!.size, sets[j]!.size); return m > 0 ? c / m : 0; }))),
    merges,
  };
}

/**
 * Agglomerative clustering with average linkage on a distance matrix; returns the leaf order of the dendrogram
 * (each merge puts the left cluster, the one holding the earlier item, first) and the merges. Ties are broken by
 * the lowest indices, so the order is deterministic.
 */
export function averageLinkageOrder(dist: number[][], names: string[]): { order: number[]; merges: { left: string[]; right: string[]; distance: number }[] } {
  let clusters = dist.map((_, i) => [i]);
  const merges: { left: string[]; right: string[]; distance: number }[] = [];
  const d = (a: number[], b: number[]) => { let s = 0; for (const i of a) for (const j of b) s += dist[i]![j]!; return s / (a.length * b.length); };
  while (clusters.length > 1) {
    let best = [0, 1], bestD = Infinity;
    for (let a = 0; a < clusters.length; a++)
      for (let b = a + 1; b < clusters.length; b++) {
        const x = d(clusters[a]!, clusters[b]!);
        if (x < bestD - 1e-12) { bestD = x; best = [a, b]; }
      }
    const [a, b] = best as [number, number];
    const merged = [...clusters[a]!, ...clusters[b]!];
    merges.push({ left: clusters[a]!.map((i) => names[i]!), right: clusters[b]!.map((i) => names[i]!), distance: bestD });
    clusters = [...clusters.slice(0, a), merged, ...clusters.slice(a + 1, b), ...clusters.slice(b + 1)];
  }
  return { order: clusters[0] ?? [], merges };
}
