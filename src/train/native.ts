// The native trainer (native/src/binding/js_trainer.cpp) typed for TypeScript, and the mapping between its
// (role, layer) parameters and Hugging Face tensor names.
import { LangneuronsError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { buildNativeSpec } from '../engine/native-spec.js';
import { loadAddon, type NativeModelSpec } from '../native/addon.js';

export type TrainMode = 'dense' | 'rows' | 'cols';

/** One trainable tensor: the whole tensor, or only some rows (output features) / columns (input features). */
export interface TrainableTensor {
  role: string;
  layer: number;
  mode: TrainMode;
  index?: Int32Array;
}

export interface NativeParamInfo {
  id: number; role: string; layer: number; mode: 'frozen' | TrainMode; present: boolean;
  rows: number; cols: number; size: number; index: Int32Array | null;
}

export type Arena = 'master' | 'grad' | 'm' | 'v';

export interface NativeTrainer {
  forwardBackward(tokens: Int32Array, targets: Int32Array, seqLens: Int32Array,
    options: { denominator?: number; backward: boolean }): Promise<{ lossSum: number; count: number }>;
  step(o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clip: number }): Promise<number>;
  zeroGrad(): void;
  gradNorm(): number;
  params(): NativeParamInfo[];
  read(arena: Arena, id: number): Float32Array;
  write(arena: Arena, id: number, values: Float32Array): void;
  info(): { trainable: number; stepCount: number; lowestLayer: number; activationBytes: number; stateBytes: number;
    /** Present once the binding passes TrainerOptions through (see NativeTrainerOptions). */
    denseThenMask?: boolean };
  setStepCount(n: number): void;
}

/** Options of the native trainer (native/src/train/trainer.h TrainerOptions). */
export interface NativeTrainerOptions {
  /** Rows / cols weights compute the full dense dW and keep the selected rows / columns (the reference
   * implementation's dense-gradient-then-mask): same updates, slower; for benchmarks/finetune only. */
  denseThenMask?: boolean;
}

type TrainerCtor = new (spec: NativeModelSpec, trainable: TrainableTensor[], options?: NativeTrainerOptions) => NativeTrainer;

const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm.weight', wq: 'self_attn.q_proj.weight', wk: 'self_attn.k_proj.weight',
  wv: 'self_attn.v_proj.weight', wo: 'self_attn.o_proj.weight', bq: 'self_attn.q_proj.bias',
  bk: 'self_attn.k_proj.bias', bv: 'self_attn.v_proj.bias', ffn_norm: 'post_attention_layernorm.weight',
  w_gate: 'mlp.gate_proj.weight', w_up: 'mlp.up_proj.weight', w_down: 'mlp.down_proj.weight',
};
const GLOBAL_NAMES: Record<string, string> = {
  embed: 'model.embed_tokens.weight', final_norm: 'model.norm.weight', lm_head: 'lm_head.weight',
};

/** The Hugging Face tensor name of a native (role, layer). */
export function tensorName(role: string, layer: number): string {
  const n = layer < 0 ? GLOBAL_NAMES[role] : LAYER_NAMES[role];
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
    throw new LangneuronsError('E_OPTIONS', `trainer: ${(e as Error).message}`, { cause: e });
  }
}

/** Every parameter of the model, dense (method `full`). */
export function denseTrainable(ckpt: Checkpoint): TrainableTensor[] {
  const c = ckpt.config;
  const out: TrainableTensor[] = [{ role: 'embed', layer: -1, mode: 'dense' }, { role: 'final_norm', layer: -1, mode: 'dense' }];
  if (!c.tieWordEmbeddings) out.push({ role: 'lm_head', layer: -1, mode: 'dense' });
  for (let l = 0; l < c.numLayers; l++)
    for (const role of Object.keys(LAYER_NAMES)) {
      if (!c.qkvBias && (role === 'bq' || role === 'bk' || role === 'bv')) continue;
      out.push({ role, layer: l, mode: 'dense' });
    }
  return out;
}
