// What the tasks need from a model: log-likelihoods of (context, continuation) pairs, greedy generation, the NLL
// of texts, token ids (for token-level XQuAD scores) and, with a trained classification head, class logits.
// ModelScorer runs them on the native engine, batched; tests plug in a fake scorer with hand-checkable numbers.
import type { LanguageModel } from '../engine/model.js';
import { logLikelihoodTokens, scoreTokens } from '../engine/score.js';
import { lmEvalChatContext, type ChatPrompting } from '../generate/chat.js';
import { generateTokens } from '../generate/generate.js';
import { pyRstrip } from './pystr.js';
import type { Intervention } from '../intervene/index.js';
import type { HeadClassifier } from '../train/head.js';

export interface Pair { context: string; continuation: string }
/** `truncated`: context tokens dropped from the left to fit the model's context (lm-eval's left truncation). */
export interface PairScore { logprob: number; tokens: number; truncated?: number }
export interface GenOptions {
  maxNewTokens: number; stop: string[]; repetitionPenalty: number;
  /** false: the output text without the tokenizer's space clean-up, as vLLM detokenizes (Language Arithmetics' runs). */
  cleanUpSpaces?: false;
}
/** A generation; `truncated`: prompt tokens dropped from the left so that prompt + maxNewTokens fit the context. */
export interface GenOutput { text: string; truncated?: number }

/** A request that cannot be made to fit the model's context; `index` is its position in the call's list. */
export class RequestTooLong extends Error {
  constructor(readonly index: number, message: string) { super(message); }
}

export interface Scorer {
  logLikelihood(pairs: Pair[]): Promise<PairScore[]>;
  /** `concurrency`: sequences decoded together (continuous batching); the outputs depend on it only through the
   *  float rounding of other batch shapes (docs/RELIABILITY.md). */
  generate(prompts: string[], opts: GenOptions, run?: { concurrency?: number }): Promise<(string | GenOutput)[]>;
  /** Summed NLL and predicted-token count of each text (BOS as the tokenizer prescribes). */
  nll(texts: string[]): Promise<{ totalNll: number; tokens: number }[]>;
  /** Token ids without special tokens (token-id EM/F1); absent = not reported. */
  encode?(text: string): number[];
  /** Class logits of items given by their text fields (a trained head, `eval --prompt head`); absent = no head. */
  classify?(items: string[][]): Promise<Float32Array[]>;
  /** What the results depend on besides the model's files: compute mode, device, context length, engine kind. */
  describe?(): ScorerInfo;
}

export interface ScorerInfo {
  compute: string;
  device: string;
  threads: number;
  contextLength: number;
  /** The engine's kind (LanguageModel.engineKind(): the CPU kernel family, the GPU runtime): not in the result key,
   *  so that results stay valid across machines; an item checkpoint is resumed only on the same kind. */
  engine?: string;
}

export interface ModelScorerOptions {
  /** A resolved intervention (src/intervene): applied in every log-likelihood, generation, NLL and head score. */
  intervene?: Intervention;
  /** Token budget per packed forward. */
  batchTokens?: number;
  /** A trained classification head on this model (src/train/head.ts), for `--prompt head`. */
  head?: HeadClassifier;
  /**
   * Generative prompts go through the model's chat template (`eval --chat-template`). Log-likelihood pairs come
   * rendered already (the task plan's contexts, src/eval/tasks.ts), as lm-evaluation-harness renders them.
   */
  chat?: ChatPrompting;
}

export class ModelScorer implements Scorer {
  private readonly engineOpts: { intervene?: Intervention };
  constructor(readonly model: LanguageModel, readonly opts: ModelScorerOptions = {}) {
    this.engineOpts = opts.intervene ? { intervene: opts.intervene } : {};
  }

  describe(): ScorerInfo {
    return { compute: this.model.compute, device: this.model.device, threads: this.model.threads, contextLength: this.model.contextLength,
      engine: this.model.engineKind() };
  }

  /** lm-eval's HFLM: pairs tokenised by `_encode_pair` (an empty context becomes the BOS token, or EOS without
   *  one: `prefix_token_id`), then `(context + continuation)[-(max_length + 1):]`, i.e. the context truncated from
   *  the left; a continuation longer than the context window is refused. For interventions the context's tokens are
   *  `prompt` positions and the continuation's (as inputs) `generated` ones: the answer the model would generate. */
  async logLikelihood(pairs: Pair[]): Promise<PairScore[]> {
    const tok = this.model.requireTokenizer();
    const L = this.model.contextLength;
    const enc = pairs.map((p, i) => {
      const e = lmEvalEncodePair(tok, p);
      if (e.continuation.length > L) throw new RequestTooLong(i, `its continuation has ${e.continuation.length} tokens, more than the model's context of ${L}`);
      const drop = Math.max(0, e.context.length + e.continuation.length - (L + 1));
      return { context: e.context.slice(drop), continuation: e.continuation, drop };
    });
    const res = await logLikelihoodTokens(this.model, enc, this.opts.batchTokens ?? 4096, this.engineOpts);
    return res.map((r, i) => ({ ...r, truncated: enc[i]!.drop }));
  }

