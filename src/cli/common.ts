// Options every model-running command shares.
import { Option, type Command } from 'commander';
import os from 'node:os';

import { loadModel, type LanguageModel } from '../engine/model.js';
import { parseIntOption } from './output.js';
import { isDeviceRequest, type DeviceRequest } from '../engine/device.js';
import { LangneuronsError } from '../errors.js';

export interface ModelCliOptions { threads?: number; compute?: 'f32' | 'bf16'; device?: string; json?: boolean }

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', `engine threads (default: ${os.availableParallelism()}, the machine's cores)`, parseIntOption('--threads', 1, 1024))
    .addOption(new Option('--compute <mode>', 'f32: float32 throughout (CPU default); bf16: bf16 products, float32 accumulation (GPU default)').choices(['f32', 'bf16']))
    .option('--device <device>', 'auto (default: a usable GPU, else the CPU), cpu, cuda, cuda:N')
    .option('--json', 'print one JSON document on stdout (no progress output)');
}

export function openModel(dir: string, o: ModelCliOptions): Promise<LanguageModel> {
  if (o.device !== undefined && !isDeviceRequest(o.device))
    throw new LangneuronsError('E_OPTIONS', `--device must be auto, cpu, cuda or cuda:N, got '${o.device}'`, { field: '--device' });
  return loadModel(dir, {
    ...(o.threads ? { threads: o.threads } : {}),
    ...(o.compute ? { compute: o.compute } : {}),
    ...(o.device !== undefined ? { device: o.device as DeviceRequest } : {}),
  });
}
