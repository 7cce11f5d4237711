// Loads the compiled addon and types its surface. A missing build is reported with the command that makes it.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';

export interface NativeConfig {
  hidden: number; intermediate: number; nLayers: number; nHeads: number; nKvHeads: number; headDim: number;
  vocab: number; maxPositions: number; rmsEps: number; ropeTheta: number;
  /** 0 default (and dynamic), 1 llama3, 2 yarn, 3 linear. */
  ropeType: 0 | 1 | 2 | 3; ropeFactor: number;
  ropeLowFreqFactor: number; ropeHighFreqFactor: number; ropeOriginalMaxPositions: number;
  ropeAttentionFactor: number; ropeBetaFast: number; ropeBetaSlow: number;
  tieEmbeddings: boolean; qkvBias: boolean;
  /** 0 rms, 1 rms with (1 + w), 2 layernorm. */
  norm: 0 | 1 | 2;
  /** 0 silu, 1 gelu (tanh form). */
  act: 0 | 1;
  qkNorm: boolean; parallelBlock: boolean; postNorms: boolean; ropeInterleaved: boolean;
  embedScale: number; queryScale: number; attnSoftcap: number; finalSoftcap: number; logitScale: number;
  slidingWindow: number; slidingPeriod: number;
}

export interface NativeTensorSpec {
  role: string; layer: number; file: number; offset: number; nbytes: number; dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
}

export interface NativeModelSpec {
  config: NativeConfig; files: string[]; tensors: NativeTensorSpec[]; threads: number; compute: 'f32' | 'bf16';
  /** 'cpu' (default) or 'cuda:N': the runtime the model runs on (native/src/runtime). */
  device?: string;
}

/** Bytes a runtime holds, by kind (native MemoryReport). */
export interface NativeMemoryReport {
  weights: number; kvCache: number; activations: number; scratch: number; deviceUsed: number; deviceTotal: number;
}

export interface NativeForwardOptions {
  /** 0 none, 1 last, 2 all, 3 the final-normed hidden state of each sequence's last token (n_seqs x hidden),
   *  4 greedy: no logits, the runtime picks each sequence's next token (the result's `next`). */
  logits: 0 | 1 | 2 | 3 | 4; targets?: Int32Array; cache?: NativeKvCache; cacheSlots?: Int32Array;
  /** Greedy only: Hugging Face's repetition penalty on the ids penaltyIds[penaltyOffsets[s] .. penaltyOffsets[s+1])
   *  of sequence s (sequences + 1 offsets). */
  repetitionPenalty?: number; penaltyIds?: Int32Array; penaltyOffsets?: Int32Array;
  /** Accumulate activation statistics (a NativeStats of this model). */
  stats?: NativeStats;
  /** One entry per token, nonzero = counted by `stats` (default: all counted). */
  countMask?: Uint8Array;
  /** Stop after this layer (-1 = all): logits must be 0 (none), no targets, no cache. */
  lastLayer?: number;
  /** Copy the [tokens × width] values of one site at one layer into the result's `capture`. */
  capture?: { site: string; layer: number };
  /** Interventions on FFN neurons or projection outputs (a NativeIntervention of this model). */
  intervention?: NativeIntervention;
  /** One position-class byte per token (1 prompt, 2 generated); needs `intervention`. */
  interveneMask?: Uint8Array;
}

/** Typed arrays of an intervention: one entry per edit, then one per test-time rule (src/intervene/resolve.ts). */
export interface NativeInterventionArrays {
  layers: Int32Array; sites: Int32Array; neurons: Int32Array; ops: Uint8Array; when: Uint8Array; values: Float32Array;
  rules: Int32Array;
  ruleLayers: Int32Array; ruleSites: Int32Array; ruleStats: Int32Array; ruleFactors: Float32Array; rulePercentiles: Float32Array;
}

export interface NativeIntervention {
  info(): { edits: number; layers: number };
}

/** Greedy: per sequence, the picked token and its logit (after the penalty), the row's first non-finite logit
 *  (-1: none) and its value, and 1 when every logit of the row is exactly 0. */
export interface NativeNextTokens {
  tokens: Int32Array; logits: Float32Array; firstNonFinite: Int32Array; nonFiniteValues: Float32Array; allZero: Uint8Array;
}

export interface NativeForwardResult {
  logits: Float32Array; targetLogprobs: Float32Array | null; capture: Float32Array | null; next?: NativeNextTokens;
}

