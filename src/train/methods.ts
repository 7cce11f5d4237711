// What each fine-tuning method trains (METHODS.md section 5), as the native trainer's list of trainable tensors.
//   full:    every parameter;
//   mlp:     every gate/up/down weight;
//   neurons: for each selected (layer, j): row j of gate_proj and up_proj, column j of down_proj;
//   random:  as neurons, with the same total count drawn uniformly without replacement over all (layer, j), seeded;
//   lora:    LoRA adapters (frozen base) on the target projections of every layer (default the MLP's);
//   neuron-lora (Mondal et al.): LoRA on gate_proj whose B is masked to the language's neurons' rows (only those
//            rows of gate_proj change), plus unmasked LoRA on q, k, v, o; without a mask, attention-only LoRA.
import { LangneuronsError } from '../errors.js';
import { seededRandom } from '../identify/mask-ops.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { checkMaskForModel, maskLanguage, type NeuronMask } from '../identify/masks.js';
import { modelIdentity } from '../profile/identity.js';
import { isPeftTarget, PEFT_TARGETS, type PeftTarget } from './adapter.js';
import { denseTrainable, type TrainableTensor } from './native.js';

export const METHODS = ['full', 'mlp', 'neurons', 'random', 'lora', 'neuron-lora'] as const;
export type FinetuneMethod = (typeof METHODS)[number];
export const isLoraMethod = (m: string): boolean => m === 'lora' || m === 'neuron-lora';

/**
 * Reference settings per method (METHODS.md section 5). Every method's AdamW has weight decay 0.01: the baselines run
 * "the same loop" as neurons, and Gurgurov et al.'s scripts give 0.01 to each (finetune_full.py for full and MLP-only,
 * finetune_adapter.py for LoRA, finetune_ablate.py for random).
 */
export const METHOD_DEFAULTS: Record<FinetuneMethod, { lr: number; clip: number; weightDecay: number }> = {
  full: { lr: 1e-5, clip: 0.5, weightDecay: 0.01 },
  mlp: { lr: 1e-5, clip: 1.0, weightDecay: 0.01 },
  neurons: { lr: 1e-4, clip: 1.0, weightDecay: 0.01 },
  random: { lr: 1e-4, clip: 1.0, weightDecay: 0.01 },
  lora: { lr: 1e-4, clip: 1.0, weightDecay: 0.01 },
  'neuron-lora': { lr: 1e-4, clip: 1.0, weightDecay: 0.01 },
};

export interface LoraSettings {
  r: number; alpha: number; dropout: number; targets: PeftTarget[];
  /** A's init: absent (runs before it was recorded, and lora), PEFT's kaiming-uniform; > 0, normal(0, initStd). */
  initStd?: number;
}

/**
 * LoRA settings per method. lora: METHODS.md (r 32, alpha 64, dropout 0.1, MLP projections). neuron-lora: r 8,
 * alpha 16 on q, k, v, o (+ the masked gate_proj), no dropout and A ~ N(0, 0.01) (Mondal et al.'s LoRALayer); lora's A
 * is PEFT's kaiming-uniform.
 */
export const LORA_DEFAULTS: Record<'lora' | 'neuron-lora', LoraSettings> = {
  lora: { r: 32, alpha: 64, dropout: 0.1, targets: ['gate_proj', 'up_proj', 'down_proj'] },
  'neuron-lora': { r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], initStd: 0.01 },
};

/**
 * Mondal et al.'s settings for neuron-lora with a classification head (XNLI; lora_cls_finetune.py): AdamW lr 1e-5,
 * betas (0.95, 0.999), weight decay 0.1, a linear schedule with int(1%) warm-up steps decaying to 0, gradient-norm
 * clip 10, batch 1 with 8 accumulated, items of at most 256 tokens, and a head with a bias (models.py: a
 * torch.nn.Linear). Used when --head is given with neuron-lora; every option given explicitly wins.
 */
export const MONDAL_HEAD_PRESET = { lr: 1e-5, beta1: 0.95, beta2: 0.999, weightDecay: 0.1, warmupRatio: 0.01, clip: 10, batch: 1, accum: 8, chunk: 256, headBias: true };

