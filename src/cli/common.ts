// Options every model-running command shares.
import { Option, type Command } from 'commander';
import os from 'node:os';

import { loadModel, type LanguageModel } from '../engine/model.js';
import { parseIntOption } from './output.js';

export interface ModelCliOptions { threads?: number; compute?: 'f32' | 'bf16'; json?: boolean }

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', `engine threads (default: ${os.availableParallelism()}, the machine's cores)`, parseIntOption('--threads', 1, 1024))
    .addOption(new Option('--compute <mode>', 'f32: float32 throughout; bf16: bf16 products, float32 accumulation').choices(['f32', 'bf16']).default('f32'))
    .option('--json', 'print one JSON document on stdout (no progress output)');
}

export function openModel(dir: string, o: ModelCliOptions): Promise<LanguageModel> {
  return loadModel(dir, { ...(o.threads ? { threads: o.threads } : {}), compute: o.compute ?? 'f32' });
}
