// Steps 1 and 2: profile the model on the train articles of each language (the text it learned from: Tang
// profiles on training-like text), then identify the language-specific neurons by LAPE (top rate: options.ts).
//
// Profiling scope: Tang's windows (one token stream per language cut into windows), with a BOS token fed (never
// counted) before each window because the model learned every article after a BOS; per-window means are kept
// for the `p_max` amplification of the steering step.
import path from 'node:path';

import { udhrCorpus } from '../corpus/udhr.js';
import type { LanguageStats } from '../identify/common.js';
import { identifyLape } from '../identify/lape.js';
import { summarizeMask } from '../identify/mask-ops.js';
import { writeMask, type NeuronMask } from '../identify/masks.js';
import { ensureParentDir } from '../io/outdir.js';
import { profileCorpus, TOOL_VERSION } from '../profile/profile.js';
import { readStatsFile, type TokenScope } from '../profile/stats.js';
import type { DemoContext } from './context.js';
import { TOP_RATE_LADDER, type ResolvedDemoOptions } from './options.js';

export interface ProfileResult {
  statsDir: string;
  scope: TokenScope;
  corpus: string;
  languages: { language: string; tokens: number; sequences: number }[];
}

export interface IdentifyResult {
  maskFile: string;
  method: 'lape';
  parameters: Record<string, unknown>;
  derived: Record<string, unknown>;
  layers: number;
  width: number;
  /** Neurons per language and layer. */
  perLayer: Record<string, number[]>;
  total: Record<string, number>;
  /** Distinct neurons in at least one language, and how many belong to exactly k languages. */
  union: number;
  sharedBy: number[];
}

export async function profileStep(ctx: DemoContext) {
  const o = ctx.options, langs = ctx.recipe.languages;
  const statsDir = path.join(ctx.outDir, 'stats');
  const model = ctx.checkpoint.config;
  const scope: TokenScope = { mode: 'windows', maxLen: Math.min(o.profileWindow, model.maxPositions - 1), bos: true, countPadding: false, tokenBudget: o.profileTokens };
  const corpus = udhrCorpus(langs, { split: 'train', heldoutArticles: ctx.recipe.heldoutArticles });
  const inputs = { step: 'profile', tool: TOOL_VERSION, model: ctx.modelDigest, scope, corpus: await corpus.fingerprint(langs) };
  return ctx.runner.run<ProfileResult>('profile', inputs, async () => {
    const results = await profileCorpus(await ctx.model(), corpus, {
      languages: langs, outDir: statsDir, scope, sites: ['act'], seqMeans: true, resume: false,
      onProgress: (p) => ctx.runner.progress('profile', `${p.language}: ${p.tokens} tokens`),
    });
    return { statsDir, scope, corpus: corpus.origin, languages: results.map((r) => ({ language: r.language, tokens: r.tokens, sequences: r.sequences })) };
  });
}

/** LAPE at a given top rate, or at the first rate of TOP_RATE_LADDER giving every language `minNeurons` neurons. */
function lapeMask(inputs: LanguageStats[], o: ResolvedDemoOptions): { mask: NeuronMask; tried: { topRate: number; fewest: number }[] } {
  const rates = o.topRate === 'auto' ? TOP_RATE_LADDER : [o.topRate];
  const tried: { topRate: number; fewest: number }[] = [];
  let mask: NeuronMask | null = null;
  for (const topRate of rates) {
    mask = identifyLape(inputs, { topRate, filterRate: o.filterRate });
    const fewest = Math.min(...Object.values(summarizeMask(mask).total));
    tried.push({ topRate, fewest });
    if (fewest >= o.minNeurons) break;
  }
  return { mask: mask!, tried };
}

export async function identifyStep(ctx: DemoContext, profile: { key: string; result: ProfileResult }) {
  const o = ctx.options;
  const maskFile = path.join(ctx.outDir, 'masks', 'lape.json');
  const parameters = { topRate: o.topRate, minNeurons: o.minNeurons, filterRate: o.filterRate };
  return ctx.runner.run<IdentifyResult>('identify', { step: 'identify', profile: profile.key, parameters }, async () => {
    const inputs: LanguageStats[] = [];
    for (const l of profile.result.languages) {
      const file = path.join(profile.result.statsDir, `${l.language}.safetensors`);
      inputs.push({ file, stats: (await readStatsFile(file)).stats });
    }
    const { mask, tried } = lapeMask(inputs, o);
    await ensureParentDir(maskFile);
    await writeMask(maskFile, mask);
    const s = summarizeMask(mask);
    return { maskFile, method: 'lape', parameters: mask.parameters, derived: { ...(mask.derived ?? {}), ...(o.topRate === 'auto' ? { topRateLadder: tried } : {}) },
      layers: mask.layers, width: mask.width, perLayer: s.perLayer, total: s.total, union: s.union, sharedBy: s.sharedBy };
  });
}
