// Text generation with the KV cache: all prompts are prefilled in one packed forward, then decoded together,
// one token per active sequence per step. Stops at EOS, a stop string, or the token budget.
import { LangneuronsError } from '../errors.js';
import type { ForwardOutput, LanguageModel } from '../engine/model.js';
import type { Intervention } from '../intervene/index.js';
import { Rng, sampleNext, validateSampling, type SamplingOptions } from './sampling.js';
import { StopFinder } from './stops.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Generation ends when the decoded output contains one of these; the text is cut before it. */
  stop?: string[];
  /** Stop at the model's EOS tokens (default true). */
  stopAtEos?: boolean;
  /** Called after each step with the number of tokens generated so far over all sequences. */
  onToken?: (seq: number, token: number) => void;
  /** Index of the first prompt in the caller's whole list, when it generates that list in batches: sequence i samples
   *  from the random stream of prompt `firstIndex + i` (Rng.forSequence), the same in any batching. Default 0. */
  firstIndex?: number;
  /** Prompt tokens per prefill forward (default 4096): the prompts are prefilled in groups of at most this many tokens
   *  (a longer prompt alone), so that a large batch of long prompts does not need activations for all of them at
   *  once. The results do not depend on it. */
  prefillTokens?: number;
  /** Interventions on FFN neurons (src/intervene); the prompt (prefill) tokens are `prompt` positions, the
   *  decoded ones `generated`. */
  intervene?: Intervention;
}

export type FinishReason = 'eos' | 'stop' | 'length';

export interface Generation {
  text: string;
  tokens: number[];
  promptTokens: number;
  finishReason: FinishReason;
}

/** Generates from already tokenised prompts. Text is decoded when the model has a tokenizer. */
export async function generateTokens(model: LanguageModel, prompts: number[][], opts: GenerateOptions = {}): Promise<Generation[]> {
  validateSampling(opts);
  const maxNew = opts.maxNewTokens ?? 128;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new LangneuronsError('E_OPTIONS', `maxNewTokens must be an integer >= 0, got ${maxNew}`, { field: 'maxNewTokens' });
  if (prompts.length === 0) return [];
  const ctx = model.contextLength;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new LangneuronsError('E_INPUT', `prompt ${i} has no tokens (add a BOS token or some text)`);
    if (p.length > ctx) throw new LangneuronsError('E_INPUT', `prompt ${i} has ${p.length} tokens, longer than the model's context of ${ctx}`);
  });
  const capacity = Math.min(ctx, Math.max(...prompts.map((p) => p.length)) + maxNew);
  const cache = model.createCache(prompts.length, capacity);
  const eos = new Set(opts.stopAtEos === false ? [] : model.config.eosTokenIds);
  const tok = model.tokenizer;
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  if (stops.length && !tok) throw new LangneuronsError('E_TOKENIZER', 'stop strings need the model\'s tokenizer');
  const prefillTokens = opts.prefillTokens ?? 4096;
  if (!Number.isSafeInteger(prefillTokens) || prefillTokens < 1) throw new LangneuronsError('E_OPTIONS', `prefillTokens must be an integer >= 1, got ${prefillTokens}`, { field: 'prefillTokens' });
  const firstIndex = opts.firstIndex ?? 0;
  if (!Number.isSafeInteger(firstIndex) || firstIndex < 0) throw new LangneuronsError('E_OPTIONS', `firstIndex must be an integer >= 0, got ${firstIndex}`, { field: 'firstIndex' });
  // The text is needed during generation only to find stop strings; otherwise it is decoded once at the end.
  const stopFinder = tok && stops.length ? new StopFinder(tok, stops) : null;
  const out = prompts.map((p, i) => ({ tokens: [] as number[], text: '', done: maxNew === 0, reason: 'length' as FinishReason, history: [...p],
    stopScan: stopFinder?.start() ?? null, rng: opts.temperature ? Rng.forSequence(opts.seed ?? 0, firstIndex + i) : null }));

  let active = out.map((_, i) => i).filter((i) => !out[i]!.done);
  const intervene = opts.intervene ? { intervene: opts.intervene } : {};
  // Greedy decoding (the default, and what evaluation and steering use): the runtime picks the tokens where the
  // model runs, so a step returns one id per sequence, not sequences × vocab logits to scan here.
  const penalty = opts.repetitionPenalty ?? 1;
  const selection = (seqs: number[]) => (opts.temperature
    ? { logits: 'last' as const }
    : { logits: 'greedy' as const, ...(penalty !== 1 ? { repetitionPenalty: penalty, penaltyTokens: seqs.map((s) => out[s]!.history) } : {}) });
  // The next token of each of `seqs` (the rows of `step`), picked by the runtime or sampled here from its own stream.
  const picked: number[] = new Array<number>(prompts.length).fill(-1);
  const pick = (step: ForwardOutput, seqs: number[]) => seqs.forEach((s, r) => {
    picked[s] = step.next ? step.next.tokens[r]! : sampleNext(step.logits.subarray(r * step.vocab, (r + 1) * step.vocab), out[s]!.history, opts, out[s]!.rng!);
  });
  for (const group of prefillGroups(prompts, active, prefillTokens))
    pick(await model.forward(group.map((s) => prompts[s]!), { ...selection(group), cache, cacheSlots: group, ...intervene }), group);
  while (active.length) {
    const next: number[] = [];
    for (const s of active) {
      const o = out[s]!;
      const id = picked[s]!;
      if (eos.has(id)) { o.done = true; o.reason = 'eos'; continue; }
      o.tokens.push(id);
      o.history.push(id);
      opts.onToken?.(s, id);
      const cut = stopFinder ? stopFinder.step(o.stopScan!, o.tokens, id) : null;
      if (cut !== null) { o.text = cut; o.done = true; o.reason = 'stop'; continue; }
      if (o.tokens.length >= maxNew || prompts[s]!.length + o.tokens.length >= capacity) { o.done = true; o.reason = 'length'; continue; }
      next.push(s);
    }
    active = next;
    if (!active.length) break;
    pick(await model.forward(active.map((s) => [out[s]!.tokens[out[s]!.tokens.length - 1]!]), { ...selection(active), cache, cacheSlots: active,
      ...(opts.intervene ? { intervene: opts.intervene, generatedFrom: active.map(() => 0) } : {}) }), active);
  }
  return out.map((o, i) => ({
    text: tok && o.reason !== 'stop' ? tok.decode(o.tokens, { skipSpecialTokens: true }) : o.text,
    tokens: o.tokens,
    promptTokens: prompts[i]!.length,
    finishReason: o.reason,
  }));
}

/** `seqs` in order, in groups of at most `budget` prompt tokens (a longer prompt in a group of its own). */
function prefillGroups(prompts: number[][], seqs: number[], budget: number): number[][] {
  const groups: number[][] = [];
  let group: number[] = [];
  let tokens = 0;
  for (const s of seqs) {
    const n = prompts[s]!.length;
    if (group.length && tokens + n > budget) { groups.push(group); group = []; tokens = 0; }
    group.push(s);
    tokens += n;
  }
  if (group.length) groups.push(group);
  return groups;
}

/** Generates a continuation of each text prompt (tokenised with the model's tokenizer, BOS as it prescribes). */
export async function generate(model: LanguageModel, prompts: string | string[], opts: GenerateOptions = {}): Promise<Generation[]> {
  const tok = model.requireTokenizer();
  const list = typeof prompts === 'string' ? [prompts] : prompts;
  return generateTokens(model, list.map((p) => tok.encode(p)), opts);
}
