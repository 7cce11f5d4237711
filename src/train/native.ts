// The native trainer (native/src/binding/js_trainer.cpp) typed for TypeScript, and the mapping between its
// (role, layer) parameters and Hugging Face tensor names.
import { LangneuronsError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { ModelType } from '../model/config.js';
import { buildNativeSpec } from '../engine/native-spec.js';
import { loadAddon, type NativeModelSpec } from '../native/addon.js';

export type TrainMode = 'dense' | 'rows' | 'cols' | 'lora';

/**
 * One trainable tensor: the whole tensor, or only some rows (output features) / columns (input features), or a
 * LoRA adapter on a frozen layer weight (`r`, `alpha`, `dropout`; with `index`, B is masked to those output rows).
 */
export interface TrainableTensor {
  role: string;
  layer: number;
  mode: TrainMode;
  index?: Int32Array;
  r?: number;
  alpha?: number;
  dropout?: number;
  /** LoRA A's init: absent or 0, PEFT's kaiming-uniform; > 0, normal(0, initStd) (Mondal et al.: 0.01). */
  initStd?: number;
}

/**
 * A parameter of the trainer. LoRA adds two per adapter, role `<role>.lora_A` (mode lora_a, [r, in]) and
 * `<role>.lora_B` (mode lora_b, [out, r]; a masked B holds only the rows `index`); a head is role `score`.
 * rows / cols: the tensor's full shape; size: the trainable values (0: frozen).
 */
export interface NativeParamInfo {
  id: number; role: string; layer: number; mode: 'frozen' | 'dense' | 'rows' | 'cols' | 'lora_a' | 'lora_b'; present: boolean;
  rows: number; cols: number; size: number; index: Int32Array | null;
}

/** Where the LoRA dropout masks of a forward come from (default: the optimizer step count, micro-batches since zeroGrad). */
export interface DropoutPosition { step?: number; micro?: number }

export type Arena = 'master' | 'grad' | 'm' | 'v';

export interface NativeTrainer {
  forwardBackward(tokens: Int32Array, targets: Int32Array, seqLens: Int32Array,
    options: { denominator?: number; backward: boolean } & DropoutPosition): Promise<{ lossSum: number; count: number }>;
  /** Classification head (options.numLabels): one label per sequence (-1: none); logits [sequences x numLabels]. */
  forwardBackwardCls(tokens: Int32Array, seqLens: Int32Array, labels: Int32Array,
    options: { denominator?: number; backward: boolean } & DropoutPosition): Promise<{ lossSum: number; count: number; logits: Float32Array }>;
  /** Adam moments and the step count to zero. */
  resetOptimizer(): void;
  step(o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clip: number }): Promise<number>;
  zeroGrad(): void;
  gradNorm(): number;
  params(): NativeParamInfo[];
  read(arena: Arena, id: number): Float32Array;
  write(arena: Arena, id: number, values: Float32Array): void;
  info(): NativeTrainerInfo;
  setStepCount(n: number): void;
  /**
   * A diagnostic of benchmarks/gpu-finetune: with `on`, each step's device time (zeroGrad to the end of step) is
   * clocked by kind of work; stepTimes() gives the last such span ([] on the CPU trainer, which has no clock).
   * Absent from addons built before it.
   */
  clockSteps?(on: boolean): void;
  stepTimes?(): NativeStepTime[];
}

/** One kind of work in a clocked training step: its device time and how many pieces it came in. */
export interface NativeStepTime { step: string; ms: number; marks: number }

/** Bytes a trainer holds, by use (device bytes for a CUDA trainer; the CPU trainer's weights stay memory-mapped: 0). */
export interface NativeTrainerMemory {
  weights: number; master: number; grad: number; adam: number; activations: number; scratch: number;
  /** The whole device as the driver reports it (0 on the CPU). */
  deviceUsed: number; deviceTotal: number;
}

export interface NativeTrainerInfo {
  trainable: number; stepCount: number; lowestLayer: number; activationBytes: number; stateBytes: number;
  /** Present once the binding passes TrainerOptions through (see NativeTrainerOptions). */
  denseThenMask?: boolean; numLabels?: number; adapters?: number;
  /** Where it trains: 'cpu' or 'cuda:N' (addons from before the training seam leave these out). */
  device?: string; describe?: string; memory?: NativeTrainerMemory;
}

/** Options of the native trainer (native/src/train/param_layout.h TrainerOptions, plus where it runs). */
export interface NativeTrainerOptions {
  /** Rows / cols weights compute the full dense dW and keep the selected rows / columns (the reference
   * implementation's dense-gradient-then-mask): same updates, slower; for benchmarks/finetune only. */
  denseThenMask?: boolean;
  /** Seed of the LoRA A init, LoRA dropout masks and head init. */
  seed?: number;
  /** Classes of a classification head `score` [numLabels, hidden] (0: none). */
  numLabels?: number;
  /** The head has a bias `score_bias` [numLabels] (initialised to 0). */
  headBias?: boolean;
  /** CUDA device index (absent: the CPU trainer). Resolve 'auto' / 'cuda' to an index first. */
  device?: number;
  /** CUDA only: 'bf16' (default: bf16 weights and activations, float32 master copies and optimizer state) or
   * 'f32' (exact float32, for checks). */
  compute?: 'f32' | 'bf16';
  /** CUDA only: activation recomputation. The forward keeps each layer's input only and the backward runs each
   * layer's forward again before its backward: the same gradients bit for bit, one more forward a step, one
   * layer's activations instead of every layer's (Llama-3.1-8B at 4096 tokens, a 1% neurons mask: 2.6 GB instead
   * of 15.4 GB). */
  recompute?: boolean;
}