/** Parses a --lora-targets list (PEFT module names), refusing unknown names. */
export function parseLoraTargets(list: readonly string[]): PeftTarget[] {
  if (list.length === 0) throw new LangneuronsError('E_OPTIONS', '--lora-targets is empty', { field: 'lora-targets' });
  const out: PeftTarget[] = [];
  for (const t of list) {
    if (!isPeftTarget(t))
      throw new LangneuronsError('E_OPTIONS', `unknown --lora-targets module '${t}' (modules: ${Object.keys(PEFT_TARGETS).join(', ')})`, { field: 'lora-targets' });
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

/** Deterministic PRNG (mulberry32, shared with random masks): uniform floats in [0, 1). */
export const rng = seededRandom;

/** The union over languages of the mask's neurons: perLayer[l] = ascending indices. */
export function maskNeurons(mask: NeuronMask, langs: readonly string[], ckpt: Checkpoint, file?: string): number[][] {
  checkMaskForModel(mask, modelIdentity(ckpt), file);
  const ffn = mask.site === 'act' || mask.site === 'gate' || mask.site === 'up' || mask.site === 'h';
  if (!ffn) throw new LangneuronsError('E_MASK', `${file ?? 'mask'}: site ${mask.site} is not an FFN neuron site`, { field: 'site' });
  if (langs.length === 0) throw new LangneuronsError('E_OPTIONS', 'method neurons needs --lang', { field: 'lang' });
  const sets = Array.from({ length: mask.layers }, () => new Set<number>());
  for (const lang of langs) maskLanguage(mask, lang, file).forEach((units, l) => units.forEach((j) => sets[l]!.add(j)));
  return sets.map((s) => [...s].sort((a, b) => a - b));
}

/** `count` distinct (layer, neuron) pairs, uniformly without replacement over all pairs (partial Fisher-Yates). */
export function randomNeurons(layers: number, width: number, count: number, seed: number): number[][] {
  const total = layers * width;
  if (count > total) throw new LangneuronsError('E_OPTIONS', `cannot sample ${count} neurons out of ${total}`);
  const r = rng(seed);
  const swapped = new Map<number, number>();
  const out: number[][] = Array.from({ length: layers }, () => []);
  for (let i = 0; i < count; i++) {
    const k = i + Math.floor(r() * (total - i));
    const vk = swapped.get(k) ?? k;
    swapped.set(k, swapped.get(i) ?? i);
    out[Math.floor(vk / width)]!.push(vk % width);
  }
  for (const l of out) l.sort((a, b) => a - b);
  return out;
}

/** The trainable tensors of method `neurons` for a per-layer neuron list. */
export function neuronTrainable(perLayer: number[][]): TrainableTensor[] {
  const out: TrainableTensor[] = [];
  perLayer.forEach((units, layer) => {
    if (units.length === 0) return;
    const index = Int32Array.from(units);
    out.push({ role: 'w_gate', layer, mode: 'rows', index }, { role: 'w_up', layer, mode: 'rows', index },
      { role: 'w_down', layer, mode: 'cols', index });
  });
  return out;
}

export interface MethodSelection {
  trainable: TrainableTensor[];
  /** Neurons per layer (neurons / random / neuron-lora with a mask). */
  neurons?: number[][];
}

/** LoRA adapters of method lora / neuron-lora. */
function loraTrainable(method: 'lora' | 'neuron-lora', numLayers: number, s: LoraSettings, neurons?: number[][]): TrainableTensor[] {
  const out: TrainableTensor[] = [];
  const spec = (role: string, layer: number, index?: Int32Array): TrainableTensor =>
    ({ role, layer, mode: 'lora', r: s.r, alpha: s.alpha, dropout: s.dropout, ...(s.initStd ? { initStd: s.initStd } : {}), ...(index ? { index } : {}) });
  if (method === 'neuron-lora' && neurons && s.targets.includes('gate_proj'))
    throw new LangneuronsError('E_OPTIONS', 'neuron-lora puts a masked LoRA on gate_proj from --masks: leave gate_proj out of --lora-targets', { field: 'lora-targets' });
  for (let l = 0; l < numLayers; l++) {
    for (const t of s.targets) out.push(spec(PEFT_TARGETS[t], l));
    const units = neurons?.[l];
    if (units?.length) out.push(spec('w_gate', l, Int32Array.from(units)));
  }
  return out;
}

export function selectTrainable(method: FinetuneMethod, ckpt: Checkpoint,
  o: { mask?: NeuronMask; maskFile?: string; langs?: readonly string[]; seed?: number; lora?: LoraSettings }): MethodSelection {
  const c = ckpt.config;
  switch (method) {
    case 'full': return { trainable: denseTrainable(ckpt) };
    case 'mlp': {
      const t: TrainableTensor[] = [];
      for (let l = 0; l < c.numLayers; l++)
        for (const role of ['w_gate', 'w_up', 'w_down']) t.push({ role, layer: l, mode: 'dense' });
      return { trainable: t };
    }
    case 'neurons':
    case 'random': {
      if (!o.mask) throw new LangneuronsError('E_OPTIONS', `method ${method} needs --masks and --lang`, { field: 'masks' });
      let neurons = maskNeurons(o.mask, o.langs ?? [], ckpt, o.maskFile);
      const count = neurons.reduce((s, l) => s + l.length, 0);
      if (count === 0) throw new LangneuronsError('E_MASK', `${o.maskFile ?? 'mask'}: no neurons for ${(o.langs ?? []).join(', ')}`);
      if (method === 'random') neurons = randomNeurons(c.numLayers, c.intermediateSize, count, o.seed ?? 0);
      return { trainable: neuronTrainable(neurons), neurons };
    }
    case 'lora':
      return { trainable: loraTrainable('lora', c.numLayers, o.lora ?? LORA_DEFAULTS.lora) };
    case 'neuron-lora': {
      const s = o.lora ?? LORA_DEFAULTS['neuron-lora'];
      if (!o.mask) {
        if (o.langs?.length) throw new LangneuronsError('E_OPTIONS', 'neuron-lora with --lang needs --masks (without both: attention-only LoRA)', { field: 'masks' });
        return { trainable: loraTrainable('neuron-lora', c.numLayers, s) };
      }
      if (!o.langs?.length) throw new LangneuronsError('E_OPTIONS', 'method neuron-lora with --masks needs --lang', { field: 'lang' });
      const neurons = maskNeurons(o.mask, o.langs, ckpt, o.maskFile);
      if (neurons.every((l) => l.length === 0)) throw new LangneuronsError('E_MASK', `${o.maskFile ?? 'mask'}: no neurons for ${o.langs.join(', ')}`);
      return { trainable: loraTrainable('neuron-lora', c.numLayers, s, neurons), neurons };
    }
    default:
      throw new LangneuronsError('E_OPTIONS', `unknown method '${String(method)}' (methods: ${METHODS.join(', ')})`, { field: 'method' });
  }
}