export interface NativeStatsOptions {
  sites: string[];
  /** Profile layers 0 .. layers-1. */
  layers: number;
  histEdges?: Float64Array;
  /** Per site, layers × width thresholds for the "value > threshold" counts. */
  thresholds?: Record<string, Float32Array>;
  seqMeans?: boolean;
}

export interface NativeSiteRead {
  width: number;
  overZero: Float64Array; sum: Float64Array; sumSq: Float64Array; absSum: Float64Array;
  histCounts?: Float64Array; aboveCounts?: Float64Array;
  /** [sequences since the last readSeqMeans][layers][width]. */
  seqMeans?: Float32Array;
}

export interface NativeStatsRead {
  tokens: number; sequences: number; layers: number; histEdges: Float64Array | null;
  sites: Record<string, NativeSiteRead>;
}

export interface NativeStats {
  read(): NativeStatsRead;
  /** Returns the sequence means of every site and clears them. */
  readSeqMeans(): Record<string, Float32Array>;
  /** Sets the counts and sums to earlier totals (read()'s shape, without sequence means); later forwards add to them. */
  restore(totals: { tokens: number; sequences: number; sites: Record<string, Omit<NativeSiteRead, 'width' | 'seqMeans'>> }): void;
  reset(): void;
}

export interface NativeModel {
  forward(tokens: Int32Array, seqLens: Int32Array, options: NativeForwardOptions): Promise<NativeForwardResult>;
  info(): {
    device: 'cpu' | 'cuda'; describe: string; threads: number; compute: 'f32' | 'bf16'; kernel: string; scratchBytes: number;
    memory: NativeMemoryReport;
  };
  /** Frees the runtime (device memory) and unmaps the checkpoint once no forward runs; later forwards fail. */
  dispose(): void;
}

export interface NativeKvCache {
  length(slot: number): number;
  setLength(slot: number, len: number): void;
  copyPrefix(src: number, dst: number, len: number): void;
  bytes(): number;
  /** Frees the cache now (or when the forward using it ends); later use is refused. */
  dispose(): void;
}

export interface Addon {
  NativeModel: new (spec: NativeModelSpec) => NativeModel;
  NativeKvCache: new (model: NativeModel, nSlots: number, capacity: number) => NativeKvCache;
  NativeStats: new (model: NativeModel, options: NativeStatsOptions) => NativeStats;
  NativeIntervention: new (model: NativeModel, arrays: NativeInterventionArrays) => NativeIntervention;
  kernelInfo(): { kernel: string; hardwareThreads: number };
  /** Whether the addon has the CUDA runtime, how many usable devices, and why none ('' when some). */
  /** `devices`: the CUDA devices present; `problems[i]`: why this build cannot run on device i ('' when it can: a GPU
   *  whose compute capability the build has no code for; absent from addons built before the field). */
  cudaInfo(): { built: boolean; devices: number; reason: string; problems?: string[]; simulated?: boolean };
  /** Measurement hooks for benchmarks/ (synchronous, block the calling thread). */
  bench: {
    gemm(o: { m: number; n: number; k: number; dtype: 'F32' | 'F16' | 'BF16'; compute: 'f32' | 'bf16'; threads: number; reps: number }): number;
    copy(o: { bytes: number; reps: number }): number;
  };
}

let cached: Addon | undefined;

export function packageRoot(): string {
  // dist/src/native/addon.js or src/native/addon.ts: the package root is where package.json is.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('langneurons: cannot find the package root');
    dir = up;
  }
  return dir;
}

export function loadAddon(): Addon {
  if (cached) return cached;
  const override = process.env.LANGNEURONS_ADDON;
  const file = override ?? path.join(packageRoot(), 'build', 'Release', 'langneurons.node');
  if (!existsSync(file)) {
    if (override !== undefined)
      throw new LangneuronsError('E_NATIVE', `LANGNEURONS_ADDON=${file}: no such file (expected the path of a built langneurons.node)`, { file });
    // The install script builds it. npm 12 and later skip a dependency's install script unless the depending
    // project's package.json approves it (allowScripts), so a project that installed langneurons may have none.
    throw new LangneuronsError('E_NATIVE', `native addon not found at ${file}: build it with \`npm run build:native\` ` +
      'in the langneurons folder (needs cmake >= 3.18 and a C++17 compiler); in a project that depends on langneurons, ' +
      '`npm rebuild langneurons`, after `npm install-scripts approve langneurons` where npm skipped its install script', { file });
  }
  const require = createRequire(import.meta.url);
  cached = require(file) as Addon;
  return cached;
}
