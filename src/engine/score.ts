// Scoring: mean negative log-likelihood of a text (perplexity), and log-likelihoods of continuations.
// Uses the engine's target log-probabilities, so no [tokens × vocab] logits ever cross into JavaScript.
import { LangneuronsError } from '../errors.js';
import type { Intervention } from '../intervene/index.js';
import type { LanguageModel } from './model.js';
import { checkOptions, type OptionKeys } from './options.js';

export interface ScoreOptions {
  /** Tokens per window (default and maximum: the model's context). */
  window?: number;
  /** Step between window starts (default: the window, i.e. no overlap). With stride < window, each window
   *  re-reads `window - stride` tokens of context and scores only the new ones (Hugging Face's perplexity recipe).
   *  Without overlap, the first token of each window after the first has no context and is not scored. */
  stride?: number;
  /** Token budget per forward call when packing several windows (default 4096). */
  batchTokens?: number;
  onProgress?: (scoredTokens: number, totalTokens: number) => void;
  /** Interventions on FFN neurons or projection outputs (src/intervene); every scored token is a `prompt` position. */
  intervene?: Intervention;
}

const SCORE_OPTIONS: OptionKeys<ScoreOptions> = { window: true, stride: true, batchTokens: true, onProgress: true, intervene: true };

export interface ScoreResult {
  /** Sum of −log p over the predicted tokens. */
  totalNll: number;
  /** Number of predicted tokens (all but the first). */
  tokens: number;
  meanNll: number;
  perplexity: number;
}

interface Window { begin: number; end: number; firstScored: number }

/** Windows over ids: each predicts tokens [firstScored, end) from the context starting at begin. A token is
 *  scored once, in the first window that holds it with at least one token of context before it. */
export function slidingWindows(n: number, window: number, stride: number): Window[] {
  const out: Window[] = [];
  let prevEnd = 1; // token 0 has no prediction
  for (let begin = 0; prevEnd < n; begin += stride) {
    const end = Math.min(begin + window, n);
    const firstScored = Math.max(prevEnd, begin + 1);
    if (end > firstScored) out.push({ begin, end, firstScored });
    prevEnd = Math.max(prevEnd, end);
  }
  return out;
}

/** A token budget per packed forward: an integer >= 1 (NaN made every batch empty, a negative one was taken). */
function checkBatchTokens(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new LangneuronsError('E_OPTIONS', `batchTokens must be an integer >= 1, got ${n}`, { field: 'batchTokens' });
  return n;
}

export async function scoreTokens(model: LanguageModel, ids: number[], opts: ScoreOptions = {}): Promise<ScoreResult> {
  checkOptions('scoreTokens', opts, SCORE_OPTIONS);
  const window = opts.window ?? model.contextLength;
  const stride = opts.stride ?? window;
  if (!Number.isInteger(window) || window < 2 || window > model.contextLength)
    throw new LangneuronsError('E_OPTIONS', `window must be an integer in [2, ${model.contextLength}] (the model's context), got ${window}`, { field: 'window' });
  if (!Number.isInteger(stride) || stride < 1 || stride > window)
    throw new LangneuronsError('E_OPTIONS', `stride must be an integer in [1, window=${window}], got ${stride}`, { field: 'stride' });
  if (ids.length < 2) throw new LangneuronsError('E_INPUT', `scoring needs at least 2 tokens, got ${ids.length}`);
  const budget = Math.max(checkBatchTokens(opts.batchTokens ?? 4096), window);
  const windows = slidingWindows(ids.length, window, stride);
  let totalNll = 0, count = 0;
  for (let w = 0; w < windows.length;) {
    const seqs: number[][] = [], targets: number[][] = [];
    let used = 0;
    for (; w < windows.length && used + (windows[w]!.end - windows[w]!.begin) <= budget; w++) {
      const { begin, end, firstScored } = windows[w]!;
      seqs.push(ids.slice(begin, end));
      // position p of the window predicts ids[begin + p + 1]
      targets.push(Array.from({ length: end - begin }, (_, p) => {
        const t = begin + p + 1;
        return t >= firstScored && t < end ? ids[t]! : -1;
      }));
      used += end - begin;
    }
    const res = await model.forward(seqs, { logits: 'none', targets, ...(opts.intervene ? { intervene: opts.intervene } : {}) });
    const flat = targets.flat();
    for (let i = 0; i < flat.length; i++) if (flat[i]! >= 0) { totalNll -= res.targetLogprobs![i]!; count++; }
    opts.onProgress?.(count, ids.length - 1);
  }
  return { totalNll, tokens: count, meanNll: totalNll / count, perplexity: Math.exp(totalNll / count) };
}

