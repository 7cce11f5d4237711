// What every step of the demo sees: the model (opened once, on first use), its identity and a digest of its
// files (a retrained model with the same layout must not reuse old results), the options, the recipe, the
// output folder and the step runner.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { loadModel, type LanguageModel } from '../engine/model.js';
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { modelIdentity } from '../profile/identity.js';
import type { ModelIdentity } from '../profile/stats.js';
import type { ResolvedDemoOptions } from './options.js';
import type { DemoRecipe } from './recipe.js';
import type { StepRunner } from './steps.js';

export interface DemoContext {
  modelDir: string;
  outDir: string;
  options: ResolvedDemoOptions;
  recipe: DemoRecipe;
  checkpoint: Checkpoint;
  identity: ModelIdentity;
  /** sha256 over the weight files, config and tokenizer, and the compute mode: in the key of every step using the model. */
  modelDigest: string;
  runner: StepRunner;
  model(): Promise<LanguageModel>;
}

async function fileDigest(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Digest of the files that make the model: weights (hashed up to 512 MiB, else size and mtime), config, tokenizer. */
export async function modelDigest(ck: Checkpoint): Promise<string> {
  const h = createHash('sha256');
  const small = ck.totalBytes <= 512 * 1024 * 1024;
  const files = [...ck.files, ...['config.json', 'tokenizer.json', 'tokenizer_config.json'].map((f) => path.join(ck.dir, f)).filter(existsSync)];
  for (const f of files) {
    const st = await fsp.stat(f);
    h.update(`${path.basename(f)}:${small || !ck.files.includes(f) ? await fileDigest(f) : `${st.size}:${st.mtimeMs}`}\n`);
  }
  return h.digest('hex');
}

export async function createContext(modelDir: string, outDir: string, options: ResolvedDemoOptions, recipe: DemoRecipe, runner: StepRunner): Promise<DemoContext> {
  const checkpoint = await openCheckpoint(modelDir);
  let model: Promise<LanguageModel> | null = null;
  return {
    modelDir, outDir, options, recipe, checkpoint, identity: modelIdentity(checkpoint), modelDigest: `${await modelDigest(checkpoint)}:${options.compute}${options.device === 'auto' ? '' : `:${options.device}`}`, runner,
    // 'auto' is left to loadModel's default, as the fine-tuning steps leave it (finetune-step.ts): quiet on a machine
    // without an NVIDIA driver, as every other command's default is (docs/CUDA.md), instead of a fallback line there.
    model: () => (model ??= loadModel(modelDir, { threads: options.threads, compute: options.compute, ...(options.device === 'auto' ? {} : { device: options.device }) })),
  };
}
