// LanguageModel: a checkpoint opened, memory-mapped by the native engine, with its tokenizer. Forwards run off
// the JS thread, one at a time per model (the native scratch buffers are single-user), in call order.
import os from 'node:os';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { checkFiniteNext, checkFiniteOutput } from './finite.js';
import { LangneuronsError } from '../errors.js';
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { assertSequenceFits, type ModelConfig } from '../model/config.js';
import { loadTokenizer, type LoadedTokenizer } from '../model/tokenizer.js';
import { loadAddon, type NativeForwardOptions, type NativeKvCache, type NativeModel } from '../native/addon.js';
import { SITES, type Site } from '../profile/stats.js';
import type { Intervention } from '../intervene/index.js';
import { GENERATED_CLASS, PROMPT_CLASS } from '../intervene/resolve.js';
import { buildNativeSpec } from './native-spec.js';
import { checkOptions, type OptionKeys } from './options.js';
import { resolveDevice, type DeviceRequest, type ResolvedDevice } from './device.js';
import { StatsAccumulator, type StatsOptions } from './stats.js';

export type Compute = 'f32' | 'bf16';
/** 'lastHidden': no LM head; `logits` holds each sequence's final-normed last-token hidden state [sequences × hidden]
 *  (the input of a classification head), and `vocab` is the hidden size. 'greedy': no logits; the runtime picks each
 *  sequence's next token from its last row (`next`: torch.argmax's rule, after the repetition penalty), on the
 *  device that runs the model, so a decode step returns one id per sequence instead of sequences × vocab floats. */
export type LogitsMode = 'all' | 'last' | 'none' | 'lastHidden' | 'greedy';

export interface LoadModelOptions {
  /** Worker threads of the native engine (default: the machine's cores). */
  threads?: number;
  /** 'f32': float32 activations and accumulation (the CPU's default). 'bf16': bf16 products, float32
   *  accumulation (the GPU's default). */
  compute?: Compute;
  /** 'auto' (default: a usable GPU, else the CPU — said once on stderr, except by a build without the CUDA
   *  runtime when 'auto' was not asked for explicitly), 'cpu', 'cuda' (the first GPU) or 'cuda:N'. An explicit
   *  'cuda' without a usable device is an error. */
  device?: DeviceRequest;
  /** Load tokenizer.json when present (default true). */
  tokenizer?: boolean;
}

const LOAD_MODEL_OPTIONS: OptionKeys<LoadModelOptions> = { threads: true, compute: true, device: true, tokenizer: true };

export interface ForwardOptions {
  logits?: LogitsMode;
  /** logits 'greedy' only: Hugging Face's RepetitionPenaltyLogitsProcessor before the pick, on each sequence's
   *  `penaltyTokens` (its prompt and output so far; repeats count once): positive logits ÷ p, others × p. */
  repetitionPenalty?: number;
  penaltyTokens?: ArrayLike<number>[];
  /** Per sequence, one next-token target per token (-1 = none): fills `targetLogprobs` without full logits. */
  targets?: ArrayLike<number>[];
  /** Continue the given cache slots (one per sequence) and append to them. */
  cache?: KvCache;
  cacheSlots?: number[];
  /** Accumulate per-unit activation statistics (model.createStats). */
  stats?: StatsAccumulator;
  /** Per sequence, one entry per token: nonzero = counted by `stats` (default: every token counted). */
  countMask?: ArrayLike<number>[];
  /** Stop after this layer (profiling; logits default to 'none'). With logits or targets: the logit lens, the final
   *  norm and LM head applied to the residual stream after this layer. No cache. */
  lastLayer?: number;
  /** Return the [tokens × width] values of one site at one layer (packed token order) as `capture`. */
  capture?: { site: Site; layer: number };
  /** Interventions on FFN neurons or projection outputs, resolved for this model (src/intervene: resolveIntervention). */
  intervene?: Intervention;
  /** Per sequence, the index of its first generated token (tokens before it are prompt); default: every token is
   *  prompt. Only read by interventions limited to prompt or generated positions. */
  generatedFrom?: number[];
}

