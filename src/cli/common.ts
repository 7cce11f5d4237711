// Options every model-running command shares.
import { Option, type Command } from 'commander';
import os from 'node:os';

import { loadModel, type LanguageModel } from '../engine/model.js';
import { warn } from '../io/text.js';
import { estimateMemory, openCheckpoint } from '../model/checkpoint.js';
import { parseIntOption } from './output.js';

export interface ModelCliOptions { threads?: number; compute?: 'f32' | 'bf16'; json?: boolean }

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', `engine threads (default: ${os.availableParallelism()}, the machine's cores)`, parseIntOption('--threads', 1, 1024))
    .addOption(new Option('--compute <mode>', 'f32: float32 throughout; bf16: bf16 products, float32 accumulation').choices(['f32', 'bf16']).default('f32'))
    .option('--json', 'print one JSON document on stdout (no progress output)');
}

export async function openModel(dir: string, o: ModelCliOptions): Promise<LanguageModel> {
  await warnIfTooLarge(dir);
  return loadModel(dir, { ...(o.threads ? { threads: o.threads } : {}), compute: o.compute ?? 'f32' });
}

/** Before loading: `info`'s memory estimate against the free memory, so a model that cannot fit is said at once. */
export async function warnIfTooLarge(dir: string, free = os.freemem()): Promise<void> {
  const ck = await openCheckpoint(dir);
  const need = estimateMemory(ck.config, { weightBytes: ck.totalBytes, batchTokens: 512, contextTokens: 512 }).totalBytes;
  if (need > free)
    warn(`${dir}: running the model needs about ${(need / 2 ** 30).toFixed(1)} GiB (langneurons info ${dir}), more than the ${(free / 2 ** 30).toFixed(1)} GiB of free memory; it may fail or swap`);
}