/** Mean NLL per token of a text, tokenised with the model's tokenizer (BOS as the tokenizer prescribes). */
export function scoreText(model: LanguageModel, text: string, opts: ScoreOptions = {}): Promise<ScoreResult> {
  checkOptions('scoreText', opts, SCORE_OPTIONS);
  const tok = model.requireTokenizer();
  return scoreTokens(model, tok.encode(text), opts);
}

export interface ContinuationScore {
  /** Sum of log p(continuation token | everything before). */
  logprob: number;
  tokens: number;
}

export interface LogLikelihoodOptions {
  /** Interventions on FFN neurons or projection outputs (src/intervene): context tokens are `prompt` positions,
   *  the continuation's tokens (as inputs) `generated` ones. */
  intervene?: Intervention;
}
const LOG_LIKELIHOOD_OPTIONS: OptionKeys<LogLikelihoodOptions> = { intervene: true };

/** Log-likelihoods of token continuations after token contexts. Pairs that share a context (the choices of a
 *  multiple-choice item) read it once: it is prefilled into one KV-cache slot, copied to the others, and every
 *  continuation is scored in one packed forward. Other pairs are packed together, `batchTokens` at a time. */
export async function logLikelihoodTokens(model: LanguageModel, pairs: { context: number[]; continuation: number[] }[], batchTokens = 4096, opts: LogLikelihoodOptions = {}): Promise<ContinuationScore[]> {
  checkBatchTokens(batchTokens);
  checkOptions('logLikelihoodTokens', opts, LOG_LIKELIHOOD_OPTIONS);
  pairs.forEach(({ context, continuation }, i) => {
    if (context.length === 0) throw new LangneuronsError('E_INPUT', `pair ${i}: the context is empty (it needs at least a BOS token)`);
    if (continuation.length === 0) throw new LangneuronsError('E_INPUT', `pair ${i}: the continuation is empty`);
    // The last continuation token is only a target, never an input.
    const n = context.length + continuation.length - 1;
    if (n > model.contextLength) throw new LangneuronsError('E_INPUT', `pair ${i}: ${n + 1} tokens exceed the model's context of ${model.contextLength}`);
  });
  const out: ContinuationScore[] = new Array(pairs.length);
  const groups = new Map<string, number[]>();
  pairs.forEach((p, i) => {
    const key = p.context.join(',');
    const group = groups.get(key);
    if (group) group.push(i); // (copying the group for each pair made 40000 pairs of one context take 49 s)
    else groups.set(key, [i]);
  });
  const single: number[] = [];
  for (const idx of groups.values()) {
    if (idx.length > 1 && pairs[idx[0]!]!.context.length > 1) await scoreSharedContext(model, idx.map((i) => pairs[i]!), opts, idx, out);
    else for (const i of idx) single.push(i); // not push(...idx): a spread of over ~100k arguments overflows the stack
  }
  await scorePacked(model, single.sort((a, b) => a - b), pairs, batchTokens, opts, out);
  return out;
}

/** Per sequence, sum and count of the target log-probs of a forward's packed targets. */
function sumTargets(targets: number[][], logprobs: Float32Array): ContinuationScore[] {
  let off = 0;
  return targets.map((t) => {
    let lp = 0, n = 0;
    t.forEach((id, p) => { if (id >= 0) { lp += logprobs[off + p]!; n++; } });
    off += t.length;
    return { logprob: lp, tokens: n };
  });
}