const FORWARD_OPTIONS: OptionKeys<ForwardOptions> = {
  logits: true, repetitionPenalty: true, penaltyTokens: true, targets: true, cache: true, cacheSlots: true, stats: true,
  countMask: true, lastLayer: true, capture: true, intervene: true, generatedFrom: true,
};

export interface ForwardOutput {
  /** Row-major [rows × vocab]: 'all': one row per token (batch order), 'last': one per sequence, 'none': empty. */
  logits: Float32Array;
  rows: number;
  vocab: number;
  /** Start of each sequence in the packed token order (and in 'all' rows). */
  seqOffsets: number[];
  /** log p(target | prefix) per packed token (0 where no target), when targets were given. */
  targetLogprobs: Float32Array | null;
  /** The captured site values, row-major [tokens × width], when `capture` was asked for. */
  capture: Float32Array | null;
  /** logits 'greedy': each sequence's next token and its logit (after the penalty); else null. */
  next: { tokens: Int32Array; logits: Float32Array } | null;
}

/**
 * The engine's refusal of a request it was given (a sequence past the context, a cache slot over its capacity, a
 * bad cache size: plain Errors and RangeErrors from the addon, their messages starting with the call they refuse)
 * as a LangneuronsError, so that callers can tell bad input from a bug by type. Anything else (a CUDA fault,
 * "langneurons cuda: …"; running out of memory, which the CLI names) is left as it is.
 */
function asInputError(e: unknown, code: 'E_INPUT' | 'E_OPTIONS'): unknown {
  if (e instanceof LangneuronsError || !(e instanceof Error) || !/^(forward|NativeKvCache)( options)?: /.test(e.message)) return e;
  if (/bad_alloc|out of memory/i.test(e.message)) return e;
  return new LangneuronsError(code, e.message, { cause: e });
}

export class KvCache {
  /** Forwards queued or running with this cache; dispose() waits for them. */
  private inFlight = 0;
  private disposeRequested = false;
  constructor(readonly native: NativeKvCache, readonly slots: number, readonly capacity: number, readonly owner: LanguageModel) {}
  /** Whether dispose() was called (the memory may still be held by a forward that was queued before it). */
  get isDisposed(): boolean { return this.disposeRequested; }
  /** @internal A forward queued with this cache: the returned function is called when it ends. */
  hold(): () => void {
    this.inFlight++;
    return () => { if (--this.inFlight === 0 && this.disposeRequested) this.native.dispose(); };
  }
  length(slot: number): number { return this.checked('length', () => this.native.length(slot)); }
  /** Truncate a slot (0 empties it). */
  reset(slot: number, length = 0): void { this.checked('reset', () => this.native.setLength(slot, length)); }
  /** Slot dst := the first len positions of slot src (a shared prompt computed once, continued in several slots). */
  copyPrefix(src: number, dst: number, len: number): void { this.checked('copyPrefix', () => this.native.copyPrefix(src, dst, len)); }
  get bytes(): number { return this.checked('bytes', () => this.native.bytes()); }
  /** The engine's refusals (a slot or length out of range, use after dispose) as LangneuronsError E_INPUT. */
  private checked<T>(what: string, call: () => T): T {
    if (this.disposeRequested) throw new LangneuronsError('E_INPUT', `KvCache.${what}: the cache was disposed`);
    try { return call(); } catch (e) {
      if (e instanceof LangneuronsError || !(e instanceof Error)) throw e;
      throw new LangneuronsError('E_INPUT', `KvCache.${what}: ${e.message.replace(/^NativeKvCache: /, '')}`, { cause: e });
    }
  }
  /** Frees the cache's memory now rather than at garbage collection (on a GPU, device memory the collector does not
   *  see), or when a forward still using it ends. Idempotent; later use is refused. Also `using cache = …`. */
  dispose(): void {
    this.disposeRequested = true;
    if (this.inFlight === 0) this.native.dispose();
  }
  [Symbol.dispose](): void { this.dispose(); }
}

/** A token id as a message shows it: the string '1' (ids read from JSON or a CSV) or the bigint 1n is named as what
 *  it is, not printed as the number it looks like, which would read as a valid id refused. */
