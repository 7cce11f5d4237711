// A forward whose logits hold NaN or ±Inf gives empty text or NaN metrics with exit code 0. One pass over the last
// row of each sequence (and the target log-probabilities) catches it; the error names the likely cause.
import { LangneuronsError } from '../errors.js';

/** Index of the first non-finite value of a[from, to), or -1. */
function firstNonFinite(a: Float32Array, from: number, to: number): number {
  for (let i = from; i < to; i++) if (!Number.isFinite(a[i]!)) return i;
  return -1;
}

function allZero(a: Float32Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (a[i] !== 0) return false;
  return true;
}

/**
 * Throws E_NONFINITE when a sequence's last logits row (or a target log-probability) is NaN or ±Inf.
 * `rowOf(i)`: the logits row of sequence i's last token, or -1 when no logits were returned.
 */
export function checkFiniteOutput(o: {
  logits: Float32Array; vocab: number; sequences: number; rowOf: (i: number) => number; targetLogprobs: Float32Array | null;
  intervened: boolean; model: string; unit?: string;
}): void {
  for (let i = 0; i < o.sequences; i++) {
    const r = o.rowOf(i);
    if (r < 0) break;
    const bad = firstNonFinite(o.logits, r * o.vocab, (r + 1) * o.vocab);
    checkRow(o, i, bad < 0 ? -1 : bad - r * o.vocab, o.logits[bad] ?? 0, bad < 0 && allZero(o.logits, r * o.vocab, (r + 1) * o.vocab), o.unit ?? 'logit');
  }
  checkTargetLogprobs(o);
}

/** Sequence i's last row: `bad` the index of its first non-finite logit (-1: none), `value` that logit, `zero`
 *  whether every logit is exactly 0. */
function checkRow(o: { vocab: number; intervened: boolean; model: string }, i: number, bad: number, value: number, zero: boolean, unit = 'logit'): void {
  if (bad >= 0) throw nonFinite(o, `${unit} ${bad} of sequence ${i} is ${value}`);
  // Every logit exactly 0: the final norm divided by an infinite RMS (its input overflowed float32), so the
  // hidden state became 0 — finite, but as meaningless as NaN (uniform predictions, empty generations).
  if (o.vocab > 1 && zero) throw nonFinite(o, `every ${unit} of sequence ${i} is exactly 0 (the final norm's input overflowed)`);
}

function checkTargetLogprobs(o: { targetLogprobs: Float32Array | null; intervened: boolean; model: string }): void {
  if (!o.targetLogprobs) return;
  for (let i = 0; i < o.targetLogprobs.length; i++)
    if (Number.isNaN(o.targetLogprobs[i]!) || o.targetLogprobs[i] === Infinity)
      // NaN also marks a row whose logits are all exactly 0 (math::target_log_softmax): the final norm's input overflowed
      throw nonFinite(o, `the log-probability of target ${i} is ${o.targetLogprobs[i]}: a logit of its row is NaN, or every logit is exactly 0 (the final norm's input overflowed)`);
}

/** The same checks for logits 'greedy', from what the runtime found in each row (src/native/addon.ts NativeNextTokens). */
export function checkFiniteNext(o: {
  next: { firstNonFinite: Int32Array; nonFiniteValues: Float32Array; allZero: Uint8Array };
  vocab: number; targetLogprobs: Float32Array | null; intervened: boolean; model: string;
}): void {
  for (let i = 0; i < o.next.firstNonFinite.length; i++)
    checkRow(o, i, o.next.firstNonFinite[i]!, o.next.nonFiniteValues[i]!, o.next.allZero[i] === 1);
  checkTargetLogprobs(o);
}

function nonFinite(o: { intervened: boolean; model: string }, what: string): LangneuronsError {
  const cause = o.intervened
    ? 'the intervention\'s values are too large (activations overflow float32; e.g. scale:1e30), or the weights hold NaN/Inf'
    : `the weights of ${o.model} hold NaN or Inf values, or are too large for float32 activations`;
  return new LangneuronsError('E_NONFINITE', `forward produced a non-finite result (${what}): likely cause: ${cause}`);
}