type TrainerCtor = (new (spec: NativeModelSpec, trainable: TrainableTensor[], options?: NativeTrainerOptions) => NativeTrainer) & {
  loraDelta?(a: Float32Array, b: Float32Array, r: number, scale: number, threads: number): Float32Array;
};

const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm.weight', wq: 'self_attn.q_proj.weight', wk: 'self_attn.k_proj.weight',
  wv: 'self_attn.v_proj.weight', wo: 'self_attn.o_proj.weight', bq: 'self_attn.q_proj.bias',
  bk: 'self_attn.k_proj.bias', bv: 'self_attn.v_proj.bias', ffn_norm: 'post_attention_layernorm.weight',
  w_gate: 'mlp.gate_proj.weight', w_up: 'mlp.up_proj.weight', w_down: 'mlp.down_proj.weight',
  q_norm: 'self_attn.q_norm.weight', k_norm: 'self_attn.k_norm.weight',
  attn_post_norm: 'post_attention_layernorm.weight', ffn_post_norm: 'post_feedforward_layernorm.weight',
};
// Gemma 2 names the FFN's input norm pre_feedforward_layernorm; its post_attention_layernorm is attn_post_norm.
const GEMMA2_NAMES: Record<string, string> = { ...LAYER_NAMES, ffn_norm: 'pre_feedforward_layernorm.weight' };
const GLOBAL_NAMES: Record<string, string> = {
  embed: 'model.embed_tokens.weight', final_norm: 'model.norm.weight', lm_head: 'lm_head.weight',
};

/** The Hugging Face module path of a layer role (e.g. w_gate -> mlp.gate_proj). */
export function modulePath(role: string): string {
  const n = LAYER_NAMES[role];
  if (!n || !n.endsWith('.weight') || !n.includes('_proj')) throw new LangneuronsError('E_INPUT', `'${role}' is not a projection of a layer`);
  return n.slice(0, -'.weight'.length);
}

/**
 * The Hugging Face tensor name of a native (role, layer); LoRA matrices get PEFT's names without the
 * `base_model.model.` prefix (model.layers.3.mlp.gate_proj.lora_A.weight), the head is `score.weight`.
 */
export function tensorName(role: string, layer: number, modelType?: ModelType): string {
  const lora = /^(\w+)\.(lora_[AB])$/.exec(role);
  if (lora && layer >= 0) return `model.layers.${layer}.${modulePath(lora[1]!)}.${lora[2]}.weight`;
  if (role === 'score' && layer < 0) return 'score.weight';
  if (role === 'score_bias' && layer < 0) return 'score.bias';
  const n = layer < 0 ? GLOBAL_NAMES[role] : (modelType === 'gemma2' ? GEMMA2_NAMES : LAYER_NAMES)[role];
  if (!n) throw new LangneuronsError('E_INPUT', `unknown parameter role '${role}'`);
  return layer < 0 ? n : `model.layers.${layer}.${n}`;
}

export function createNativeTrainer(ckpt: Checkpoint, threads: number, trainable: TrainableTensor[],
  options: NativeTrainerOptions = {}): NativeTrainer {
  const addon = loadAddon() as unknown as { NativeTrainer?: TrainerCtor };
  if (!addon.NativeTrainer)
    throw new LangneuronsError('E_NATIVE', 'the native addon has no trainer: rebuild it with `npm run build:native`');
  try {
    return new addon.NativeTrainer(buildNativeSpec(ckpt, threads, 'f32'), trainable, options);
  } catch (e) {
    const message = (e as Error).message;
    throw new LangneuronsError('E_OPTIONS', message.startsWith('trainer: ') ? message : `trainer: ${message}`, { cause: e });
  }
}

/** scale * B A for the n rows B [n x r] holds (A [r x K]): the change LoRA merges into those rows of W. */
export function loraDelta(a: Float32Array, b: Float32Array, r: number, scale: number, threads = 2): Float32Array {
  const ctor = (loadAddon() as unknown as { NativeTrainer?: TrainerCtor }).NativeTrainer;
  if (!ctor?.loraDelta) throw new LangneuronsError('E_NATIVE', 'the native addon has no loraDelta: rebuild it with `npm run build:native`');
  return ctor.loraDelta(a, b, r, scale, threads);
}

/** Every parameter of the model, dense (method `full`). */
export function denseTrainable(ckpt: Checkpoint): TrainableTensor[] {
  const c = ckpt.config;
  const out: TrainableTensor[] = [{ role: 'embed', layer: -1, mode: 'dense' }, { role: 'final_norm', layer: -1, mode: 'dense' }];
  if (!c.tieWordEmbeddings) out.push({ role: 'lm_head', layer: -1, mode: 'dense' });
  for (let l = 0; l < c.numLayers; l++)
    for (const role of Object.keys(LAYER_NAMES)) {
      if (!c.qkvBias && (role === 'bq' || role === 'bk' || role === 'bv')) continue;
      if (!c.qkNorm && (role === 'q_norm' || role === 'k_norm')) continue;
      if (!c.postNorms && (role === 'attn_post_norm' || role === 'ffn_post_norm')) continue;
      if (c.parallelBlock && role === 'ffn_norm') continue;
      out.push({ role, layer: l, mode: 'dense' });
    }
  return out;
}
