// Summaries and set operations on masks: counts per language and layer, overlaps, comparisons between two masks,
// the union over languages, and random control masks of the same size (seeded, for intervention baselines).
import { LangneuronsError } from '../errors.js';
import type { NeuronMask } from './masks.js';

export interface MaskSummary {
  method: string;
  languages: string[];
  /** Neurons per language (over all layers). */
  total: Record<string, number>;
  /** Neurons per language per layer. */
  perLayer: Record<string, number[]>;
  /** overlap[a][b] = |A ∩ B| (overlap[a][a] = |A|). */
  overlap: Record<string, Record<string, number>>;
  /** sharedBy[k] = neurons in exactly k languages (index 0 unused, always 0). */
  sharedBy: number[];
  /** Distinct neurons in at least one language. */
  union: number;
}

/** A language's units as flat indices layer·width + unit. */
const unitSet = (perLayer: number[][], width: number) => new Set(perLayer.flatMap((units, l) => units.map((u) => l * width + u)));

export function summarizeMask(mask: NeuronMask): MaskSummary {
  const languages = Object.keys(mask.languages), K = languages.length;
  // The overlaps are counted unit by unit, over the languages that hold each unit: intersecting every pair of
  // languages' sets costs K² set lookups per unit, 18 s for 100 languages of an 8B mask at 5% of its neurons.
  // holders[u] lists the languages (indices) holding unit u = layer·width + unit, built in two passes as offsets.
  const sets = languages.map((l) => unitSet(mask.languages[l]!, mask.width));
  const first = new Uint32Array(mask.layers * mask.width + 1);
  for (const set of sets) for (const u of set) first[u + 1]!++;
  for (let u = 0; u < mask.layers * mask.width; u++) first[u + 1]! += first[u]!;
  const holders = new Uint32Array(first[first.length - 1]!), filled = first.slice(0, -1);
  sets.forEach((set, k) => { for (const u of set) holders[filled[u]!++] = k; });
  const pairs = new Float64Array(K * K), sharedBy = new Array<number>(K + 1).fill(0);
  let union = 0;
  for (let u = 0; u + 1 < first.length; u++) {
    const from = first[u]!, to = first[u + 1]!;
    if (from === to) continue;
    union++;
    sharedBy[to - from]!++;
    for (let i = from; i < to; i++) for (let j = from; j < to; j++) pairs[holders[i]! * K + holders[j]!]!++;
  }
  const total: Record<string, number> = {}, perLayer: Record<string, number[]> = {}, overlap: Record<string, Record<string, number>> = {};
  languages.forEach((a, i) => {
    total[a] = sets[i]!.size;
    perLayer[a] = mask.languages[a]!.map((u) => u.length);
    overlap[a] = Object.fromEntries(languages.map((b, j) => [b, pairs[i * K + j]!]));
  });
  return { method: mask.method, languages, total, perLayer, overlap, sharedBy, union };
}

export interface LanguageComparison { a: number; b: number; both: number; jaccard: number }

export interface MaskComparison {
  /** The two masks were made on the same model (fingerprint). Shapes must match either way. */
  sameModel: boolean;
  /**
   * Per language present in both masks; |A ∪ B| = 0 gives Jaccard 1: two masks of one language that both select
   * nothing agree. (analyzeOverlap's Jaccard between two languages of one mask is 0 there: they share nothing.)
   */
  languages: Record<string, LanguageComparison>;
  onlyInA: string[];
  onlyInB: string[];
}

export function compareMasks(a: NeuronMask, b: NeuronMask): MaskComparison {
  if (a.site !== b.site)
    throw new LangneuronsError('E_MASK', `cannot compare masks of different sites: A selects neurons at site ${a.site}, B at site ${b.site}`);
  if (a.layers !== b.layers || a.width !== b.width)
    throw new LangneuronsError('E_MASK', `cannot compare masks of different shapes: A ${a.layers}×${a.width} vs B ${b.layers}×${b.width}`);
  const languages: Record<string, LanguageComparison> = {};
  for (const lang of Object.keys(a.languages)) {
    if (!Object.prototype.hasOwnProperty.call(b.languages, lang)) continue;
    const A = unitSet(a.languages[lang]!, a.width), B = unitSet(b.languages[lang]!, b.width);
    let both = 0;
    for (const x of A) if (B.has(x)) both++;
    const union = A.size + B.size - both;
    languages[lang] = { a: A.size, b: B.size, both, jaccard: union === 0 ? 1 : both / union };
  }
  return {
    sameModel: a.model.fingerprint === b.model.fingerprint, languages,
    onlyInA: Object.keys(a.languages).filter((l) => !Object.prototype.hasOwnProperty.call(b.languages, l)),
    onlyInB: Object.keys(b.languages).filter((l) => !Object.prototype.hasOwnProperty.call(a.languages, l)),
  };
}

/** Per-layer union of the given languages (default all) as a mask with one language named `name`. */
export function unionMask(mask: NeuronMask, languages: string[] = Object.keys(mask.languages), name = 'union'): NeuronMask {
  const perLayer: number[][] = Array.from({ length: mask.layers }, () => []);
  for (const lang of languages) {
    const units = mask.languages[lang];
    if (!units || !Object.prototype.hasOwnProperty.call(mask.languages, lang))
      throw new LangneuronsError('E_MASK', `unknown language "${lang}" (the mask has: ${Object.keys(mask.languages).join(', ')})`);
    units.forEach((u, l) => perLayer[l]!.push(...u));
  }
  const merged = perLayer.map((u) => [...new Set(u)].sort((x, y) => x - y));
  return { ...mask, method: 'union', parameters: { of: mask.method, languages }, languages: { [name]: merged } };
}

/** mulberry32: small, fast, good enough to draw control sets reproducibly. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** k distinct integers from [0, n), ascending (partial Fisher–Yates over a sparse map). */
function sample(n: number, k: number, rand: () => number): number[] {
  const swapped = new Map<number, number>();
  const out: number[] = [];
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rand() * (n - i));
    const vj = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(i) ?? i);
    out.push(vj);
  }
  return out.sort((a, b) => a - b);
}

export interface RandomMaskOptions {
  seed: number;
  /** Same number of neurons in every layer as the original (default); otherwise the same total anywhere. */
  matchLayers?: boolean;
}

/** For each language, a random set of neurons of the same size (per layer by default), reproducible from the seed. */
export function randomMaskLike(mask: NeuronMask, options: RandomMaskOptions): NeuronMask {
  const matchLayers = options.matchLayers ?? true;
  const rand = seededRandom(options.seed);
  const languages: Record<string, number[][]> = {};
  for (const [lang, perLayer] of Object.entries(mask.languages)) {
    let drawn: number[][];
    if (matchLayers) drawn = perLayer.map((u) => sample(mask.width, u.length, rand));
    else {
      drawn = Array.from({ length: mask.layers }, () => []);
      const total = perLayer.reduce((n, u) => n + u.length, 0);
      for (const flat of sample(mask.layers * mask.width, total, rand)) drawn[Math.floor(flat / mask.width)]!.push(flat % mask.width);
    }
    Object.defineProperty(languages, lang, { value: drawn, enumerable: true, writable: true, configurable: true });
  }
  return { ...mask, method: 'random', parameters: { like: mask.method, likeParameters: mask.parameters, seed: options.seed, matchLayers }, languages };
}
