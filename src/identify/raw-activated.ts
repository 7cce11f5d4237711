// Raw-activated neurons (Rahmanisa et al.'s baseline): per language, the (layer, neuron) whose sentence-mean value is
// > 0 for every sampled sentence of that language. Which sentences are sampled (and how many) is decided by the
// profiler when it records the per-sequence means; this reads all of them.
import type { Site } from '../profile/stats.js';
import { checkInputs, seqMeansBudgetOf, sequenceMeansOf, unitsPerBlock, type LanguageStats, type SequenceMeansOptions } from './common.js';
import { maskFromFlat, type NeuronMask } from './masks.js';

export interface RawActivatedOptions extends SequenceMeansOptions {
  site?: Site;
}

/** Statistics read without their per-sequence means are read from their files a block of units at a time, one
 *  language after another (options.seqMeansBudget): a running "all > 0" per unit is all that is kept. */
export function identifyRawActivated(inputs: readonly LanguageStats[], options: RawActivatedOptions = {}): NeuronMask {
  const budget = seqMeansBudgetOf(options);
  const site = options.site ?? 'act';
  // Token counts are not used: the sequence means are the evidence.
  const ctx = checkInputs(inputs, site, false);
  const units = ctx.layers.length * ctx.width;
  const perLanguage = new Map<string, number[]>();
  const sentences: Record<string, number> = {};
  const { sources, close } = sequenceMeansOf(ctx, 'raw-activated');
  try {
    sources.forEach((src, k) => {
      const { count } = src;
      const alwaysPositive = new Uint8Array(units).fill(1);
      const READ = unitsPerBlock(budget, count, units);
      for (let at = 0; at < units; at += READ) {
        const size = Math.min(READ, units - at);
        const { data, base, stride } = src.read(at, size);
        options.onBlock?.({ site, start: at, size, units, languages: [src.language] });
        for (let s = 0; s < count; s++) {
          const row = base + s * stride;
          for (let u = 0; u < size; u++) if (!(data[row + u]! > 0)) alwaysPositive[at + u] = 0;
        }
      }
      src.release();
      const kept: number[] = [];
      for (let i = 0; i < units; i++) if (alwaysPositive[i]) kept.push(i);
      perLanguage.set(ctx.languages[k]!, kept);
      sentences[ctx.languages[k]!] = count;
    });
  } finally {
    close();
  }
  return maskFromFlat(ctx, 'raw-activated', {}, perLanguage, { sentences });
}
