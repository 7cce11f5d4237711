// Average precision (Kojima et al. 2024, code kojima-takeshi188/lang_neuron, built on Apple's selfcond): each unit's
// sentence-mean response is a classifier score for "this sentence is in the target language" (positives: the target
// language's sentences, negatives: every other language's). Score = sklearn.metrics.average_precision_score; keep the
// int(N/2) units with the highest AP and the int(N/2) with the lowest (N default 2000), over all layers of the site.
//
// sklearn's AP with ties: thresholds are the distinct scores; at threshold t every sentence with score ≥ t counts as
// predicted positive, so tied sentences enter together (no optimistic/pessimistic ordering inside a tie):
//   AP = Σ_t (#positives with score = t / P) · (#positives with score ≥ t / #sentences with score ≥ t).
// Ties between units' APs are broken by (layer, unit) order (pandas' sort_values leaves them unspecified).
import type { Site } from '../profile/stats.js';
import {
  checkInputs, identifyError, seqMeansBudgetOf, sequenceMeansOf, topIndices, unitsPerBlock, type IdentifyContext, type LanguageStats, type SequenceMeans,
  type SequenceMeansOptions,
} from './common.js';
import { maskFromFlat, type NeuronMask } from './masks.js';

export interface AveragePrecisionOptions extends SequenceMeansOptions {
  site?: Site;
  /** Units kept per language: int(N/2) top plus int(N/2) bottom (default 2000, at least 2). */
  n?: number;
  /** Which end(s) to keep (default 'both', Kojima's setting). */
  part?: 'both' | 'top' | 'bottom';
}

/** Index of the first element ≥ t in an ascending array. */
function lowerBound(sorted: Float64Array, t: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (sorted[mid]! < t) lo = mid + 1; else hi = mid; }
  return lo;
}

/** AP of positives `positives` (any order; sorted in place) among all scores `allAscending` (sorted ascending). */
export function averagePrecisionSorted(positives: Float64Array, allAscending: Float64Array): number {
  const P = positives.length;
  if (P === 0) return NaN;
  positives.sort().reverse();
  let ap = 0;
  for (let i = 0; i < P;) {
    const t = positives[i]!;
    let j = i;
    while (j < P && positives[j] === t) j++;
    const predicted = allAscending.length - lowerBound(allAscending, t);
    ap += ((j - i) / P) * (j / predicted);
    i = j;
  }
  return ap;
}

/** sklearn.metrics.average_precision_score(labels, scores) for one classifier (labels: truthy = positive). */
export function averagePrecision(scores: ArrayLike<number>, labels: ArrayLike<boolean | number>): number {
  const all = Float64Array.from(scores).sort();
  const pos: number[] = [];
  for (let i = 0; i < scores.length; i++) if (labels[i]) pos.push(scores[i]!);
  return averagePrecisionSorted(Float64Array.from(pos), all);
}

// Per unit, all sentences are sorted by score. V8's typed-array sort costs ~0.3 ms for 1,200 values (minutes over a
// model's units) and cannot carry the sentences' languages, so the float32 means become order-preserving uint32 keys
// (sign bit flipped for positives, all bits for negatives; −0 folded into +0 so they tie) sorted by a 4-pass radix
// sort that moves each key's language along.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export function sortableKey(x: number): number {
  f32[0] = x === 0 ? 0 : x;
  const bits = u32[0]!;
  return bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0;
}

const radixCounts = new Uint32Array(256);

/** One counting pass on bits [shift, shift+8): stable scatter of (keys, tags) into (outKeys, outTags). */
function radixPass(keys: Uint32Array, tags: Uint16Array, outKeys: Uint32Array, outTags: Uint16Array, shift: number): void {
  const counts = radixCounts;
  counts.fill(0);
  const n = keys.length;
  for (let i = 0; i < n; i++) counts[(keys[i]! >>> shift) & 255]!++;
  let sum = 0;
  for (let b = 0; b < 256; b++) { const c = counts[b]!; counts[b] = sum; sum += c; }
  for (let i = 0; i < n; i++) {
    const k = keys[i]!, pos = counts[(k >>> shift) & 255]!++;
    outKeys[pos] = k; outTags[pos] = tags[i]!;
  }
}

