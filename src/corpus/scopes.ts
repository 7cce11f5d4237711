// Token scopes (METHODS.md section 1): how a language's documents become the token sequences a
// profiling pass feeds the model, and which positions it counts.
//
//   windows   (Tang / Gurgurov): every document tokenised without special tokens, all concatenated into
//             one stream (no separator), cut into consecutive windows of maxLen tokens; the last partial
//             window (where the stream or the token budget ends) is kept, shorter, or with partialWindow
//             'drop' left out, as Tang's activation.py keeps whole windows only. Every window position is counted.
//   sentences (Rahmanisa): each document alone, its own tokens truncated to maxLen, all counted.
//             longSentences 'drop' (Kojima's selfcond): a document of more than maxLen tokens is skipped
//             instead (no sequence, no sequence id).
//
// With `bos`, a BOS id is fed before each sequence and not counted; in sentences mode `countBos` counts it too
// (Kojima's selfcond means every token the tokenizer gives, BOS included). maxLen counts the sequence's own
// tokens (BOS not included, counted or not), so a sequence is at most maxLen + 1 long with BOS: the windows, and
// hence the counted tokens, are then the same with and without BOS. tokenBudget (0 = all) caps counted tokens per language:
// the sequence reaching it is truncated so that exactly tokenBudget tokens are counted. No padding is
// produced (sequences have their own lengths), so TokenScope.countPadding does not arise here.
//
// Determinism, resumption and shards follow from one global sequence order: sequence i is the i-th one
// cut from the documents in order. A ScopePosition is the state after some sequence; resuming from it
// regenerates exactly the sequences after it. A shard { index, count } keeps sequences with
// i % count === index, but every shard walks (and tokenises) the whole stream, because the budget and the
// cut points are global: that is what makes shard-then-merge equal the single run.
import { LangneuronsError } from '../errors.js';
import type { TokenScope } from '../profile/stats.js';
import type { DocumentSource } from './sources.js';

/** Rahmanisa's cap on tokens per language (METHODS.md). */
export const RAHMANISA_TOKEN_BUDGET = 100_000;

/** What the scopes need of a tokenizer (LoadedTokenizer satisfies it). */
export interface ScopeTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  readonly bosTokenId: number | null;
}

/** Where the stream stands after some sequence; all counts are global (over every shard). */
export interface ScopePosition {
  /** Document (0-based, in source order, blank ones not counted) where the next sequence starts. */
  documentIndex: number;
  /** Token offset inside that document (windows mode; 0 in sentences mode). */
  tokenOffset: number;
  /** Sequences cut so far: the global index of the next sequence. */
  sequencesEmitted: number;
  /** Tokens counted so far, by all shards (what the budget is checked against). */
  tokensCounted: number;
}

export const START_POSITION: Readonly<ScopePosition> = Object.freeze({ documentIndex: 0, tokenOffset: 0, sequencesEmitted: 0, tokensCounted: 0 });

export interface SequenceBatch {
  /** Token ids, BOS included when fed. */
  sequences: number[][];
  /** Per position: 1 = counted, 0 = fed only (BOS). */
  countMask: number[][];
  /** Counted tokens in this batch. */
  tokens: number;
  /** Global index of each sequence (for per-sequence statistics). */
  sequenceIds: number[];
  /** State after this batch's last sequence: checkpoint it with the statistics, pass it as resumeFrom. */
  position: ScopePosition;
}

export interface Shard {
  index: number;
  count: number;
}

export interface SequenceOptions {
  scope: Pick<TokenScope, 'mode' | 'maxLen' | 'bos' | 'tokenBudget' | 'countBos' | 'longSentences' | 'partialWindow'>;
  shard?: Shard;
  resumeFrom?: ScopePosition;
}

export interface BatchOptions extends SequenceOptions {
  /** Most tokens (fed, BOS included) per batch; at least one full sequence (maxLen, + 1 with BOS). */
  batchTokens: number;
}

export interface CutSequence {
  ids: number[];
  mask: number[];
  counted: number;
  sequenceId: number;
  /** Position after this sequence. */
  position: ScopePosition;
}

