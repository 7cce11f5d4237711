// Raw-activated neurons (Rahmanisa et al.'s baseline): per language, the (layer, neuron) whose sentence-mean value is
// > 0 for every sampled sentence of that language. Which sentences are sampled (and how many) is decided by the
// profiler when it records the per-sequence means; this reads all of them.
import type { Site } from '../profile/stats.js';
import { checkInputs, sequenceMeansOf, type LanguageStats } from './common.js';
import { maskFromFlat, type NeuronMask } from './masks.js';

export interface RawActivatedOptions {
  site?: Site;
}

export function identifyRawActivated(inputs: readonly LanguageStats[], options: RawActivatedOptions = {}): NeuronMask {
  // Token counts are not used: the sequence means are the evidence.
  const ctx = checkInputs(inputs, options.site ?? 'act', false);
  const units = ctx.layers.length * ctx.width;
  const perLanguage = new Map<string, number[]>();
  const sentences: Record<string, number> = {};
  sequenceMeansOf(ctx, 'raw-activated').forEach(({ means, count }, k) => {
    const alwaysPositive = new Uint8Array(units).fill(1);
    for (let s = 0; s < count; s++) {
      const base = s * units;
      for (let i = 0; i < units; i++) if (!(means[base + i]! > 0)) alwaysPositive[i] = 0;
    }
    const kept: number[] = [];
    for (let i = 0; i < units; i++) if (alwaysPositive[i]) kept.push(i);
    perLanguage.set(ctx.languages[k]!, kept);
    sentences[ctx.languages[k]!] = count;
  });
  return maskFromFlat(ctx, 'raw-activated', {}, perLanguage, { sentences });
}
