// What the tasks need from a model: log-likelihoods of (context, continuation) pairs, greedy generation, the NLL
// of texts, and token ids (for token-level XQuAD scores). ModelScorer runs them on the native engine, batched;
// tests plug in a fake scorer with hand-checkable numbers.
import { LangneuronsError } from '../errors.js';
import type { LanguageModel } from '../engine/model.js';
import { logLikelihood, logLikelihoodTokens, scoreTokens } from '../engine/score.js';
import { generate } from '../generate/generate.js';

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
}

export interface ModelScorerOptions {
  /** An intervention spec for the engine (src/intervene); recorded in the results. */
  intervene?: unknown;
  /** Token budget per packed forward. */
  batchTokens?: number;
}

export class ModelScorer implements Scorer {
  constructor(readonly model: LanguageModel, readonly opts: ModelScorerOptions = {}) {
    if (opts.intervene !== undefined) {
      // TODO(intervene): the engine's `{ intervene }` option (src/intervene, engine options) is being written
      // concurrently. Once logLikelihood / generate / scoreTokens accept it, pass `{ intervene: opts.intervene }`
      // in the three calls below and remove this guard. Until then refuse rather than silently evaluating the
      // base model under an intervention's name.
      throw new LangneuronsError('E_OPTIONS', '--intervene: this engine build has no intervention option yet (src/intervene); evaluate the base model or a merged checkpoint', { field: 'intervene' });
    }
  }

  logLikelihood(pairs: Pair[]): Promise<PairScore[]> {
    return logLikelihood(this.model, pairs);
  }

  async generate(prompts: string[], o: GenOptions): Promise<string[]> {
    const gens = await generate(this.model, prompts, { maxNewTokens: o.maxNewTokens, stop: o.stop, repetitionPenalty: o.repetitionPenalty, temperature: 0 });
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
    const res = await logLikelihoodTokens(this.model, short.map((i) => ({ context: ids[i]!.slice(0, 1), continuation: ids[i]!.slice(1) })), this.opts.batchTokens ?? 4096);
    short.forEach((i, k) => { out[i] = { totalNll: -res[k]!.logprob, tokens: res[k]!.tokens }; });
    for (let i = 0; i < ids.length; i++) {
      if (out[i]) continue;
      const r = await scoreTokens(this.model, ids[i]!);
      out[i] = { totalNll: r.totalNll, tokens: r.tokens };
    }
    return out;
  }

  encode(text: string): number[] {
    return this.model.requireTokenizer().encode(text, { addSpecialTokens: false });
  }
}
