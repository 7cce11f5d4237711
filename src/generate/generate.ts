// Text generation with the KV cache, continuously batched: up to `concurrency` sequences hold a cache slot each; a
// step is one packed forward of one token per decoding sequence plus the prompts admitted into free slots (at most
// `prefillTokens` prompt tokens a step). A sequence ends at EOS, a stop string or the token budget, and its slot
// takes the next waiting prompt at the next step, so the batch stays full while prompts wait (instead of running
// as long as its longest sequence). A sequence's tokens do not depend on the others: its own random stream, and a
// forward row that does not depend on the other rows of the batch.
import { LangneuronsError } from '../errors.js';
import type { ForwardOutput, LanguageModel } from '../engine/model.js';
import type { DecodeOptions } from '../model/tokenizer.js';
import type { Intervention } from '../intervene/index.js';
import { checkOptions, type OptionKeys } from '../engine/options.js';
import { Rng, sampleNext, validateSampling, type SamplingOptions } from './sampling.js';
import { StopFinder } from './stops.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Generation ends when the decoded output contains one of these; the text is cut before it. */
  stop?: string[];
  /** Stop at the model's EOS tokens (default true): those of generation_config.json, config.json and
   *  tokenizer_config.json (LoadedTokenizer.eosTokenIds); config.json's alone for a model without a tokenizer. */
  stopAtEos?: boolean;
  /** transformers' clean_up_tokenization_spaces in the output text (" ." -> "."): default as the tokenizer config says;
   *  false gives vLLM's text (its detokenizer never applies it). Stop strings are found in the same text. */
  cleanUpTokenizationSpaces?: boolean;
  /** Called for each token generated, with its sequence's index in the call and the token id. */
  onToken?: (seq: number, token: number) => void;
  /** Index of the first prompt in the caller's whole list, when it generates that list in batches: sequence i samples
   *  from the random stream of prompt `firstIndex + i` (Rng.forSequence), the same in any batching. Default 0. */
  firstIndex?: number;
  /** Prompt tokens per prefill forward (default 4096): the prompts are prefilled in groups of at most this many tokens
   *  (a longer prompt alone), so that a large batch of long prompts does not need activations for all of them at
   *  once. The results do not depend on it. */
  prefillTokens?: number;
  /** Sequences decoded together, each holding a KV-cache slot (default: every prompt). With fewer, the prompts wait
   *  in order for a slot. The results do not depend on it. */
  concurrency?: number;
  /** Called when prompt i (an index into `prompts`) has its generation, in the order the generations end; a promise
   *  it returns is awaited before the next step (to write the generation out, say). */
  onGeneration?: (i: number, g: Generation) => void | Promise<void>;
  /** Interventions on FFN neurons or projection outputs (src/intervene); the prompt (prefill) tokens are `prompt`
   *  positions, the decoded ones `generated`. */
  intervene?: Intervention;
}

const GENERATE_OPTIONS: OptionKeys<GenerateOptions> = {
  temperature: true, topK: true, topP: true, repetitionPenalty: true, seed: true, maxNewTokens: true, stop: true, stopAtEos: true,
  cleanUpTokenizationSpaces: true, onToken: true, firstIndex: true, prefillTokens: true, concurrency: true, onGeneration: true, intervene: true,
};

export type FinishReason = 'eos' | 'stop' | 'length';

export interface Generation {
  text: string;
  tokens: number[];
  promptTokens: number;
  finishReason: FinishReason;
}

