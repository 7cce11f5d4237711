// The fine-tuning loop: data packed into fixed-length chunks, AdamW with warm-up and a schedule, gradient
// accumulation and clipping, validation every N steps with the best weights kept, a JSON-lines training log,
// and run directories that resume exactly (`resume(runDir)`).
//
// Run directory:
//   run.json          what the run is (model + fingerprint, method, options with the device and compute mode the
//                     run trains on, data hashes, the trainer's memory report at the start); written once
//   train.jsonl       one line per step {step, loss, lr, gradNorm, tokensPerSecond, ...} and per validation
//   state/            state.safetensors (master weights + Adam moments of every trainable tensor, the counters in its
//                     metadata: one file, one atomic save; src/train/state.ts) + state.json (a readable copy)
//   .langneurons.lock the pid of the run writing the folder (src/io/lock.ts)
//   best/             delta (or adapter/, head/) of the best validation loss (with --valid)
//   delta.safetensors + delta.json   the trained rows / columns / tensors (final, or best with --valid)
//   adapter/          instead of the delta for lora / neuron-lora: a PEFT LoRA adapter (src/train/adapter.ts)
//   head/             with --head classification: score.weight + head.json (src/train/head.ts)
//   model/            the full Hugging Face checkpoint (base + delta, or base + merged adapter)
//
// With --head classification the data are JSONL items (text fields + an integer label), a micro-batch is --batch
// items, and the loss is the head's cross-entropy on each item's last position (src/train/head.ts).
// JSONL of {"prompt", "completion"} or {"messages"} records: one sequence per record, the loss on the completion
// (assistant) tokens only (src/train/sft.ts).
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { appendToFile } from '../io/files.js';
import { readTextFile } from '../io/text.js';
import { LOCK_FILE } from '../io/lock.js';
import { readMask } from '../identify/masks.js';
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { modelIdentity } from '../profile/identity.js';
import { applyAdapter, writeAdapter } from './adapter.js';
import { applyDelta, sha256, writeDelta } from './delta.js';
import { loadClsItems, packItems, pairJoin, PAIR_FORMATS, writeHead, type ClsItem, type HeadSettings, type PairFormat } from './head.js';
import {
  isLoraMethod, LORA_DEFAULTS, METHOD_DEFAULTS, METHODS, MONDAL_HEAD_PRESET, parseLoraTargets, rng, selectTrainable,
  type FinetuneMethod, type LoraSettings,
} from './methods.js';
import { createNativeTrainer, type NativeTrainer, type NativeTrainerMemory } from './native.js';
import { checkTrainerPlacement, resumePlacement, resolvePlacement, trainerDeviceOptions, type Placement, type PlacementRequest } from './placement.js';
import { claimRunDir, copyRunFiles, FINETUNE_RUN_FORMAT, keptLogLines } from './run-dir.js';
import { mergeDtype, roundingWarning, type MergeDtype } from './merge-precision.js';
export { mergeDtype } from './merge-precision.js';
import { loadState, saveState, type StateCounters } from './state.js';
import { loadSftExamples } from './sft.js';

export const RUN_FORMAT = FINETUNE_RUN_FORMAT;
export type Schedule = 'constant' | 'linear' | 'cosine';