async function scorePacked(model: LanguageModel, which: number[], pairs: { context: number[]; continuation: number[] }[], batchTokens: number, opts: LogLikelihoodOptions, out: ContinuationScore[]): Promise<void> {
  for (let k = 0; k < which.length;) {
    const seqs: number[][] = [], targets: number[][] = [], batch: number[] = [];
    let used = 0;
    for (; k < which.length; k++) {
      const { context, continuation } = pairs[which[k]!]!;
      const seq = [...context, ...continuation.slice(0, -1)];
      if (seqs.length && used + seq.length > batchTokens) break;
      seqs.push(seq);
      targets.push(seq.map((_, p) => (p >= context.length - 1 ? continuation[p - context.length + 1]! : -1)));
      batch.push(which[k]!);
      used += seq.length;
    }
    const iv = opts.intervene ? { intervene: opts.intervene, generatedFrom: batch.map((i) => pairs[i]!.context.length) } : {};
    const res = await model.forward(seqs, { logits: 'none', targets, ...iv });
    sumTargets(targets, res.targetLogprobs!).forEach((r, j) => { out[batch[j]!] = r; });
  }
}

/** Continuations of one shared context (length >= 2): context[0..n-2] prefilled once, then per continuation the
 *  last context token and the continuation's inputs, in cache slots that start from a copy of the prefix. */
async function scoreSharedContext(model: LanguageModel, group: { context: number[]; continuation: number[] }[], opts: LogLikelihoodOptions, at: number[], out: ContinuationScore[]): Promise<void> {
  const context = group[0]!.context;
  const prefix = context.slice(0, -1);
  // prefix + last context token + continuation inputs (its last token is only a target)
  const cache = model.createCache(group.length, context.length - 1 + Math.max(...group.map((p) => p.continuation.length)));
  try {
    // Context positions are `prompt` for interventions, the continuation's inputs `generated` (as in the packed path).
    await model.forward([prefix], { logits: 'none', cache, cacheSlots: [0], ...(opts.intervene ? { intervene: opts.intervene, generatedFrom: [prefix.length] } : {}) });
    for (let s = 1; s < group.length; s++) cache.copyPrefix(0, s, prefix.length);
    const seqs = group.map((p) => [context[context.length - 1]!, ...p.continuation.slice(0, -1)]);
    const targets = group.map((p) => [...p.continuation]);
    const res = await model.forward(seqs, {
      logits: 'none', targets, cache, cacheSlots: group.map((_, s) => s),
      ...(opts.intervene ? { intervene: opts.intervene, generatedFrom: group.map(() => 1) } : {}),
    });
    sumTargets(targets, res.targetLogprobs!).forEach((r, j) => { out[at[j]!] = r; });
  } finally {
    cache.dispose(); // now, not at garbage collection: on a GPU its memory is device memory
  }
}

/** lm-evaluation-harness tokenisation of (context, continuation): trailing spaces of the context move to the
 *  continuation; the context is encoded alone, and the continuation is the whole's tokens past the context's
 *  length (so merges across the boundary go to the continuation), as lm-eval's `_encode_pair`. */
export async function logLikelihood(model: LanguageModel, pairs: { context: string; continuation: string }[], opts: LogLikelihoodOptions = {}): Promise<ContinuationScore[]> {
  checkOptions('logLikelihood', opts, LOG_LIKELIHOOD_OPTIONS);
  const tok = model.requireTokenizer();
  const enc = pairs.map((pair) => {
    let { context, continuation } = pair;
    const spaces = context.length - context.trimEnd().length;
    if (spaces > 0) { continuation = context.slice(-spaces) + continuation; context = context.slice(0, -spaces); }
    const whole = tok.encode(context + continuation);
    const ctx = tok.encode(context);
    return { context: ctx, continuation: whole.slice(ctx.length) };
  });
  return logLikelihoodTokens(model, enc, 4096, opts);
}