function showId(v: unknown): string {
  return typeof v === 'number' ? String(v) : `${typeof v === 'string' ? JSON.stringify(v) : String(v)} (a ${typeof v})`;
}

const LOGITS_CODE: Record<LogitsMode, 0 | 1 | 2 | 3 | 4> = { none: 0, last: 1, all: 2, lastHidden: 3, greedy: 4 };

export class LanguageModel {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly checkpoint: Checkpoint,
    readonly native: NativeModel,
    readonly tokenizer: LoadedTokenizer | null,
    readonly compute: Compute,
    readonly threads: number,
    readonly device: ResolvedDevice,
  ) {}

  private disposed = false;

  get config(): ModelConfig { return this.checkpoint.config; }
  get vocabSize(): number { return this.checkpoint.config.vocabSize; }
  get contextLength(): number { return this.checkpoint.config.maxPositions; }

  static async load(dir: string, options: LoadModelOptions | null = {}): Promise<LanguageModel> {
    const opts = options ?? {};
    if (typeof dir !== 'string') throw new LangneuronsError('E_OPTIONS', `loadModel: the model folder must be a path string, got ${dir === null ? 'null' : typeof dir}`);
    // loadModel(dir, 'cpu') or { devcie: 'cpu' } from an untyped caller would otherwise run with every default
    // (device 'auto': a GPU).
    checkOptions('loadModel', opts, LOAD_MODEL_OPTIONS);
    if (typeof (opts as { threads?: unknown }).threads === 'string') throw new LangneuronsError('E_OPTIONS', `threads must be an integer in [1, 1024], got the string '${String(opts.threads)}'`, { field: 'threads' });
    const threads = opts.threads ?? os.availableParallelism();
    if (!Number.isInteger(threads) || threads < 1 || threads > 1024)
      throw new LangneuronsError('E_OPTIONS', `threads must be an integer in [1, 1024], got ${threads}`, { field: 'threads' });
    const addon = loadAddon();
    const device = resolveDevice(opts.device ?? 'auto', addon, threads, { quietAuto: opts.device === undefined });
    const compute = opts.compute ?? (device === 'cpu' ? 'f32' : 'bf16');
    if (compute !== 'f32' && compute !== 'bf16')
      throw new LangneuronsError('E_OPTIONS', `compute must be 'f32' or 'bf16', got '${String(compute)}'`, { field: 'compute' });
    const ckpt = await openCheckpoint(dir);
    // The tokenizer before the runtime: a tokenizer that fails to load must not leave the weights mapped (on a GPU,
    // uploaded) until the garbage collector happens to free a model nobody holds.
    const wantTok = opts.tokenizer ?? true;
    const tok = wantTok && existsSync(path.join(dir, 'tokenizer.json')) ? await loadTokenizer(dir, ckpt.config) : null;
    let native: NativeModel;
    try {
      native = new addon.NativeModel(buildNativeSpec(ckpt, threads, compute, device));
    } catch (e) {
      const onGpu = device !== 'cpu';
      throw new LangneuronsError(onGpu ? 'E_DEVICE' : 'E_CHECKPOINT', `${dir}: ${onGpu ? `${device}: ` : ''}${(e as Error).message}`, { file: dir, cause: e });
    }
    return new LanguageModel(dir, ckpt, native, tok, compute, threads, device);
  }

  requireTokenizer(): LoadedTokenizer {
    if (!this.tokenizer && existsSync(path.join(this.dir, 'tokenizer.json')))
      throw new LangneuronsError('E_TOKENIZER', `${this.dir}: the model was loaded with { tokenizer: false }; text needs its tokenizer (token ids work without)`, { field: 'tokenizer' });
    if (!this.tokenizer)
      throw new LangneuronsError('E_TOKENIZER', `${path.join(this.dir, 'tokenizer.json')}: no tokenizer in the model folder; text commands need one (token ids work without)`, { file: path.join(this.dir, 'tokenizer.json') });
    return this.tokenizer;
  }

  createCache(slots: number, capacity = this.contextLength): KvCache {
    if (this.disposed) throw new LangneuronsError('E_INPUT', `createCache: the model ${this.dir} was disposed`);
    const addon = loadAddon();
    try {
      return new KvCache(new addon.NativeKvCache(this.native, slots, capacity), slots, capacity, this);
    } catch (e) {
      throw asInputError(e, 'E_OPTIONS');
    }
  }

  /** An accumulator of per-unit activation statistics for this model's forwards (see src/engine/stats.ts). */
  createStats(opts: StatsOptions = {}): StatsAccumulator {
    if (this.disposed) throw new LangneuronsError('E_INPUT', `createStats: the model ${this.dir} was disposed`);
    const sites = opts.sites ?? ['act'];
    const layers = opts.layers ?? this.config.numLayers;
    for (const s of sites)
      if (!SITES.includes(s)) throw new LangneuronsError('E_OPTIONS', `createStats: unknown site '${String(s)}' (sites: ${SITES.join(', ')})`, { field: 'sites' });
    for (const [site, t] of Object.entries(opts.thresholds ?? {})) {
      const bad = t ? t.findIndex((x) => !Number.isFinite(x)) : -1;
      if (bad >= 0) throw new LangneuronsError('E_OPTIONS', `createStats: thresholds.${site}[${bad}] is ${t![bad]}; thresholds must be finite numbers`, { field: 'thresholds' });
    }
    const addon = loadAddon();
    let native;
    try {
      native = new addon.NativeStats(this.native, {
        sites: [...sites],
        layers,
        ...(opts.histEdges ? { histEdges: Float64Array.from(opts.histEdges) } : {}),
        ...(opts.thresholds ? { thresholds: opts.thresholds as Record<string, Float32Array> } : {}),
        ...(opts.seqMeans !== undefined ? { seqMeans: opts.seqMeans } : {}),
      });
    } catch (e) {
      throw new LangneuronsError('E_OPTIONS', `createStats: ${(e as Error).message}`, { cause: e });
    }
    return new StatsAccumulator(native, this, sites, layers, { ...opts.thresholds }, opts.thresholdSource ?? '');
  }

  /** Runs the model over a batch of token sequences, packed without padding. */
  forward(batch: ArrayLike<number>[], options: ForwardOptions | null = {}): Promise<ForwardOutput> {
    const opts = options ?? {};
    // forward(batch, 'all') or { logit: 'all' } from an untyped caller would otherwise return the default 'last' rows
    // as if they were all.
    try {
      checkOptions('forward', opts, FORWARD_OPTIONS);
    } catch (e) {
      return Promise.reject(e);
    }
    // Refused when asked for after dispose(); forwards queued before it still run (dispose waits for them).
    if (this.disposed) return Promise.reject(new LangneuronsError('E_INPUT', `forward: the model ${this.dir} was disposed`));
    if (opts.cache?.isDisposed) return Promise.reject(new LangneuronsError('E_INPUT', 'forward: the cache was disposed'));
    // A cache disposed while this forward waits in the queue is freed when the forward ends (KvCache.dispose).
    const release = opts.cache?.hold();
    const run = () => this.forwardNow(batch, opts);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    if (release) p.then(release, release);
    return p;
  }

  private async forwardNow(batch: ArrayLike<number>[], opts: ForwardOptions): Promise<ForwardOutput> {
    if (!Array.isArray(batch)) throw new LangneuronsError('E_INPUT', 'forward: the batch must be a list of sequences of token ids');
    const flat = batch.findIndex((s) => s === null || typeof s !== 'object' || typeof (s as ArrayLike<number>).length !== 'number');
    if (flat >= 0) throw new LangneuronsError('E_INPUT', `forward: sequence ${flat} is not a list of token ids (a batch is a list of sequences: [[1, 2, 3]], not [1, 2, 3])`);
    if (batch.length === 0) throw new LangneuronsError('E_INPUT', 'forward: the batch has no sequences');
    const seqLens = new Int32Array(batch.length);
    const seqOffsets: number[] = [];
    let total = 0;
    batch.forEach((s, i) => {
      if (s.length === 0) throw new LangneuronsError('E_INPUT', `forward: sequence ${i} is empty`);
      seqOffsets.push(total);
      seqLens[i] = s.length;
      total += s.length;
    });
    const tokens = new Int32Array(total);
    batch.forEach((s, i) => {
      for (let t = 0; t < s.length; t++) {
        const id = s[t]!;
        if (!Number.isInteger(id))
          throw new LangneuronsError('E_INPUT', `forward: token ${showId(id)} at position ${t} of sequence ${i} is not an integer token id (ids are integers in [0, ${this.vocabSize}))`);
        if (id < 0 || id >= this.vocabSize)
          throw new LangneuronsError('E_INPUT', `forward: token ${id} at position ${t} of sequence ${i} is outside the vocabulary [0, ${this.vocabSize})`);
        tokens[seqOffsets[i]! + t] = id;
      }
    });
    let targets: Int32Array | undefined;
    if (opts.targets) {
      if (opts.targets.length !== batch.length)
        throw new LangneuronsError('E_INPUT', `forward: targets has ${opts.targets.length} sequences, the batch ${batch.length}`);
      targets = new Int32Array(total);
      opts.targets.forEach((ts, i) => {
        if (ts.length !== batch[i]!.length)
          throw new LangneuronsError('E_INPUT', `forward: targets of sequence ${i} has ${ts.length} entries, expected ${batch[i]!.length}`);
        for (let t = 0; t < ts.length; t++) {
          const id = ts[t]!;
          if (!Number.isInteger(id) || id < -1 || id >= this.vocabSize)
            throw new LangneuronsError('E_INPUT', `forward: target ${showId(id)} at position ${t} of sequence ${i} must be a token id in [0, ${this.vocabSize}) or -1 (no target)`);
          targets![seqOffsets[i]! + t] = id;
        }
      });
    }
    const cache = opts.cache;
    if (cache && cache.owner !== this) throw new LangneuronsError('E_INPUT', 'forward: the cache belongs to another model');
    // As countMask without stats: slots without a cache would run a fresh forward that continues nothing.
    if (opts.cacheSlots && !cache) throw new LangneuronsError('E_INPUT', 'forward: cacheSlots needs a cache', { field: 'cacheSlots' });
    const slots = cache ? Array.from(opts.cacheSlots ?? batch.map((_, i) => i)) : [];
    if (cache) {
      if (slots.length !== batch.length)
        throw new LangneuronsError('E_INPUT', `forward: cacheSlots needs one slot per sequence (${batch.length}), got ${slots.length}`, { field: 'cacheSlots' });
      slots.forEach((slot, i) => {
        if (!Number.isInteger(slot) || slot < 0 || slot >= cache.slots)
          throw new LangneuronsError('E_INPUT', `forward: ${opts.cacheSlots ? `cacheSlots[${i}] is ${slot}` : `sequence ${i} would use slot ${i}`}; the cache has ${cache.slots} slots (0 to ${cache.slots - 1})`, { field: 'cacheSlots' });
      });
    }
    // Full attention is exact only up to a sliding window (Mistral v0.1): refuse longer sequences. (The cache's
    // native length: a cache disposed while this forward waited is freed only when it ends.)
    const cachedBefore = slots.map((slot) => cache!.native.length(slot));
    batch.forEach((s, i) => assertSequenceFits(this.config, (cache ? cachedBefore[i]! : 0) + s.length));
    const mode = opts.logits ?? (opts.lastLayer !== undefined && opts.lastLayer >= 0 ? 'none' : 'last');
    if (!Object.hasOwn(LOGITS_CODE, mode))
      throw new LangneuronsError('E_OPTIONS', `forward: logits must be one of ${Object.keys(LOGITS_CODE).join(', ')}, got '${String(mode)}'`, { field: 'logits' });
    // The engine's refusals, thrown at once (option checks) or when the work ends, as LangneuronsError.
    const res = await (async () => this.native.forward(tokens, seqLens, {
      logits: LOGITS_CODE[mode],
      ...(targets ? { targets } : {}),
      ...this.penaltyOptions(batch, mode, opts),
      ...(cache ? { cache: cache.native, cacheSlots: Int32Array.from(slots) } : {}),
      ...this.profilingOptions(batch, seqOffsets, total, opts),
      ...this.interventionOptions(batch, seqOffsets, total, opts),
    }))().catch((e: unknown) => { throw asInputError(e, 'E_INPUT'); });
    const rows = mode === 'all' ? total : mode === 'last' || mode === 'lastHidden' ? batch.length : 0;
    try {
      this.checkFinite(res, mode, batch, seqOffsets, opts);
    } catch (e) {
      // A non-finite forward leaves the cache as it was, as a refused one does: its keys and values are no context.
      if (cache && !cache.isDisposed) slots.forEach((slot, i) => cache.native.setLength(slot, cachedBefore[i]!));
      throw e;
    }
    return { logits: res.logits, rows, vocab: mode === 'lastHidden' ? this.config.hiddenSize : this.vocabSize, seqOffsets, targetLogprobs: res.targetLogprobs,
      capture: res.capture ?? null, next: res.next ? { tokens: res.next.tokens, logits: res.next.logits } : null };
  }

  private checkFinite(res: Awaited<ReturnType<NativeModel['forward']>>, mode: LogitsMode, batch: ArrayLike<number>[], seqOffsets: number[], opts: ForwardOptions): void {
    if (mode === 'greedy')
      checkFiniteNext({ next: res.next!, vocab: this.vocabSize, targetLogprobs: res.targetLogprobs ?? null, intervened: !!opts.intervene, model: path.basename(this.checkpoint.dir) });
    else
      checkFiniteOutput({
        logits: res.logits, vocab: mode === 'lastHidden' ? this.config.hiddenSize : this.vocabSize, sequences: batch.length,
        targetLogprobs: res.targetLogprobs ?? null, unit: mode === 'lastHidden' ? 'hidden value' : 'logit',
        rowOf: (i) => (mode === 'all' ? seqOffsets[i]! + batch[i]!.length - 1 : mode === 'last' || mode === 'lastHidden' ? i : -1),
        intervened: !!opts.intervene, model: path.basename(this.checkpoint.dir),
      });
  }

  /** repetitionPenalty / penaltyTokens of logits 'greedy', as the native ids + offsets (ranges checked again there). */
  private penaltyOptions(batch: ArrayLike<number>[], mode: LogitsMode, opts: ForwardOptions): Partial<NativeForwardOptions> {
    const p = opts.repetitionPenalty ?? 1;
    if (opts.repetitionPenalty === undefined && !opts.penaltyTokens) return {};
    if (mode !== 'greedy') throw new LangneuronsError('E_OPTIONS', `forward: repetitionPenalty and penaltyTokens need logits 'greedy', got '${mode}'`, { field: 'repetitionPenalty' });
    if (!(p > 0 && Number.isFinite(p))) throw new LangneuronsError('E_OPTIONS', `forward: repetitionPenalty must be a finite number > 0, got ${String(opts.repetitionPenalty)}`, { field: 'repetitionPenalty' });
    if (p === 1 || !opts.penaltyTokens) return {};
    if (opts.penaltyTokens.length !== batch.length)
      throw new LangneuronsError('E_INPUT', `forward: penaltyTokens has ${opts.penaltyTokens.length} sequences, the batch ${batch.length}`);
    const offsets = new Int32Array(batch.length + 1);
    opts.penaltyTokens.forEach((ts, i) => { offsets[i + 1] = offsets[i]! + ts.length; });
    const ids = new Int32Array(offsets[batch.length]!);
    opts.penaltyTokens.forEach((ts, i) => {
      for (let t = 0; t < ts.length; t++) {
        const id = ts[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
          throw new LangneuronsError('E_INPUT', `forward: penalty token ${id} of sequence ${i} is outside the vocabulary [0, ${this.vocabSize})`);
        ids[offsets[i]! + t] = id;
      }
    });
    return { repetitionPenalty: p, penaltyIds: ids, penaltyOffsets: offsets };
  }

  /** stats / countMask / lastLayer / capture for the native forward; the native side checks the ranges again. */
  private profilingOptions(batch: ArrayLike<number>[], seqOffsets: number[], total: number, opts: ForwardOptions): Partial<NativeForwardOptions> {
    const out: Partial<NativeForwardOptions> = {};
    if (opts.stats) {
      if (opts.stats.owner !== this) throw new LangneuronsError('E_INPUT', 'forward: the stats accumulator belongs to another model');
      out.stats = opts.stats.native;
    }
    if (opts.countMask) {
      if (!opts.stats) throw new LangneuronsError('E_INPUT', 'forward: countMask needs stats');
      if (opts.countMask.length !== batch.length)
        throw new LangneuronsError('E_INPUT', `forward: countMask has ${opts.countMask.length} sequences, the batch ${batch.length}`);
      const mask = new Uint8Array(total);
      opts.countMask.forEach((m, i) => {
        if (m.length !== batch[i]!.length)
          throw new LangneuronsError('E_INPUT', `forward: countMask of sequence ${i} has ${m.length} entries, expected ${batch[i]!.length}`);
        for (let t = 0; t < m.length; t++) mask[seqOffsets[i]! + t] = m[t] ? 1 : 0;
      });
      out.countMask = mask;
    }
    if (opts.lastLayer !== undefined) {
      const L = this.config.numLayers;
      if (!Number.isInteger(opts.lastLayer) || opts.lastLayer < -1 || opts.lastLayer >= L)
        throw new LangneuronsError('E_INPUT', `forward: lastLayer must be an integer in [-1, ${L - 1}], got ${opts.lastLayer}`);
      out.lastLayer = opts.lastLayer;
    }
    if (opts.capture) out.capture = { site: opts.capture.site, layer: opts.capture.layer };
    return out;
  }

  /** intervention / interveneMask for the native forward: position classes only when a spec needs them. */
  private interventionOptions(batch: ArrayLike<number>[], seqOffsets: number[], total: number, opts: ForwardOptions): Partial<NativeForwardOptions> {
    const iv = opts.intervene;
    if (!iv) {
      if (opts.generatedFrom) throw new LangneuronsError('E_INPUT', 'forward: generatedFrom needs an intervention');
      return {};
    }
    if (iv.owner !== this) throw new LangneuronsError('E_INPUT', 'forward: the intervention was resolved for another model');
    // Checked whether or not this intervention uses position classes: the same call is valid or not by itself.
    if (opts.generatedFrom && opts.generatedFrom.length !== batch.length)
      throw new LangneuronsError('E_INPUT', `forward: generatedFrom has ${opts.generatedFrom.length} entries, the batch ${batch.length}`);
    const froms = batch.map((s, i) => {
      const from = opts.generatedFrom?.[i] ?? s.length;
      if (!Number.isInteger(from) || from < 0 || from > s.length)
        throw new LangneuronsError('E_INPUT', `forward: generatedFrom[${i}] must be an integer in [0, ${s.length}], got ${from}`);
      return from;
    });
    if (!iv.needsClasses) return { intervention: iv.native };
    const mask = new Uint8Array(total).fill(PROMPT_CLASS);
    batch.forEach((s, i) => mask.fill(GENERATED_CLASS, seqOffsets[i]! + froms[i]!, seqOffsets[i]! + s.length));
    return { intervention: iv.native, interveneMask: mask };
  }

  info(): ReturnType<NativeModel['info']> {
    if (this.disposed) throw new LangneuronsError('E_INPUT', `info: the model ${this.dir} was disposed`);
    return this.native.info();
  }

  /**
   * The kind of engine whose products this model's results hold, for the keys of resumable runs: the CPU's kernel
   * family (AVX2 and AVX-512 products differ in the last bits), or the GPU runtime's describe (GPU model, compute
   * mode, cuBLASLt version) without the device's index: any of a machine's GPUs of one model gives the same products.
   */
  engineKind(): string {
    const info = this.info();
    return this.device === 'cpu' ? info.kernel : info.describe.replace(/^cuda:\d+ /, '');
  }

  /** Frees the native runtime (GPU memory, scratch) and unmaps the checkpoint, after the forwards already
   *  queued have run; later forwards are refused. Idempotent. Also `await using model = await loadModel(…)`. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    this.native.dispose();
  }

  get isDisposed(): boolean { return this.disposed; }

  async [Symbol.asyncDispose](): Promise<void> { await this.dispose(); }
}

export function loadModel(dir: string, opts: LoadModelOptions | null = {}): Promise<LanguageModel> {
  return LanguageModel.load(dir, opts);
}
