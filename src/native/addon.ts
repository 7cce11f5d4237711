// Loads the compiled addon and types its surface. A missing build is reported with the command that makes it.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';

export interface NativeConfig {
  hidden: number; intermediate: number; nLayers: number; nHeads: number; nKvHeads: number; headDim: number;
  vocab: number; maxPositions: number; rmsEps: number; ropeTheta: number; ropeType: 0 | 1; ropeFactor: number;
  ropeLowFreqFactor: number; ropeHighFreqFactor: number; ropeOriginalMaxPositions: number;
  tieEmbeddings: boolean; qkvBias: boolean;
}

export interface NativeTensorSpec {
  role: string; layer: number; file: number; offset: number; nbytes: number; dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
}

export interface NativeModelSpec {
  config: NativeConfig; files: string[]; tensors: NativeTensorSpec[]; threads: number; compute: 'f32' | 'bf16';
}

export interface NativeForwardOptions {
  logits: 0 | 1 | 2; targets?: Int32Array; cache?: NativeKvCache; cacheSlots?: Int32Array;
}

export interface NativeForwardResult { logits: Float32Array; targetLogprobs: Float32Array | null }

export interface NativeModel {
  forward(tokens: Int32Array, seqLens: Int32Array, options: NativeForwardOptions): Promise<NativeForwardResult>;
  info(): { threads: number; compute: 'f32' | 'bf16'; kernel: string; scratchBytes: number };
}

export interface NativeKvCache {
  length(slot: number): number;
  setLength(slot: number, len: number): void;
  bytes(): number;
}

export interface Addon {
  NativeModel: new (spec: NativeModelSpec) => NativeModel;
  NativeKvCache: new (model: NativeModel, nSlots: number, capacity: number) => NativeKvCache;
  kernelInfo(): { kernel: string; hardwareThreads: number };
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
  const file = process.env.LANGNEURONS_ADDON ?? path.join(packageRoot(), 'build', 'Release', 'langneurons.node');
  if (!existsSync(file))
    throw new LangneuronsError('E_NATIVE', `native addon not found at ${file}: build it with \`npm run build:native\` ` +
      '(needs cmake >= 3.18 and a C++17 compiler)', { file });
  const require = createRequire(import.meta.url);
  cached = require(file) as Addon;
  return cached;
}