export interface FinetuneOptions {
  method: FinetuneMethod;
  masks?: string;
  langs?: string[];
  train: string;
  valid?: string;
  lr?: number;
  weightDecay?: number;
  clip?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Tokens per chunk (default 512, or the model's context where that is shorter). */
  chunk?: number;
  /** Chunks per micro-batch (default 2). */
  batch?: number;
  /** Micro-batches per optimizer step (default 1). */
  accum?: number;
  /** Optimizer steps (default: one epoch: each chunk or item once, the last step holding those left). */
  steps?: number;
  warmup?: number;
  schedule?: Schedule;
  /** Validation every N steps (default 500; 0: only at the end). */
  evalEvery?: number;
  /** Save the resumable state every N steps (default: evalEvery, or 100). */
  saveEvery?: number;
  seed?: number;
  threads?: number;
  /** Write the full checkpoint (default true). */
  writeModel?: boolean;
  /** The checkpoint's trained tensors in their stored dtype (default) or float32, which keeps changes below a
   *  BF16/F16 step (merge-precision.ts); the delta is float32 either way. */
  saveDtype?: MergeDtype;
  /** Warm-up as a fraction of the steps (rounded down, as Mondal et al.'s int(0.01 * steps)) when --warmup is 0. */
  warmupRatio?: number;
  /**
   * How the learning rate ramps up: 'hf' (default) as transformers' schedulers, lr · s / warmup at 0-based step s (the
   * first step at 0); 'from-step-1', lr · (s + 1) / warmup (the first step already moves), `train`'s recipe.
   */
  warmupRamp?: WarmupRamp;
  /** LoRA rank / alpha / dropout / PEFT target modules (methods lora, neuron-lora; defaults per method). */
  loraR?: number;
  loraAlpha?: number;
  loraDropout?: number;
  /** LoRA A's init: 0, PEFT's kaiming-uniform (lora's default); > 0, normal(0, std) (neuron-lora's default 0.01, Mondal et al.). */
  loraInitStd?: number;
  loraTargets?: string[];
  /** Zero the Adam moments and step count whenever a new best checkpoint is saved (Gurgurov et al.'s reference
   *  re-creates its optimizer after saving a better model); default off. */
  resetOptimizerOnSave?: boolean;
  /** A linear classification head on the last position, trained along the method (data: JSONL items). */
  head?: 'classification';
  numLabels?: number;
  /** JSONL text fields of an item (default premise, hypothesis) and its label field (default label). */
  textFields?: string[];
  labelField?: string;
  /** How the text fields become one sequence (head.ts PairFormat; default 'pair'). */
  pairFormat?: PairFormat;
  /** The head has a bias (score.bias, initialised to 0); default off (transformers' LlamaForSequenceClassification has
   *  none), on in Mondal et al.'s neuron-lora preset (their head is a torch.nn.Linear). */
  headBias?: boolean;
  /** Where to train: 'auto' (default: a usable GPU, else the CPU), 'cpu', 'cuda', 'cuda:N' (src/engine/device.ts). */
  device?: string;
  /** CUDA only: 'bf16' (default: bf16 weights and activations, float32 master copies and optimizer state) or 'f32'. */
  compute?: 'f32' | 'bf16';
  /** CUDA only: activation recomputation (one layer's activations held instead of every layer's, one more forward a
   * step, the same results bit for bit; NativeTrainerOptions.recompute). */
  recompute?: boolean;
}

type NewFields = 'loraR' | 'loraAlpha' | 'loraDropout' | 'loraInitStd' | 'loraTargets' | 'head' | 'numLabels' | 'textFields' | 'labelField' | 'pairFormat' | 'headBias' |
  'warmupRatio' | 'warmupRamp' | 'resetOptimizerOnSave' | 'device' | 'compute' | 'recompute' | 'saveDtype';
/** What run.json records. Fields added after the first release are optional: older run folders lack them. */
interface ResolvedOptions extends Required<Omit<FinetuneOptions, 'masks' | 'langs' | 'valid' | 'steps' | NewFields>> {
  masks: string | null; langs: string[]; valid: string | null; steps: number;
  warmupRatio?: number; lora?: LoraSettings | null; head?: HeadSettings | null;
  /** Absent in runs from before it was recorded: those ramped 'from-step-1' and rounded warmupRatio up. */
  warmupRamp?: WarmupRamp;
  /** Runs from before the reset followed best saves only: a reset at every state save (kept so that they resume alike). */
  resetOptimizerOnSave?: boolean;
  /** Reset the optimizer whenever a new best checkpoint is saved (--reset-optimizer-on-save). */
  resetOptimizerOnBest?: boolean;
  /** Where the run trains (absent in runs from before it was recorded: those trained on the CPU, in f32); `kernel`: the
   *  CPU trainer's kernel family (absent on a GPU and in runs from before it was recorded). */
  device?: Placement['device']; compute?: Placement['compute']; kernel?: string;
  /** Activation recomputation on the GPU (absent: off). */
  recompute?: boolean;
  /** One epoch (steps 0) ends with a partial step holding the examples left, as transformers' Trainer does (a
   *  smaller last micro-batch, fewer micro-batches): each example once. Absent in runs from before it was recorded:
   *  their last step filled up with the next epoch's first examples (kept so that they resume alike). */
  epochTail?: boolean;
  /** The written checkpoint's dtype for trained tensors (absent: stored). */
  saveDtype?: MergeDtype;
}

interface RunFile {
  format: typeof RUN_FORMAT;
  /** weights: modelFingerprint (content, src/model/fingerprint.ts); absent in runs started before it was recorded. */
  model: { dir: string; name: string; fingerprint: string; weights?: string };
  options: ResolvedOptions;
  /** trainChunks / validChunks: training examples (chunks of text, or items with a head). */
  /** masksSha256: the mask file's content (absent in runs started before it was recorded). */
  data: { trainSha256: string; validSha256: string | null; trainChunks: number; validChunks: number; masksSha256?: string };
  trainableParameters: number;
  /** The trainer as it started: its one-line description and memory report (bytes by use). */
  trainer?: TrainerReport;
}

/** device / compute: where the run trained; memory: the trainer's report (absent from addons before it had one). */
export interface TrainerReport { device: string; compute: string; describe?: string; memory?: NativeTrainerMemory }

export interface FinetuneResult {
  /** firstLoss / lastLoss: the training loss of the run's first and latest step, resumed runs included. */
  runDir: string; steps: number; firstLoss: number | null; lastLoss: number | null;
  bestValid: number | null; bestStep: number | null; trainableParameters: number;
  /** Where it trained and the trainer's memory after the last step (activations sized by then). */
  trainer: TrainerReport;
  /** The checkpoint written (run/model): the dtypes of its trained tensors, the values training changed, those its
   *  16-bit rounding undid, and a warning when that is more than 10% of them (the reported losses are of the
   *  float32 values, which the delta keeps). */
  written?: { dir: string; dtypes: string[]; changed: number; roundedAway: number; warning: string | null };
}

export interface RunControl {
  /** Stop (as if killed) right after this step's state is saved: for tests of resume. */
  stopAfterStep?: number;
  /** Progress: one entry per step and validation (also written to train.jsonl), and first one
   * { event: 'trainer', device, compute, describe, memory } (not written to train.jsonl). */
  onLog?: (entry: Record<string, unknown>) => void;
}

function optErr(msg: string, field?: string): LangneuronsError {
  return new LangneuronsError('E_OPTIONS', msg, field ? { field } : {});
}

function resolveOptions(o: FinetuneOptions, placement: Placement): ResolvedOptions {
  if (!METHODS.includes(o.method)) throw optErr(`unknown method '${String(o.method)}' (methods: ${METHODS.join(', ')})`, 'method');
  if (o.head !== undefined && o.head !== 'classification') throw optErr(`--head must be 'classification', got '${String(o.head)}'`, 'head');
  // neuron-lora with a head: Mondal et al.'s settings unless given (methods.ts MONDAL_HEAD_PRESET).
  const preset = o.head && o.method === 'neuron-lora' ? MONDAL_HEAD_PRESET : null;
  const d = preset ? { ...METHOD_DEFAULTS[o.method], ...preset } : METHOD_DEFAULTS[o.method];
  const num = (name: string, v: number | undefined, def: number, ok: (x: number) => boolean, want: string): number => {
    const x = v ?? def;
    if (typeof x !== 'number' || !Number.isFinite(x) || !ok(x)) throw optErr(`--${name} must be ${want}, got ${String(v)}`, name);
    return x;
  };
  const int = (name: string, v: number | undefined, def: number, min: number) =>
    num(name, v, def, (x) => Number.isInteger(x) && x >= min, `an integer >= ${min}`);
  const evalEvery = int('eval-every', o.evalEvery, 500, 0);
  const loraGiven = [o.loraR, o.loraAlpha, o.loraDropout, o.loraInitStd, o.loraTargets].some((x) => x !== undefined);
  if (loraGiven && !isLoraMethod(o.method)) throw optErr('--lora-r, --lora-alpha, --lora-dropout, --lora-init-std and --lora-targets apply to methods lora and neuron-lora', 'method');
  let lora: LoraSettings | null = null;
  if (isLoraMethod(o.method)) {
    const ld = LORA_DEFAULTS[o.method as 'lora' | 'neuron-lora'];
    lora = {
      r: int('lora-r', o.loraR, ld.r, 1), alpha: num('lora-alpha', o.loraAlpha, ld.alpha, (x) => x > 0, 'a number > 0'),
      dropout: num('lora-dropout', o.loraDropout, ld.dropout, (x) => x >= 0 && x < 1, 'in [0, 1)'),
      targets: o.loraTargets ? parseLoraTargets(o.loraTargets) : [...ld.targets],
    };
    const initStd = num('lora-init-std', o.loraInitStd, ld.initStd ?? 0, (x) => x === 0 || (x >= 1e-30 && x <= 1e30), "0 (PEFT's kaiming-uniform) or a standard deviation in [1e-30, 1e30]");
    if (initStd > 0) lora.initStd = initStd;
  }
  if (!o.head && (o.numLabels !== undefined || o.textFields !== undefined || o.labelField !== undefined || o.pairFormat !== undefined || o.headBias !== undefined))
    throw optErr('--num-labels, --text-field, --label-field, --pair-format and --head-bias need --head classification', 'head');
  if (o.pairFormat !== undefined && !PAIR_FORMATS.includes(o.pairFormat))
    throw optErr(`--pair-format must be one of ${PAIR_FORMATS.join(', ')}, got '${String(o.pairFormat)}'`, 'pair-format');
  const head: HeadSettings | null = o.head ? {
    numLabels: int('num-labels', o.numLabels, 3, 2),
    textFields: o.textFields?.length ? [...o.textFields] : ['premise', 'hypothesis'], labelField: o.labelField ?? 'label',
    ...(o.pairFormat && o.pairFormat !== 'pair' ? { pairFormat: o.pairFormat } : {}),
    ...((o.headBias ?? preset?.headBias ?? false) ? { bias: true } : {}),
  } : null;
  // Mondal et al.'s head runs decay linearly after the warm-up (get_linear_schedule_with_warmup).
  const schedule = o.schedule ?? (preset ? 'linear' : 'constant');
  const warmupRamp = o.warmupRamp ?? 'hf';
  if (!(WARMUP_RAMPS as readonly string[]).includes(warmupRamp)) throw optErr(`warmupRamp must be ${WARMUP_RAMPS.join(' or ')}, got '${String(warmupRamp)}'`, 'warmupRamp');
  const recompute = o.recompute ?? false;
  if (recompute && placement.device === 'cpu')
    throw optErr('--recompute is for the CUDA trainer (--device cuda); the CPU trainer keeps its activations in host memory', 'recompute');
  if (!['constant', 'linear', 'cosine'].includes(schedule)) throw optErr(`--schedule must be constant, linear or cosine, got '${schedule}'`, 'schedule');
  return {
    method: o.method, masks: o.masks ? path.resolve(o.masks) : null, langs: o.langs ?? [], train: path.resolve(o.train),
    valid: o.valid ? path.resolve(o.valid) : null,
    lr: num('lr', o.lr, d.lr, (x) => x > 0, 'a number > 0'),
    weightDecay: num('weight-decay', o.weightDecay, d.weightDecay, (x) => x >= 0, 'a number >= 0'),
    clip: num('clip', o.clip, d.clip, (x) => x >= 0, 'a number >= 0 (0: no clipping)'),
    beta1: num('beta1', o.beta1, preset?.beta1 ?? 0.9, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    beta2: num('beta2', o.beta2, preset?.beta2 ?? 0.999, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    eps: num('eps', o.eps, 1e-8, (x) => x > 0, 'a number > 0'),
    chunk: int('chunk', o.chunk, preset?.chunk ?? 512, 2), batch: int('batch', o.batch, preset?.batch ?? 2, 1), accum: int('accum', o.accum, preset?.accum ?? 1, 1),
    steps: o.steps === undefined ? 0 : int('steps', o.steps, 0, 1),
    warmup: int('warmup', o.warmup, 0, 0), schedule, evalEvery,
    saveEvery: int('save-every', o.saveEvery, evalEvery || 100, 1), seed: int('seed', o.seed, 0, 0),
    threads: int('threads', o.threads, 2, 1), writeModel: o.writeModel ?? true,
    ...(o.saveDtype !== undefined ? { saveDtype: mergeDtype(o.saveDtype, 'save-dtype') } : {}),
    warmupRatio: num('warmup-ratio', o.warmupRatio, preset?.warmupRatio ?? 0, (x) => x >= 0 && x <= 1, 'in [0, 1]'),
    warmupRamp, lora, head, resetOptimizerOnBest: o.resetOptimizerOnSave ?? false, device: placement.device, compute: placement.compute,
    ...(placement.kernel ? { kernel: placement.kernel } : {}), ...(recompute ? { recompute } : {}),
    ...(o.steps === undefined ? { epochTail: true } : {}),
  };
}


export const WARMUP_RAMPS = ['hf', 'from-step-1'] as const;
export type WarmupRamp = (typeof WARMUP_RAMPS)[number];

/** Warm-up steps: --warmup, else warmupRatio * total rounded down (Mondal's int()); up in runs before warmupRamp. */
function warmupSteps(o: ResolvedOptions, total: number): number {
  if (o.warmup > 0) return o.warmup;
  const steps = (o.warmupRatio ?? 0) * total;
  return o.warmupRamp === 'hf' ? Math.floor(steps) : Math.ceil(steps);
}

/**
 * Learning rate of optimizer step `s` (0-based) of `total`: transformers' get_{constant,linear,cosine}_schedule_with_
 * warmup (lr · s / warmup during the warm-up, then constant, (total − s) / (total − warmup) or the half cosine), or
 * with ramp 'from-step-1' (runs before the ramp was recorded, and `train`) lr · (s + 1) / warmup during the warm-up.
 */
export function learningRate(o: Pick<ResolvedOptions, 'lr' | 'warmup' | 'schedule'> & { ramp?: WarmupRamp }, s: number, total: number): number {
  if (s < o.warmup) return (o.lr * ((o.ramp ?? 'hf') === 'hf' ? s : s + 1)) / o.warmup;
  if (o.schedule === 'constant') return o.lr;
  const p = total > o.warmup ? (s - o.warmup) / (total - o.warmup) : 0;
  return o.schedule === 'linear' ? o.lr * (1 - p) : (o.lr * (1 + Math.cos(Math.PI * p))) / 2;
}

/**
 * The documents of a training text: its non-empty lines, or, for JSON records (a .jsonl file, or one whose first line
 * is a JSON object) that are not prompt/completion or chat records (sft.ts), each record's "text" (as profile and eval
 * read them). Records without one are refused: their braces and keys were trained on as text.
 */
function documentsOf(file: string, text: string, what: string): string[] {
  const lines = text.split(/\r?\n/).map((l, i) => ({ l, i })).filter(({ l }) => l.trim());
  const firstIsRecord = (() => { try { const o: unknown = JSON.parse(lines[0]?.l ?? ''); return typeof o === 'object' && o !== null && !Array.isArray(o); } catch { return false; } })();
  if (!firstIsRecord && !/\.jsonl$/i.test(file)) return lines.map(({ l }) => l);
  return lines.map(({ l, i }) => {
    let o: unknown;
    try { o = JSON.parse(l); } catch (e) { throw new LangneuronsError('E_INPUT', `${file}: line ${i + 1} is not JSON (${(e as Error).message}); the ${what} file holds JSON records`, { file }); }
    const t = typeof o === 'object' && o !== null && !Array.isArray(o) ? (o as Record<string, unknown>)['text'] : undefined;
    if (typeof t !== 'string')
      throw new LangneuronsError('E_INPUT', `${file}: line ${i + 1}: a JSON record with no "text" string (keys: ${typeof o === 'object' && o !== null ? Object.keys(o).join(', ') || 'none' : typeof o}); ` +
        'fine-tuning reads "text" records, prompt/completion records, chat records ("messages") or plain text', { file, field: 'text' });
    return t;
  }).filter((t) => t.trim());
}

/** Text file -> token ids (one document per non-empty line, BOS each) -> chunks of `chunk` tokens. */
async function loadChunks(file: string, tokenize: (s: string) => number[], chunk: number, what: string): Promise<{ chunks: Int32Array[]; sha: string }> {
  const text = await readTextFile(file, what);
  const ids: number[] = [];
  for (const doc of documentsOf(file, text, what)) for (const id of tokenize(doc)) ids.push(id); // (a spread overflows the stack on long lines)
  const chunks: Int32Array[] = [];
  for (let i = 0; i < ids.length; i += chunk) {
    const c = ids.slice(i, i + chunk);
    if (c.length >= 2) chunks.push(Int32Array.from(c));
  }
  if (chunks.length === 0) throw new LangneuronsError('E_INPUT', `${file}: the ${what} file has no text to train on`, { file });
  return { chunks, sha: sha256(text) };
}

/**
 * Packs chunks into one native batch; targets are the next token inside each chunk (the last has none), or the
 * given per-chunk targets (-1: no loss; prompt/completion records).
 */
function pack(chunks: Int32Array[], given?: Int32Array[]): { tokens: Int32Array; targets: Int32Array; lens: Int32Array; count: number } {
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const tokens = new Int32Array(total), targets = new Int32Array(total).fill(-1), lens = new Int32Array(chunks.length);
  let o = 0;
  chunks.forEach((c, i) => {
    tokens.set(c, o);
    if (given) targets.set(given[i]!, o);
    else targets.set(c.subarray(1), o);
    lens[i] = c.length;
    o += c.length;
  });
  let count = 0;
  for (const t of targets) count += t >= 0 ? 1 : 0;
  return { tokens, targets, lens, count };
}

/** Chunk order: a seeded permutation per epoch. */
function chunkAt(g: number, n: number, seed: number, cache: Map<number, Int32Array>): number {
  const epoch = Math.floor(g / n);
  let perm = cache.get(epoch);
  if (!perm) {
    perm = Int32Array.from({ length: n }, (_, i) => i);
    const r = rng(seed * 1000003 + epoch);
    for (let i = n - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); const t = perm[i]!; perm[i] = perm[j]!; perm[j] = t; }
    cache.clear();
    cache.set(epoch, perm);
  }
  return perm[g % n]!;
}

async function validLoss(tr: NativeTrainer, chunks: Int32Array[], targets: Int32Array[] | null, batch: number): Promise<number> {
  let sum = 0, count = 0;
  for (let i = 0; i < chunks.length; i += batch) {
    const b = pack(chunks.slice(i, i + batch), targets?.slice(i, i + batch));
    const r = await tr.forwardBackward(b.tokens, b.targets, b.lens, { backward: false });
    sum += r.lossSum;
    count += r.count;
  }
  return sum / count;
}

/** Mean cross-entropy and accuracy (argmax of the head's logits) of labelled items. */
async function validCls(tr: NativeTrainer, items: ClsItem[], batch: number, numLabels: number): Promise<{ loss: number; accuracy: number }> {
  let sum = 0, correct = 0;
  for (let i = 0; i < items.length; i += batch) {
    const part = items.slice(i, i + batch);
    const b = packItems(part);
    const r = await tr.forwardBackwardCls(b.tokens, b.lens, b.labels, { backward: false });
    sum += r.lossSum;
    part.forEach((it, k) => {
      const z = r.logits.subarray(k * numLabels, (k + 1) * numLabels);
      if (z.indexOf(Math.max(...z)) === it.label) correct++;
    });
  }
  return { loss: sum / items.length, accuracy: correct / items.length };
}

/** LM chunks (with their targets for prompt/completion records), or with a head, labelled items. */
interface Prepared {
  ckpt: Checkpoint; tr: NativeTrainer; run: RunFile; train: Int32Array[]; valid: Int32Array[]; trainItems: ClsItem[]; validItems: ClsItem[];
  trainTargets: Int32Array[] | null; validTargets: Int32Array[] | null;
}

async function prepare(modelDir: string, o: ResolvedOptions, runDir: string, expect?: RunFile, chunkGiven = true): Promise<Prepared> {
  const ckpt = await openCheckpoint(modelDir);
  const id = modelIdentity(ckpt);
  // Chunks (and records, and head items, which --chunk caps) must fit the model's context: the default 512 becomes
  // a smaller model's context (recorded in run.json); a --chunk beyond it is refused before anything is written.
  const context = ckpt.config.maxPositions;
  if (o.chunk > context) {
    if (chunkGiven) throw new LangneuronsError('E_OPTIONS', `--chunk ${o.chunk} is longer than the context of ${modelDir} (${context} tokens)`, { field: 'chunk' });
    o.chunk = context;
  }
  if (expect && expect.model.fingerprint !== id.fingerprint)
    throw new LangneuronsError('E_RESUME', `${runDir}: the run was made with ${expect.model.name} (${expect.model.fingerprint.slice(0, 12)}), the model at ${modelDir} is ${id.name} (${id.fingerprint.slice(0, 12)})`);
  // Same layout is not enough: weights replaced under the same path would mix two models in one run.
  const weights = await modelFingerprint(modelDir);
  if (expect?.model.weights && expect.model.weights !== weights)
    throw new LangneuronsError('E_RESUME', `${runDir}: the weights at ${modelDir} changed since the run started (fingerprint ${expect.model.weights.slice(0, 12)} -> ${weights.slice(0, 12)}); cannot resume exactly`);
  const tok = await loadTokenizer(modelDir, ckpt.config);
  const encode = (s: string) => tok.encode(s);
  const head = o.head ?? null;
  // Chunks of text, prompt/completion or chat records (one sequence each, chunk = the longest), or labelled items
  // (chunk = the longest item) with a head.
  const loadLm = async (file: string, what: string) => {
    const sft = await loadSftExamples(file, tok, modelDir, o.chunk, what);
    return sft ? { chunks: sft.examples.map((e) => e.ids), targets: sft.examples.map((e) => e.targets), sha: sft.sha }
      : { ...(await loadChunks(file, encode, o.chunk, what)), targets: null };
  };
  const load = async (file: string, what: string) => head
    ? (({ items, sha }) => ({ chunks: [] as Int32Array[], targets: null, items, sha }))(await loadClsItems(file, encode, head, o.chunk, what, pairJoin(head.pairFormat, tok)))
    : { ...(await loadLm(file, what)), items: [] as ClsItem[] };
  const train = await load(o.train, 'training');
  const valid = o.valid ? await load(o.valid, 'validation') : null;
  if (expect && (expect.data.trainSha256 !== train.sha || expect.data.validSha256 !== (valid?.sha ?? null)))
    throw new LangneuronsError('E_RESUME', `${runDir}: the training or validation text changed since the run started; cannot resume exactly`);
  const mask = o.masks ? await readMask(o.masks) : undefined;
  // The mask decides which values train: a resume on another mask would continue other neurons' optimizer state.
  const masksSha256 = o.masks ? sha256(readFileSync(o.masks)) : undefined;
  if (expect?.data.masksSha256 !== undefined && expect.data.masksSha256 !== masksSha256)
    throw new LangneuronsError('E_RESUME', `${runDir}: the mask ${o.masks} changed since the run started; cannot resume exactly`, { file: o.masks ?? runDir });
  const sel = selectTrainable(o.method, ckpt, { ...(mask ? { mask, maskFile: o.masks! } : {}), langs: o.langs, seed: o.seed, ...(o.lora ? { lora: o.lora } : {}) });
  const placement = placementOf(o);
  const tr = createNativeTrainer(ckpt, o.threads, sel.trainable, { seed: o.seed, numLabels: head?.numLabels ?? 0, headBias: head?.bias ?? false, ...trainerDeviceOptions(placement),
    ...(o.recompute ? { recompute: true } : {}) });
  checkTrainerPlacement(tr, placement);
  if (expect) checkSameGpuTrainer(runDir, expect.trainer?.describe, tr.info().describe, placement);
  const count = (x: { chunks: Int32Array[]; items: ClsItem[] } | null) => (head ? x?.items.length : x?.chunks.length) ?? 0;
  const run: RunFile = {
    format: RUN_FORMAT, model: { dir: path.resolve(modelDir), name: id.name, fingerprint: id.fingerprint, weights }, options: o,
    data: { trainSha256: train.sha, validSha256: valid?.sha ?? null, trainChunks: count(train), validChunks: count(valid), ...(masksSha256 ? { masksSha256 } : {}) },
    trainableParameters: tr.info().trainable, trainer: trainerReport(tr, placement),
  };
  return { ckpt, tr, run, train: train.chunks, valid: valid?.chunks ?? [], trainItems: train.items, validItems: valid?.items ?? [],
    trainTargets: train.targets, validTargets: valid?.targets ?? null };
}

/**
 * A GPU run resumes bit-identically only on the GPU model and cuBLASLt version it started with (NVIDIA promises equal
 * bits within one cuBLASLt version; the library is found at run time). The trainer's description names both, so a
 * requeued job that lands on another GPU model, or finds another cuBLASLt, is refused before the run folder changes.
 */
function checkSameGpuTrainer(runDir: string, recorded: string | undefined, here: string | undefined, p: Placement): void {
  if (p.device === 'cpu' || !recorded || !here || recorded === here) return;
  throw new LangneuronsError('E_RESUME', `${runDir}: the run trained on "${recorded}", this machine's trainer is "${here}": a run resumes ` +
    'bit-identically only on the GPU model and cuBLASLt version it started with (LANGNEURONS_CUBLASLT or LD_LIBRARY_PATH choose the library)', { file: path.join(runDir, 'run.json') });
}

/** Where a run trains (runs from before it was recorded trained on the CPU, in f32). */
const placementOf = (o: ResolvedOptions): Placement => ({ device: o.device ?? 'cpu', compute: o.compute ?? 'f32', ...(o.kernel ? { kernel: o.kernel } : {}) });

function trainerReport(tr: NativeTrainer, p: Placement): TrainerReport {
  const info = tr.info();
  return { device: p.device, compute: p.compute, ...(info.describe ? { describe: info.describe } : {}), ...(info.memory ? { memory: info.memory } : {}) };
}

/** The trained weights of the run in dir: the delta (or, for LoRA methods, adapter/), and head/ with a head. */
async function writeWeights(dir: string, p: Prepared, step: number): Promise<void> {
  const o = p.run.options;
  if (o.lora) await writeAdapter(path.join(dir, 'adapter'), p.tr, p.ckpt, o.lora);
  else await writeDelta(dir, p.tr, p.ckpt, o.method, step, p.run.model.weights);
  if (o.head) await writeHead(path.join(dir, 'head'), p.tr, p.ckpt, o.head, o.chunk, o.method, step);
}

/** Copies the weights written by writeWeights from one folder to another (best/ -> the run folder). */
async function copyWeights(from: string, to: string, o: ResolvedOptions): Promise<void> {
  const files = o.lora ? ['adapter/adapter_config.json', 'adapter/adapter_model.safetensors'] : ['delta.safetensors', 'delta.json'];
  if (o.head) files.push('head/head.json', 'head/head.safetensors');
  await copyRunFiles(from, to, files);
}

/** Starts a new run in runDir (refused when runDir already holds a run). */
/**
 * Starts a new run in runDir: refused when runDir holds a run with a save (continue it with resume) or files
 * that are not a run's; a run folder without any save (killed or failed before its first) is taken over.
 */
export async function finetune(modelDir: string, opts: FinetuneOptions, runDir: string, ctl: RunControl = {}): Promise<FinetuneResult> {
  const o = resolveOptions(opts, resolvePlacement({ device: opts.device, compute: opts.compute }, opts.threads ?? 2));
  const existed = existsSync(runDir);
  const claim = await claimRunDir(runDir, 'finetune');
  let started = false;
  try {
    const p = await prepare(modelDir, o, runDir, undefined, opts.chunk !== undefined);
    await writeFileAtomic(path.join(runDir, 'run.json'), JSON.stringify(p.run, null, 2) + '\n');
    started = true;
    await writeFileAtomic(path.join(runDir, 'train.jsonl'), '');
    return await loop(p, runDir, { step: 0, bestValid: null, bestStep: null, tokens: 0 }, ctl);
  } finally {
    await claim.release();
    // Refused before it started (a missing file, a bad mask): the folder this call created goes too (rmdir: only if empty).
    if (!started && !existed) await fsp.rmdir(runDir).catch(() => undefined);
  }
}

/**
 * Continues the run in runDir from its last saved state, on the device and compute mode it started with (`where`:
 * a --device / --compute given again must resolve to those; anything else is refused).
 */
export async function resume(runDir: string, ctl: RunControl = {}, where: PlacementRequest = {}): Promise<FinetuneResult> {
  const rf = path.join(runDir, 'run.json');
  let run: RunFile;
  try {
    run = JSON.parse(readFileSync(rf, 'utf8')) as RunFile;
  } catch (e) {
    // A folder holding at most the output lock: a run stopped before it wrote run.json (while reading its data).
    const started = existsSync(runDir) && readdirSync(runDir).some((f) => f !== LOCK_FILE);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && existsSync(runDir) && !started)
      throw new LangneuronsError('E_RESUME', `${runDir}: the run was stopped before it started (no run.json): start it again with the same finetune <model-dir> … --out ${runDir}`, { file: rf });
    throw new LangneuronsError('E_RESUME', `${rf}: not a fine-tuning run directory (${(e as Error).message})`, { file: rf });
  }
  if (run.format !== RUN_FORMAT) throw new LangneuronsError('E_RESUME', `${rf}: not a ${RUN_FORMAT} run`, { file: rf });
  const { device, compute, kernel } = run.options;
  const placement = resumePlacement(runDir, { ...(device ? { device } : {}), ...(compute ? { compute } : {}), ...(kernel ? { kernel } : {}) }, where, run.options.threads);
  run.options = { ...run.options, ...placement };
  const claim = await claimRunDir(runDir, 'finetune --resume', { resume: true });
  try {
    const p = await prepare(run.model.dir, run.options, runDir, run);
    // No save yet (killed or failed before the first): the run starts over from step 0.
    const st: StateCounters = (await loadState(path.join(runDir, 'state'), p.tr, p.ckpt.config.modelType)) ?? { step: 0, bestValid: null, bestStep: null, tokens: 0 };
    if (st.step === 0) await fsp.rm(path.join(runDir, 'best'), { recursive: true, force: true });
    // Drop log lines written after the saved state (they will be written again).
    const logFile = path.join(runDir, 'train.jsonl');
    const kept = await keptLogLines(logFile, st.step);
    await writeFileAtomic(logFile, kept.map((l) => l + '\n').join(''));
    return await loop(p, runDir, st, ctl, trainingLosses(kept));
  } finally {
    await claim.release();
  }
}

/** The training losses (not validation) of a run's kept log lines, in step order. */
function trainingLosses(lines: string[]): number[] {
  return lines.map((l) => JSON.parse(l) as { loss?: unknown }).flatMap((e) => (typeof e.loss === 'number' ? [e.loss] : []));
}

async function loop(p: Prepared, runDir: string, st0: StateCounters, ctl: RunControl, logged: number[] = []): Promise<FinetuneResult> {
  const o = p.run.options, tr = p.tr, head = o.head ?? null;
  const perStep = o.batch * o.accum;
  const examples = head ? p.trainItems.length : p.train.length;
  const total = o.steps || Math.max(1, Math.ceil(examples / perStep));
  const sched = { lr: o.lr, schedule: o.schedule, warmup: warmupSteps(o, total), ramp: o.warmupRamp ?? 'from-step-1' };
  const logFile = path.join(runDir, 'train.jsonl');
  const log = async (e: Record<string, unknown>) => { ctl.onLog?.(e); await appendToFile(logFile, JSON.stringify(e) + '\n'); };
  const perm = new Map<number, Int32Array>();
  let { bestValid, bestStep, tokens } = st0;
  let firstLoss = logged[0] ?? null, lastLoss = logged.at(-1) ?? null;
  ctl.onLog?.({ event: 'trainer', ...p.run.trainer });
  for (let s = st0.step; s < total; s++) {
    const t0 = performance.now();
    // Micro-batches of chunks (LM loss) or of labelled items (head); the denominator is the step's target count.
    const at = (m: number, b: number) => chunkAt(s * perStep + m * o.batch + b, examples, o.seed, perm);
    // (one epoch's last step: only the examples left, see epochTail)
    const inStep = (m: number) => Math.max(0, Math.min(o.batch, o.epochTail && !o.steps ? examples - (s * perStep + m * o.batch) : o.batch));
    const micro: { tokens: Int32Array; targets: Int32Array; lens: Int32Array; count: number }[] = [];
    for (let m = 0; m < o.accum && inStep(m) > 0; m++) {
      if (head) {
        const b = packItems(Array.from({ length: inStep(m) }, (_, k) => p.trainItems[at(m, k)]!));
        micro.push({ tokens: b.tokens, targets: b.labels, lens: b.lens, count: b.labels.length });
      } else {
        const idx = Array.from({ length: inStep(m) }, (_, k) => at(m, k));
        micro.push(pack(idx.map((i) => p.train[i]!), p.trainTargets ? idx.map((i) => p.trainTargets![i]!) : undefined));
      }
    }
    const denominator = micro.reduce((a, b) => a + b.count, 0);
    tr.zeroGrad();
    let lossSum = 0, stepTokens = 0;
    for (const [m, b] of micro.entries()) {
      // step / micro: the LoRA dropout masks' key, from the loop's position (unaffected by optimizer resets).
      const fo = { denominator, backward: true, step: s, micro: m };
      const r = head ? await tr.forwardBackwardCls(b.tokens, b.lens, b.targets, fo) : await tr.forwardBackward(b.tokens, b.targets, b.lens, fo);
      lossSum += r.lossSum;
      stepTokens += b.tokens.length;
    }
    const lr = learningRate(sched, s, total);
    const gradNorm = await tr.step({ lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip }).catch((e: unknown) => {
      // The trainer refuses the update before anything changes; the run stops with its last save intact.
      if (e instanceof Error && /gradient is not finite/.test(e.message))
        throw new LangneuronsError('E_NONFINITE', `${runDir}: training diverged at step ${s + 1}: ${e.message.replace(/^trainer: /, '')}; the last save is intact (resuming continues from it); a lower --lr (${o.lr}) or --clip avoids it`, { cause: e });
      throw e;
    });
    tokens += stepTokens;
    const loss = lossSum / denominator;
    firstLoss ??= loss;
    lastLoss = loss;
    const seconds = (performance.now() - t0) / 1000;
    await log({ step: s + 1, loss, lr, gradNorm, tokens: stepTokens, tokensPerSecond: stepTokens / seconds, seconds });
    const last = s + 1 === total;
    const haveValid = head ? p.validItems.length > 0 : p.valid.length > 0;
    if (haveValid && ((o.evalEvery > 0 && (s + 1) % o.evalEvery === 0) || last)) {
      const vc = head ? await validCls(tr, p.validItems, o.batch, head.numLabels) : null;
      const v = vc ? vc.loss : await validLoss(tr, p.valid, p.validTargets, o.batch);
      const better = bestValid === null || v < bestValid;
      if (better) {
        bestValid = v;
        bestStep = s + 1;
        await writeWeights(path.join(runDir, 'best'), p, s + 1);
        // The reference re-creates its optimizer after saving a better model (and only then).
        if (o.resetOptimizerOnBest) tr.resetOptimizer();
      }
      await log({ step: s + 1, validLoss: v, ...(vc ? { validAccuracy: vc.accuracy } : {}), best: better });
    }
    if ((s + 1) % o.saveEvery === 0 || last) {
      if (o.resetOptimizerOnSave) tr.resetOptimizer(); // runs from before resets followed best saves only
      await saveState(path.join(runDir, 'state'), tr, { step: s + 1, bestValid, bestStep, tokens, optimizerStep: tr.info().stepCount }, p.ckpt.config.modelType);
    }
    if (ctl.stopAfterStep === s + 1 && !last)
      return { runDir, steps: s + 1, firstLoss, lastLoss, bestValid, bestStep, trainableParameters: tr.info().trainable, trainer: trainerReport(tr, placementOf(o)) };
  }
  // Final outputs: the best weights with validation, else the last ones.
  if (bestStep !== null) await copyWeights(path.join(runDir, 'best'), runDir, o);
  else await writeWeights(runDir, p, total);
  let written: FinetuneResult['written'];
  if (o.writeModel) {
    const modelDir = path.join(runDir, 'model');
    await fsp.rm(modelDir, { recursive: true, force: true });
    const merge = { dtype: o.saveDtype ?? 'stored' as const };
    const r = o.lora ? await applyAdapter(p.run.model.dir, path.join(runDir, 'adapter'), modelDir, o.threads, merge)
      : await applyDelta(p.run.model.dir, path.join(runDir, 'delta.safetensors'), modelDir, merge);
    written = { dir: modelDir, dtypes: r.dtypes, changed: r.changed, roundedAway: r.roundedAway, warning: roundingWarning(r, modelDir, '--save-dtype') };
  }
  return { runDir, steps: total, firstLoss, lastLoss, bestValid, bestStep, trainableParameters: tr.info().trainable, trainer: trainerReport(tr, placementOf(o)), ...(written ? { written } : {}) };
}
