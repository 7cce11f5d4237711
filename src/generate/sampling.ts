// Next-token selection with Hugging Face `generate` semantics, applied in HF's order: repetition penalty,
// then temperature, top-k, top-p, then sampling (or argmax when greedy). Seeded, so runs repeat exactly.
import { LangneuronsError } from '../errors.js';

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (ties with the k-th kept, as HF's TopKLogitsWarper). 0 = off. */
  topK?: number;
  /** Nucleus: keep the most likely tokens whose cumulative probability reaches p (HF's TopPLogitsWarper). 1 = off. */
  topP?: number;
  /** > 1 penalises tokens already in the prompt or the output (HF: positive logits ÷ p, negative × p). */
  repetitionPenalty?: number;
  seed?: number;
}

/** xoshiro128** seeded through splitmix32: small, fast and the same on every platform. */
export class Rng {
  private s: Uint32Array;
  constructor(seed: number) {
    this.s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] = (s[2]! ^ s[0]!) >>> 0; s[3] = (s[3]! ^ s[1]!) >>> 0;
    s[1] = (s[1]! ^ s[2]!) >>> 0; s[0] = (s[0]! ^ s[3]!) >>> 0;
    s[2] = (s[2]! ^ t) >>> 0; s[3] = rotl(s[3]!, 11);
    return result;
  }
  /**
   * The random stream of sequence `index` of a generation seeded with `seed`: sequence 0 draws what `new Rng(seed)`
   * draws, every other its own stream, so that a sequence's samples do not depend on which others share its batch.
   */
  static forSequence(seed: number, index: number): Rng {
    if (index === 0) return new Rng(seed);
    // A 32-bit finaliser of (seed, index) as the seed: nearby indices get unrelated streams.
    let z = Math.imul((seed >>> 0) ^ Math.imul(index, 0x9e3779b9), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return new Rng((z ^ (z >>> 16)) >>> 0);
  }
  /** Uniform in [0, 1) with 53 random bits. */
  next(): number { return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992; }
}
function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }

export function validateSampling(o: SamplingOptions): void {
  const bad = (field: string, want: string, v: unknown) => { throw new LangneuronsError('E_OPTIONS', `${field} must be ${want}, got ${String(v)}`, { field }); };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad('temperature', 'a number >= 0', o.temperature);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('topK', 'an integer >= 0', o.topK);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('topP', 'a number in (0, 1]', o.topP);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad('repetitionPenalty', 'a number > 0', o.repetitionPenalty);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad('seed', 'an integer', o.seed);
}

/** HF RepetitionPenaltyLogitsProcessor, in place: each distinct previous token is penalised once. */
export function applyRepetitionPenalty(logits: Float32Array, previous: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(previous)) {
    const v = logits[id]!;
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/** First index of the maximum (torch.argmax's tie rule). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/**
 * Token ids by descending logit, ties by ascending id: the order a comparator sort on (logit desc, id asc) gives,
 * found by a stable LSD radix sort (three passes of 11 bits) over the logits' bit patterns mapped to unsigned keys
 * that order as the floats do (-0 as +0). O(V): a 128K vocabulary in a few milliseconds, where the comparator sort
 * took 50-70 ms per token and sequence.
 */
export function orderByLogit(logits: Float32Array): Int32Array {
  const n = logits.length;
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, n);
  let keys = new Uint32Array(n), ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const b = logits[i] === 0 ? 0x80000000 : (bits[i]! & 0x80000000 ? ~bits[i]! >>> 0 : (bits[i]! | 0x80000000) >>> 0);
    keys[i] = ~b >>> 0; // ascending keys = descending logits
    ids[i] = i;
  }
  let keys2 = new Uint32Array(n), ids2 = new Int32Array(n);
  const start = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    start.fill(0);
    for (let i = 0; i < n; i++) start[(keys[i]! >>> shift) & 2047]!++;
    for (let d = 0, sum = 0; d < 2048; d++) { const c = start[d]!; start[d] = sum; sum += c; }
    for (let i = 0; i < n; i++) {
      const at = start[(keys[i]! >>> shift) & 2047]!++;
      keys2[at] = keys[i]!;
      ids2[at] = ids[i]!;
    }
    [keys, keys2] = [keys2, keys];
    [ids, ids2] = [ids2, ids];
  }
  return ids;
}

/**
 * Filtered probabilities after temperature, top-k and top-p, as (token, probability) pairs sorted by
 * descending probability (ties by token id). Exposed for tests: this is where HF semantics live.
 */
export function filteredDistribution(logits: Float32Array, o: SamplingOptions): { ids: Int32Array; probs: Float64Array } {
  const temperature = o.temperature ?? 1;
  const n = logits.length;
  const order = orderByLogit(logits);
  let keep = n;
  const topK = o.topK ?? 0;
  if (topK > 0 && topK < n) {
    // HF removes tokens whose score is < the k-th largest: ties with the k-th survive.
    const kth = logits[order[topK - 1]!]!;
    keep = topK;
    while (keep < n && logits[order[keep]!]! >= kth) keep++;
  }
  const scaled = new Float64Array(keep);
  const maxv = logits[order[0]!]! / temperature;
  let sum = 0;
  for (let i = 0; i < keep; i++) { scaled[i] = Math.exp(logits[order[i]!]! / temperature - maxv); sum += scaled[i]!; }
  for (let i = 0; i < keep; i++) scaled[i]! /= sum;
  const topP = o.topP ?? 1;
  if (topP < 1) {
    // HF: sort ascending, drop tokens whose cumulative probability is <= 1 - top_p, always keep the most likely.
    let cumAsc = 0;
    let drop = 0;
    for (let i = keep - 1; i >= 1; i--) {
      cumAsc += scaled[i]!;
      if (cumAsc <= 1 - topP) drop++; else break;
    }
    keep -= drop;
  }
  const ids = order.slice(0, keep);
  const probs = new Float64Array(keep);
  let s2 = 0;
  for (let i = 0; i < keep; i++) s2 += scaled[i]!;
  for (let i = 0; i < keep; i++) probs[i] = scaled[i]! / s2;
  return { ids, probs };
}

/** Picks the next token from one row of logits (the row is modified by the repetition penalty). */
export function sampleNext(logits: Float32Array, previous: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  const penalty = o.repetitionPenalty ?? 1;
  if (penalty !== 1) applyRepetitionPenalty(logits, Array.from(previous), penalty);
  if (!o.temperature) return argmax(logits);
  const { ids, probs } = filteredDistribution(logits, o);
  let u = rng.next();
  for (let i = 0; i < ids.length; i++) {
    u -= probs[i]!;
    if (u < 0) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}
