// What the tasks need from a model: log-likelihoods of (context, continuation) pairs, greedy generation, the NLL
// of texts, token ids (for token-level XQuAD scores) and, with a trained classification head, class logits.
// ModelScorer runs them on the native engine, batched; tests plug in a fake scorer with hand-checkable numbers.
import type { LanguageModel } from '../engine/model.js';
import { logLikelihood, logLikelihoodTokens, scoreTokens } from '../engine/score.js';
import { encodeChatPrompt, type ChatPrompting } from '../generate/chat.js';
import { generate, generateTokens } from '../generate/generate.js';
import type { Intervention } from '../intervene/index.js';
import type { HeadClassifier } from '../train/head.js';

export interface Pair { context: string; continuation: string }
export interface PairScore { logprob: number; tokens: number }
export interface GenOptions { maxNewTokens: number; stop: string[]; repetitionPenalty: number }

export interface Scorer {
  logLikelihood(pairs: Pair[]): Promise<PairScore[]>;
  generate(prompts: string[], opts: GenOptions): Promise<string[]>;
  /** Summed NLL and predicted-token count of each text (BOS as the tokenizer prescribes). */
  nll(texts: string[]): Promise<{ totalNll: number; tokens: number }[]>;
  /** Token ids without special tokens (token-id EM/F1); absent = not reported. */
  encode?(text: string): number[];
  /** Class logits of items given by their text fields (a trained head, `eval --prompt head`); absent = no head. */
  classify?(items: string[][]): Promise<Float32Array[]>;
}

export interface ModelScorerOptions {
  /** A resolved intervention (src/intervene): applied in every log-likelihood, generation and NLL. */
  intervene?: Intervention;
  /** Token budget per packed forward. */
  batchTokens?: number;
  /** A trained classification head on this model (src/train/head.ts), for `--prompt head`. */
  head?: HeadClassifier;
  /**
   * Generative prompts go through the model's chat template (`eval --chat-template`): the instruct models of the
   * papers are prompted so for generation. Log-likelihood scoring stays on the raw text (lm-evaluation-harness).
   */
  chat?: ChatPrompting;
}

export class ModelScorer implements Scorer {
  private readonly engineOpts: { intervene?: Intervention };
  constructor(readonly model: LanguageModel, readonly opts: ModelScorerOptions = {}) {
    this.engineOpts = opts.intervene ? { intervene: opts.intervene } : {};
  }

  logLikelihood(pairs: Pair[]): Promise<PairScore[]> {
    return logLikelihood(this.model, pairs, this.engineOpts);
  }

  async generate(prompts: string[], o: GenOptions): Promise<string[]> {
    const opts = { maxNewTokens: o.maxNewTokens, stop: o.stop, repetitionPenalty: o.repetitionPenalty, temperature: 0, ...this.engineOpts };
    if (this.opts.chat) {
      const tok = this.model.requireTokenizer();
      const chat = this.opts.chat;
      return (await generateTokens(this.model, prompts.map((p) => encodeChatPrompt(chat, tok, p)), opts)).map((g) => g.text);
    }
    const gens = await generate(this.model, prompts, opts);
    return gens.map((g) => g.text);
  }

  async nll(texts: string[]): Promise<{ totalNll: number; tokens: number }[]> {
    const tok = this.model.requireTokenizer();
    const ids = texts.map((t) => tok.encode(t));
    const out: { totalNll: number; tokens: number }[] = new Array(texts.length);
    // Texts that fit the context are packed together: context = the first token, continuation = the rest
    // (the same predictions as scoreTokens without windows); longer ones go through scoreTokens' windows.
    const short: number[] = [];
    ids.forEach((s, i) => {
      if (s.length < 2) out[i] = { totalNll: 0, tokens: 0 };
      else if (s.length <= this.model.contextLength) short.push(i);
    });
    const res = await logLikelihoodTokens(this.model, short.map((i) => ({ context: ids[i]!.slice(0, 1), continuation: ids[i]!.slice(1) })), this.opts.batchTokens ?? 4096, this.engineOpts);
    short.forEach((i, k) => { out[i] = { totalNll: -res[k]!.logprob, tokens: res[k]!.tokens }; });
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
    if (this.opts.intervene) throw new Error('ModelScorer.classify: interventions are not applied to the head path');
    const tok = this.model.requireTokenizer();
    return this.opts.head.classify(items, (s) => tok.encode(s));
  }
}