/** Sorts `keys` ascending, permuting `tags` alongside; `tmpKeys`/`tmpTags` are scratch of the same length. */
export function radixSortPairs(keys: Uint32Array, tags: Uint16Array, tmpKeys: Uint32Array, tmpTags: Uint16Array): void {
  radixPass(keys, tags, tmpKeys, tmpTags, 0);
  radixPass(tmpKeys, tmpTags, keys, tags, 8);
  radixPass(keys, tags, tmpKeys, tmpTags, 16);
  radixPass(tmpKeys, tmpTags, keys, tags, 24);
}

/**
 * AP of every unit for every language: one Float64Array [layers·width] per language, in input order. Statistics read
 * without their per-sequence means are read from their files a block of units at a time (options.seqMeansBudget).
 */
export function averagePrecisionScores(inputs: readonly LanguageStats[], site: Site = 'act', options: SequenceMeansOptions = {}): { languages: string[]; ap: Float64Array[]; sentences: number[] } {
  const budget = seqMeansBudgetOf(options);
  const ctx = checkInputs(inputs, site, false);
  if (ctx.languages.length < 2) throw identifyError('average precision needs at least two languages (the others are the negatives)');
  const { sources, close } = sequenceMeansOf(ctx, 'average precision');
  try {
    return { languages: ctx.languages, ap: scoresOf(ctx, sources, budget, options.onBlock), sentences: sources.map((x) => x.count) };
  } finally {
    close();
  }
}

function scoresOf(ctx: IdentifyContext, seq: SequenceMeans[], budget: number, onBlock: SequenceMeansOptions['onBlock']): Float64Array[] {
  const units = ctx.layers.length * ctx.width;
  const offsets: number[] = [];
  let S = 0;
  for (const { count } of seq) { offsets.push(S); S += count; }
  const ap = seq.map(() => new Float64Array(units));
  const K = seq.length;
  const positivesOf = seq.map((x) => x.count);
  // Every unit needs its value in every sequence of every language. The means are read a block of units at a time
  // (from files, as many units of every sequence as the budget holds), and sorted a smaller block at a time: the means
  // are [sequence][unit], so reading one unit across sequences would miss the cache on every value, and a block of
  // consecutive units is contiguous in each sequence.
  const READ = unitsPerBlock(budget, S, units);
  const BLOCK = Math.min(256, READ);
  const block = new Uint32Array(BLOCK * S);
  const keys = new Uint32Array(S), tags = new Uint16Array(S), tagsOfBlock = new Uint16Array(S);
  const tmpKeys = new Uint32Array(S), tmpTags = new Uint16Array(S);
  seq.forEach(({ count }, k) => tagsOfBlock.fill(k, offsets[k]!, offsets[k]! + count));
  const inGroup = new Float64Array(K), cumulated = new Float64Array(K), sums = new Float64Array(K);
  for (let at = 0; at < units; at += READ) {
    const end = Math.min(units, at + READ);
    const ranges = seq.map((x) => x.read(at, end - at));
    onBlock?.({ site: ctx.site, start: at, size: end - at, units, languages: ctx.languages });
    for (let start = at; start < end; start += BLOCK) {
      const size = Math.min(BLOCK, end - start);
      ranges.forEach(({ data, base, stride }, k) => {
        for (let s = 0, count = seq[k]!.count; s < count; s++) {
          const from = base + s * stride + (start - at), col = offsets[k]! + s;
          for (let u = 0; u < size; u++) block[u * S + col] = sortableKey(data[from + u]!);
        }
      });
      for (let u = 0; u < size; u++) {
        // One sort of all sentences (with their language) per unit serves every language: walking down the distinct
        // scores, a tie group adds (its positives / P)·(positives so far / sentences so far) to each language's AP.
        keys.set(block.subarray(u * S, (u + 1) * S));
        tags.set(tagsOfBlock);
        radixSortPairs(keys, tags, tmpKeys, tmpTags);
        cumulated.fill(0); sums.fill(0);
        for (let i = S - 1; i >= 0;) {
          const t = keys[i]!;
          let j = i;
          while (j >= 0 && keys[j] === t) { inGroup[tags[j]!]!++; j--; }
          const predicted = S - 1 - j;
          for (let k = 0; k < K; k++) {
            const g = inGroup[k]!;
            if (g === 0) continue;
            inGroup[k] = 0;
            cumulated[k]! += g;
            sums[k]! += (g / positivesOf[k]!) * (cumulated[k]! / predicted);
          }
          i = j;
        }
        for (let k = 0; k < K; k++) ap[k]![start + u] = sums[k]!;
      }
    }
  }
  return ap;
}

