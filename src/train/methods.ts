// What each fine-tuning method trains (METHODS.md section 5), as the native trainer's list of trainable tensors.
//   full:    every parameter;
//   mlp:     every gate/up/down weight;
//   neurons: for each selected (layer, j): row j of gate_proj and up_proj, column j of down_proj;
//   random:  as neurons, with the same total count drawn uniformly without replacement over all (layer, j), seeded.
import { LangneuronsError } from '../errors.js';
import { seededRandom } from '../identify/mask-ops.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { checkMaskForModel, maskLanguage, type NeuronMask } from '../identify/masks.js';
import { modelIdentity } from '../profile/identity.js';
import { denseTrainable, type TrainableTensor } from './native.js';

export const METHODS = ['full', 'mlp', 'neurons', 'random'] as const;
export type FinetuneMethod = (typeof METHODS)[number];

/** Reference settings per method (METHODS.md section 5). */
export const METHOD_DEFAULTS: Record<FinetuneMethod, { lr: number; clip: number; weightDecay: number }> = {
  full: { lr: 1e-5, clip: 0.5, weightDecay: 0 },
  mlp: { lr: 1e-5, clip: 1.0, weightDecay: 0 },
  neurons: { lr: 1e-4, clip: 1.0, weightDecay: 0.01 },
  random: { lr: 1e-4, clip: 1.0, weightDecay: 0.01 },
};

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
  /** Neurons per layer (neurons / random). */
  neurons?: number[][];
}

export function selectTrainable(method: FinetuneMethod, ckpt: Checkpoint,
  o: { mask?: NeuronMask; maskFile?: string; langs?: readonly string[]; seed?: number }): MethodSelection {
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
    default:
      throw new LangneuronsError('E_OPTIONS', `unknown method '${String(method)}' (methods: ${METHODS.join(', ')})`, { field: 'method' });
  }
}