/** Generates from already tokenised prompts. Text is decoded when the model has a tokenizer. */
export async function generateTokens(model: LanguageModel, prompts: number[][], opts: GenerateOptions = {}): Promise<Generation[]> {
  checkOptions('generateTokens', opts, GENERATE_OPTIONS);
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
  const tok = model.tokenizer;
  // The tokenizer's EOS ids hold generation_config.json's (where instruct checkpoints list their end-of-turn token,
  // Gemma 2's <end_of_turn>, Llama 3's <|eot_id|>: transformers' generate stops at them) besides config.json's.
  const eos = new Set(opts.stopAtEos === false ? [] : tok?.eosTokenIds ?? model.config.eosTokenIds);
  if (opts.stop !== undefined && !(Array.isArray(opts.stop) && opts.stop.every((s) => typeof s === 'string')))
    throw new LangneuronsError('E_OPTIONS', `generate: stop must be a list of strings, got ${JSON.stringify(opts.stop)}`, { field: 'stop' });
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  if (stops.length && !tok) throw new LangneuronsError('E_TOKENIZER', 'stop strings need the model\'s tokenizer');
  const positive = (name: string, v: number) => {
    if (!Number.isSafeInteger(v) || v < 1) throw new LangneuronsError('E_OPTIONS', `${name} must be an integer >= 1, got ${v}`, { field: name });
    return v;
  };
  const prefillTokens = positive('prefillTokens', opts.prefillTokens ?? 4096);
  const slots = Math.min(prompts.length, positive('concurrency', opts.concurrency ?? prompts.length));
  const firstIndex = opts.firstIndex ?? 0;
  if (!Number.isSafeInteger(firstIndex) || firstIndex < 0) throw new LangneuronsError('E_OPTIONS', `firstIndex must be an integer >= 0, got ${firstIndex}`, { field: 'firstIndex' });
  // The text is needed during generation only to find stop strings; otherwise it is decoded once at the end. An id
  // the model has a row for and the tokenizer no token (a padded embedding) adds no text, as in transformers.
  const decodeOptions: DecodeOptions = { skipSpecialTokens: true, skipUnknownIds: true,
    ...(opts.cleanUpTokenizationSpaces === undefined ? {} : { cleanUpTokenizationSpaces: opts.cleanUpTokenizationSpaces }) };
  const stopFinder = tok && stops.length ? new StopFinder(tok, stops, decodeOptions) : null;
  const out = prompts.map((p, i) => ({ tokens: [] as number[], text: '', history: [...p], slot: -1,
    stopScan: stopFinder?.start() ?? null, rng: opts.temperature ? Rng.forSequence(opts.seed ?? 0, firstIndex + i) : null }));
  const results: Generation[] = new Array<Generation>(prompts.length);
  const writes: Promise<void>[] = [];
  const free: number[] = []; // cache slots without a sequence
  const end = (s: number, reason: FinishReason) => {
    const o = out[s]!;
    if (o.slot >= 0) free.push(o.slot);
    results[s] = { text: tok && reason !== 'stop' ? tok.decode(o.tokens, decodeOptions) : o.text, tokens: o.tokens, promptTokens: prompts[s]!.length, finishReason: reason };
    const w = opts.onGeneration?.(s, results[s]!);
    if (w) writes.push(w);
  };
  if (maxNew === 0) {
    prompts.forEach((_, s) => end(s, 'length'));
    await Promise.all(writes);
    return results;
  }
  const cache = model.createCache(slots, capacity);
  for (let k = slots - 1; k >= 0; k--) free.push(k);

  // Greedy decoding (the default, and what evaluation and steering use): the runtime picks the tokens where the
  // model runs, so a step returns one id per sequence, not sequences × vocab logits to scan here.
  const penalty = opts.repetitionPenalty ?? 1;
  const selection = (seqs: number[]) => (opts.temperature
    ? { logits: 'last' as const }
    : { logits: 'greedy' as const, ...(penalty !== 1 ? { repetitionPenalty: penalty, penaltyTokens: seqs.map((s) => out[s]!.history) } : {}) });
  // The next token of each of `seqs` (the rows of `step`), picked by the runtime or sampled here from its own stream.
  const pick = (step: ForwardOutput, seqs: number[]) => seqs.map((s, r) => (step.next ? step.next.tokens[r]!
    : sampleNext(step.logits.subarray(r * step.vocab, (r + 1) * step.vocab), out[s]!.history, opts, out[s]!.rng!)));

  try {
    let waiting = 0; // the next prompt without a slot
    let decoding: number[] = []; // sequences whose next forward is their last token
    while (decoding.length || waiting < prompts.length) {
      // Prompts into free slots, at most prefillTokens prompt tokens a step (a longer prompt alone).
      const admitted: number[] = [];
      for (let tokens = 0; free.length && waiting < prompts.length && (!admitted.length || tokens + prompts[waiting]!.length <= prefillTokens); waiting++) {
        const o = out[waiting]!;
        o.slot = free.pop()!;
        cache.reset(o.slot);
        admitted.push(waiting);
        tokens += prompts[waiting]!.length;
      }
      const batch = [...decoding, ...admitted];
      const step = await model.forward(batch.map((s, r) => (r < decoding.length ? [out[s]!.tokens[out[s]!.tokens.length - 1]!] : prompts[s]!)), {
        ...selection(batch), cache, cacheSlots: batch.map((s) => out[s]!.slot),
        // A prompt's tokens are `prompt` positions, a decoded token a `generated` one.
        ...(opts.intervene ? { intervene: opts.intervene, generatedFrom: batch.map((s, r) => (r < decoding.length ? 0 : prompts[s]!.length)) } : {}),
      });
      const ids = pick(step, batch);
      decoding = [];
      batch.forEach((s, r) => {
        const o = out[s]!;
        const id = ids[r]!;
        if (eos.has(id)) return end(s, 'eos');
        o.tokens.push(id);
        o.history.push(id);
        opts.onToken?.(s, id);
        const cut = stopFinder ? stopFinder.step(o.stopScan!, o.tokens, id) : null;
        if (cut !== null) { o.text = cut; return end(s, 'stop'); }
        if (o.tokens.length >= maxNew || prompts[s]!.length + o.tokens.length >= capacity) return end(s, 'length');
        decoding.push(s);
      });
      await Promise.all(writes.splice(0));
    }
  } finally {
    cache.dispose(); // now, not at garbage collection: on a GPU its memory is device memory
  }
  return results;
}

/** Generates a continuation of each text prompt (tokenised with the model's tokenizer, BOS as it prescribes). */
export async function generate(model: LanguageModel, prompts: string | string[], opts: GenerateOptions = {}): Promise<Generation[]> {
  checkOptions('generate', opts, GENERATE_OPTIONS);
  const tok = model.requireTokenizer();
  const list = typeof prompts === 'string' ? [prompts] : prompts;
  return generateTokens(model, list.map((p) => tok.encode(p)), opts);
}