export function identifyAveragePrecision(inputs: readonly LanguageStats[], options: AveragePrecisionOptions = {}): NeuronMask {
  return identifyAveragePrecisionJoint(inputs, [options.site ?? 'act'], options).values().next().value!;
}

/**
 * Kojima et al. rank every output unit of every linear layer together (q, k, v, o, gate, up, down): per language the
 * int(N/2) highest and int(N/2) lowest APs among the units of all `sites` (ties by the order of `sites`, then layer
 * and unit). A mask holds one site, so the selection comes as one mask per site, each recording the joint ranking
 * (parameters.sites) and how many of each end it got. With one site it is identifyAveragePrecision's mask.
 */
export function identifyAveragePrecisionJoint(inputs: readonly LanguageStats[], sites: readonly Site[], options: Omit<AveragePrecisionOptions, 'site'> = {}): Map<Site, NeuronMask> {
  const n = options.n ?? 2000;
  const part = options.part ?? 'both';
  // int(n/2) units are kept at each end: n < 2 keeps none, an empty mask that looks like a result.
  if (!Number.isSafeInteger(n) || n < 2) throw identifyError(`option n must be an integer of at least 2 (int(n/2) units are kept at each end), got ${String(n)}`);
  if (!['both', 'top', 'bottom'].includes(part)) throw identifyError(`option part must be both, top or bottom, got ${String(part)}`);
  if (sites.length === 0 || new Set(sites).size !== sites.length) throw identifyError(`option sites must list distinct sites, got [${sites.join(', ')}]`);
  seqMeansBudgetOf(options);
  // Every site's inputs are checked before any site's means are ranked (hours at the papers' scale): a site missing
  // from a file, or its means, is refused before the work on the others, not after.
  const ctxs = sites.map((site) => {
    const ctx = checkInputs(inputs, site, false);
    if (ctx.languages.length >= 2) sequenceMeansOf(ctx, 'average precision').close(); // (fewer: refused below, in those words)
    return ctx;
  });
  const per = sites.map((site, s) => ({ site, ctx: ctxs[s]!, ...averagePrecisionScores(inputs, site, options) }));
  const { languages } = per[0]!.ctx;
  const offsets = [0];
  for (const p of per) offsets.push(offsets.at(-1)! + p.ap[0]!.length);
  const half = Math.floor(n / 2);
  const chosen = per.map(() => new Map<string, number[]>());
  const ranges: Record<string, { topMin: number | null; bottomMax: number | null }> = {};
  languages.forEach((lang, k) => {
    const all = new Float64Array(offsets.at(-1)!);
    per.forEach((p, s) => all.set(p.ap[k]!, offsets[s]!));
    const top = part === 'bottom' ? [] : topIndices(all, half, true);
    const bottom = part === 'top' ? [] : topIndices(all, half, false);
    ranges[lang] = { topMin: top.length ? all[top[top.length - 1]!]! : null, bottomMax: bottom.length ? all[bottom[bottom.length - 1]!]! : null };
    chosen.forEach((m) => m.set(lang, []));
    for (const i of new Set([...top, ...bottom])) {
      let s = 0;
      while (i >= offsets[s + 1]!) s++;
      chosen[s]!.get(lang)!.push(i - offsets[s]!);
    }
  });
  const sentences = Object.fromEntries(languages.map((l, k) => [l, per[0]!.sentences[k]]));
  return new Map(per.map((p, s) => [p.site, maskFromFlat(p.ctx, 'average-precision', sites.length > 1 ? { n, part, sites: [...sites] } : { n, part }, chosen[s]!,
    { sentences, apRanges: ranges, ...(sites.length > 1 ? { unitsOfSite: Object.fromEntries(languages.map((l) => [l, chosen[s]!.get(l)!.length])) } : {}) })]));
}