  /** Greedy generation; lm-eval's `generate_until` keeps the last (context - max_gen_toks) prompt tokens. */
  async generate(prompts: string[], o: GenOptions, run: { concurrency?: number } = {}): Promise<GenOutput[]> {
    const tok = this.model.requireTokenizer();
    const keep = this.model.contextLength - o.maxNewTokens;
    if (keep < 1) throw new RequestTooLong(0, `${o.maxNewTokens} new tokens leave no room for a prompt in the model's context of ${this.model.contextLength}`);
    // With a chat template (eval --chat-template) the prompt is a user turn of the model's own template, rendered and
    // encoded as lm-eval does (a --system turn only when non-empty; BOS added unless the rendering starts with it).
    const chat = this.opts.chat;
    const ids = prompts.map((p) => (chat ? lmEvalEncode(tok, lmEvalChatContext(chat, '', p)) : tok.encode(p)));
    const gens = await generateTokens(this.model, ids.map((x) => x.slice(-keep)),
      { maxNewTokens: o.maxNewTokens, stop: o.stop, repetitionPenalty: o.repetitionPenalty, temperature: 0, ...this.engineOpts,
        ...(o.cleanUpSpaces === false ? { cleanUpTokenizationSpaces: false } : {}),
        ...(run.concurrency ? { concurrency: run.concurrency } : {}) });
    return gens.map((g, i) => ({ text: g.text, truncated: Math.max(0, ids[i]!.length - keep) }));
  }

  /** Perplexity texts are input, not generated: every token is a `prompt` position for interventions, as in
   *  `score` (scoreTokens), so `positions=prompt|generated` means the same in `score` and `eval --task ppl`. */
  async nll(texts: string[]): Promise<{ totalNll: number; tokens: number }[]> {
    const tok = this.model.requireTokenizer();
    const ids = texts.map((t) => tok.encode(t));
    const out: { totalNll: number; tokens: number }[] = new Array(texts.length);
    // Texts that fit the context are packed together, `batchTokens` at a time (the same predictions as scoreTokens
    // without windows); longer ones go through scoreTokens' windows.
    const short: number[] = [];
    ids.forEach((s, i) => {
      if (s.length < 2) out[i] = { totalNll: 0, tokens: 0 };
      else if (s.length <= this.model.contextLength) short.push(i);
    });
    const budget = this.opts.batchTokens ?? 4096;
    for (let k = 0; k < short.length;) {
      const batch: number[] = [];
      let used = 0;
      for (; k < short.length; k++) {
        const n = ids[short[k]!]!.length - 1; // the last token is only a target
        if (batch.length && used + n > budget) break;
        batch.push(short[k]!);
        used += n;
      }
      const targets = batch.map((i) => ids[i]!.slice(1));
      // no generatedFrom: every position is a prompt position
      const res = await this.model.forward(batch.map((i) => ids[i]!.slice(0, -1)), { logits: 'none', targets, ...this.engineOpts });
      let off = 0;
      batch.forEach((i, j) => {
        let lp = 0;
        for (let p = 0; p < targets[j]!.length; p++) lp += res.targetLogprobs![off + p]!;
        off += targets[j]!.length;
        out[i] = { totalNll: -lp, tokens: targets[j]!.length };
      });
    }
    for (let i = 0; i < ids.length; i++) {
      if (out[i]) continue;
      const r = await scoreTokens(this.model, ids[i]!, this.engineOpts);
      out[i] = { totalNll: r.totalNll, tokens: r.tokens };
    }
    return out;
  }

  encode(text: string): number[] {
    return this.model.requireTokenizer().encode(text, { addSpecialTokens: false });
  }

  classify(items: string[][]): Promise<Float32Array[]> {
    if (!this.opts.head) throw new Error('ModelScorer.classify: no classification head (eval --head <run>)');
    const tok = this.model.requireTokenizer();
    return this.opts.head.classify(items, (s) => tok.encode(s), this.opts.intervene);
  }
}

/** lm-eval `_encode_pair` for a causal model: trailing whitespace of the context (Python's rstrip) moves to the
 *  continuation; the continuation is the whole's tokens past the context's. An empty context is the BOS token
 *  (EOS when there is none) and the continuation is encoded without special tokens (HFLM.loglikelihood). A context
 *  that starts with that token's text (a chat template's rendering: `<|begin_of_text|>…`) is encoded without
 *  adding special tokens, so BOS is not doubled (HFLM.tok_encode's has_bos_prefix). */
export function lmEvalEncodePair(tok: { encode(text: string, o?: { addSpecialTokens?: boolean }): number[]; decode(ids: readonly number[]): string; bosTokenId: number | null; eosTokenIds: number[] },
  pair: Pair): { context: number[]; continuation: number[] } {
  if (pair.context === '') {
    const prefix = tok.bosTokenId ?? tok.eosTokenIds[0];
    if (prefix === undefined) throw new Error('an empty context needs a BOS or EOS token');
    return { context: [prefix], continuation: tok.encode(pair.continuation, { addSpecialTokens: false }) };
  }
  let { context, continuation } = pair;
  const kept = pyRstrip(context);
  if (kept.length < context.length) { continuation = context.slice(kept.length) + continuation; context = kept; }
  const ctx = lmEvalEncode(tok, context);
  return { context: ctx, continuation: lmEvalEncode(tok, context + continuation).slice(ctx.length) };
}

type EncodingTokenizer = Parameters<typeof lmEvalEncodePair>[0];

/** lm-eval HFLM.tok_encode: the tokenizer's own special tokens, except for a text that starts with the BOS (else
 *  EOS) token's text — a chat template's rendering — which is encoded without adding them again (has_bos_prefix). */
export function lmEvalEncode(tok: EncodingTokenizer, text: string): number[] {
  const prefix = tok.bosTokenId ?? tok.eosTokenIds[0];
  const prefixText = prefix === undefined ? '' : tok.decode([prefix]);
  return tok.encode(text, prefixText !== '' && text.startsWith(prefixText) ? { addSpecialTokens: false } : {});
}