function fail(message: string): never {
  throw new LangneuronsError('E_SCOPE', message);
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

function checkOptions(options: SequenceOptions, tokenizer: ScopeTokenizer): void {
  const { mode, maxLen, bos, tokenBudget } = options.scope;
  if (mode !== 'windows' && mode !== 'sentences') fail(`unknown token scope mode "${String(mode)}" (windows or sentences)`);
  if (!Number.isSafeInteger(maxLen) || maxLen < 1) fail(`maxLen must be a positive integer, got ${maxLen}`);
  if (!isCount(tokenBudget)) fail(`tokenBudget must be a non-negative integer (0 = the whole corpus), got ${tokenBudget}`);
  if (bos && tokenizer.bosTokenId === null) fail('the tokenizer has no BOS token: profile with bos: false');
  const { countBos, longSentences } = options.scope;
  if (countBos !== undefined && typeof countBos !== 'boolean') fail(`countBos must be true or false, got ${String(countBos)}`);
  if (countBos && !(bos && mode === 'sentences')) fail('countBos (counting the BOS as a token of its sentence) needs the sentences scope with bos');
  if (longSentences !== undefined && longSentences !== 'truncate' && longSentences !== 'drop') fail(`longSentences must be "truncate" or "drop", got "${String(longSentences)}"`);
  if (longSentences === 'drop' && mode !== 'sentences') fail('longSentences "drop" applies to the sentences scope (windows are cut, never dropped)');
  const partialWindow = options.scope.partialWindow;
  if (partialWindow !== undefined && partialWindow !== 'keep' && partialWindow !== 'drop') fail(`partialWindow must be "keep" or "drop", got "${String(partialWindow)}"`);
  if (partialWindow === 'drop' && mode !== 'windows') fail('partialWindow "drop" applies to the windows scope (sentences are never cut into windows)');
  const shard = options.shard;
  if (shard && (!Number.isSafeInteger(shard.count) || shard.count < 1 || !Number.isSafeInteger(shard.index) || shard.index < 0 || shard.index >= shard.count)) {
    fail(`shard index must be in [0, count), got ${shard.index} of ${shard.count}`);
  }
  const p = options.resumeFrom;
  if (p && !(isCount(p.documentIndex) && isCount(p.tokenOffset) && isCount(p.sequencesEmitted) && isCount(p.tokensCounted))) {
    fail(`resume position must hold four non-negative integers, got ${JSON.stringify(p)}`);
  }
  if (p && mode === 'sentences' && p.tokenOffset !== 0) fail('a sentences-mode resume position has tokenOffset 0 (was it taken in windows mode?)');
  if (p && tokenBudget > 0 && p.tokensCounted > tokenBudget) fail(`resume position has counted ${p.tokensCounted} tokens, over the budget of ${tokenBudget}`);
}

/** Documents from `start` on, with their index; fails if the source ends before `start` (it changed). */
async function* documentsFrom(source: DocumentSource, start: number): AsyncGenerator<{ index: number; text: string }> {
  let index = 0;
  for await (const text of source.documents()) {
    if (index >= start) yield { index, text };
    index++;
  }
  if (index < start) fail(`the resume position is at document ${start} but the corpus has only ${index} documents (did the corpus change?)`);
}

/**
 * Every sequence of the language in global order (shard filtering applied), each with the position
 * after it. The unbatched form of scopeBatches.
 */
export async function* scopeSequences(source: DocumentSource, tokenizer: ScopeTokenizer, options: SequenceOptions): AsyncGenerator<CutSequence> {
  checkOptions(options, tokenizer);
  const { mode, maxLen, bos, tokenBudget } = options.scope;
  // A counted BOS is one more counted token per sequence (sentences mode only, checked above).
  const bosCounted = options.scope.countBos === true ? 1 : 0;
  const drop = options.scope.longSentences === 'drop';
  const wholeWindows = options.scope.partialWindow === 'drop';
  const shard = options.shard ?? { index: 0, count: 1 };
  const state: ScopePosition = { ...(options.resumeFrom ?? START_POSITION) };
  const budgetLeft = () => (tokenBudget > 0 ? tokenBudget - state.tokensCounted : Infinity);
  if (budgetLeft() <= 0) return;

  // The sequence being filled (windows mode spans documents).
  let current: number[] = [];
  const cut = (): CutSequence | null => {
    const sequenceId = state.sequencesEmitted++;
    state.tokensCounted += current.length + bosCounted;
    const own = sequenceId % shard.count === shard.index;
    const result = own
      ? { ids: bos ? [tokenizer.bosTokenId!, ...current] : current, mask: bos ? [bosCounted, ...current.map(() => 1)] : current.map(() => 1),
        counted: current.length + bosCounted, sequenceId, position: { ...state } }
      : null;
    current = [];
    return result;
  };

  for await (const { index, text } of documentsFrom(source, state.documentIndex)) {
    const tokens = tokenizer.encode(text, { addSpecialTokens: false });
    let offset = index === options.resumeFrom?.documentIndex ? state.tokenOffset : 0;
    if (offset > tokens.length) fail(`the resume position is at token ${offset} of document ${index}, which has ${tokens.length} tokens (did the corpus or tokenizer change?)`);
    if (mode === 'sentences') {
      state.documentIndex = index + 1;
      state.tokenOffset = 0;
      if (drop && tokens.length > maxLen) continue; // Kojima: a sentence over the length is left out, not cut
      // With a counted BOS, a budget with room for the BOS only ends the language (a sentence is never a lone BOS).
      if (budgetLeft() - bosCounted <= 0) return;
      const take = Math.min(tokens.length, maxLen, budgetLeft() - bosCounted);
      if (take === 0) continue; // a document with no tokens yields no sequence
      current = tokens.slice(0, take);
      const seq = cut();
      if (seq) yield seq;
      if (budgetLeft() <= 0) return;
      continue;
    }
    while (offset < tokens.length) {
      const take = Math.min(tokens.length - offset, maxLen - current.length, budgetLeft() - current.length);
      for (let i = 0; i < take; i++) current.push(tokens[offset + i]!);
      offset += take;
      // Positions name the next unread token; a finished document moves on to the next one.
      if (offset === tokens.length) {
        state.documentIndex = index + 1;
        state.tokenOffset = 0;
      } else {
        state.documentIndex = index;
        state.tokenOffset = offset;
      }
      if (current.length === maxLen || current.length === budgetLeft()) {
        // (the budget cut a window short: with whole windows only, it is left out and the language ends)
        if (current.length < maxLen && wholeWindows) return;
        const seq = cut();
        if (seq) yield seq;
        if (budgetLeft() <= 0) return;
      }
    }
    state.documentIndex = index + 1;
    state.tokenOffset = 0;
  }
  if (current.length > 0 && !wholeWindows) {
    const seq = cut(); // the last, partial window
    if (seq) yield seq;
  }
}

/**
 * The language's sequences packed into batches of at most batchTokens fed tokens, in global order.
 * Resuming from a batch's `position` yields exactly the batches that followed it.
 */
export async function* scopeBatches(source: DocumentSource, tokenizer: ScopeTokenizer, options: BatchOptions): AsyncGenerator<SequenceBatch> {
  const longest = options.scope.maxLen + (options.scope.bos ? 1 : 0);
  if (!Number.isSafeInteger(options.batchTokens) || options.batchTokens < longest) {
    fail(`batchTokens must hold at least one full sequence (${longest} tokens), got ${options.batchTokens}`);
  }
  let batch: SequenceBatch | null = null;
  let fed = 0;
  for await (const seq of scopeSequences(source, tokenizer, options)) {
    if (batch && fed + seq.ids.length > options.batchTokens) {
      yield batch;
      batch = null;
    }
    if (!batch) {
      batch = { sequences: [], countMask: [], tokens: 0, sequenceIds: [], position: seq.position };
      fed = 0;
    }
    batch.sequences.push(seq.ids);
    batch.countMask.push(seq.mask);
    batch.tokens += seq.counted;
    batch.sequenceIds.push(seq.sequenceId);
    batch.position = seq.position;
    fed += seq.ids.length;
  }
  if (batch) yield batch;
}
