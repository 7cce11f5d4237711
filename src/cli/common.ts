// Options every model-running command shares.
import { Option, type Command } from 'commander';
import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadModel, type LanguageModel } from '../engine/model.js';
import { warn } from '../io/text.js';
import { estimateMemory, openCheckpoint } from '../model/checkpoint.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { parseIntOption } from './output.js';
import { deviceKind, isDeviceRequest, type DeviceRequest } from '../engine/device.js';
import { LangneuronsError } from '../errors.js';

export interface ModelCliOptions { threads?: number; compute?: 'f32' | 'bf16'; device?: string; json?: boolean }

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', `engine threads (default: ${os.availableParallelism()}, the machine's cores)`, parseIntOption('--threads', 1, 1024))
    .addOption(new Option('--compute <mode>', 'f32: float32 throughout (CPU default); bf16: bf16 products, float32 accumulation (GPU default)').choices(['f32', 'bf16']))
    .option('--device <device>', 'auto (default: a usable GPU, else the CPU), cpu, cuda, cuda:N')
    .option('--json', 'print one JSON document on stdout (no progress output)');
}

/** Sequences decoded together by default (eval's --batch-items, generate's --batch). A GPU decode step reads the
 *  weights once for the whole batch, so 64 sequences cost little more than 16 there; the CPU's step grows with the
 *  batch. On a GPU the batch is also held to what half the device memory left after loading the model holds in KV
 *  cache at 2048 tokens a sequence (an 8B model: 64 on an 80 GB GPU, 40 on a 40 GB one, 16 on a 24 GB one). */
export const DECODE_BATCH = { cpu: 16, gpu: 64 } as const;
const KV_TOKENS_PER_SEQUENCE = 2048;

export function decodeBatchFor(model: Pick<LanguageModel, 'device' | 'compute' | 'config' | 'info'>): number {
  if (model.device === 'cpu') return DECODE_BATCH.cpu;
  const { deviceTotal, deviceUsed } = model.info().memory;
  const c = model.config;
  const kvBytesPerToken = 2 * c.numLayers * c.numKvHeads * c.headDim * (model.compute === 'bf16' ? 2 : 4);
  const fits = Math.floor((0.5 * Math.max(0, deviceTotal - deviceUsed)) / (kvBytesPerToken * KV_TOKENS_PER_SEQUENCE) / 8) * 8;
  return Math.max(DECODE_BATCH.cpu, Math.min(DECODE_BATCH.gpu, fits));
}

/** --device checked: auto, cpu, cuda or cuda:N. */
/**
 * What every result of `model` (opened from `dir`) depends on besides its inputs, for the keys of resumable runs: the
 * model's content, its device and compute mode, and the engine's kind (LanguageModel.engineKind()).
 */
export async function engineIdentity(model: LanguageModel, dir: string): Promise<{ model: string; device: string; compute: string; engine: string }> {
  return { model: await modelFingerprint(dir), device: deviceKind(model.device), compute: model.compute, engine: model.engineKind() };
}

export function deviceOption(device: string): DeviceRequest {
  if (!isDeviceRequest(device)) throw new LangneuronsError('E_OPTIONS', `--device must be auto, cpu, cuda or cuda:N, got '${device}'`, { field: '--device' });
  return device;
}

export async function openModel(dir: string, o: ModelCliOptions): Promise<LanguageModel> {
  if (o.device !== undefined) deviceOption(o.device);
  // The host-memory estimate concerns the CPU engine; a GPU runtime holds its own copy on the device.
  if (!o.device?.startsWith('cuda')) await warnIfTooLarge(dir);
  return loadModel(dir, {
    ...(o.threads ? { threads: o.threads } : {}),
    ...(o.compute ? { compute: o.compute } : {}),
    ...(o.device !== undefined ? { device: o.device as DeviceRequest } : {}),
  });
}

/** Before loading: `info`'s memory estimate against the free memory, so a model that cannot fit is said at once. */
export async function warnIfTooLarge(dir: string, free = os.freemem()): Promise<void> {
  const ck = await openCheckpoint(dir);
  const need = estimateMemory(ck.config, { weightBytes: ck.totalBytes, batchTokens: 512, contextTokens: 512 }).totalBytes;
  if (need > free)
    warn(`${dir}: running the model needs about ${(need / 2 ** 30).toFixed(1)} GiB (langneurons info ${dir}), more than the ${(free / 2 ** 30).toFixed(1)} GiB of free memory; it may fail or swap`);
}

/**
 * Refuses an output option that names a folder where the command writes a file: a path ending in a separator (or in
 * `.` / `..`), or an existing folder. Checked before anything else: otherwise the lock beside it (`<out>.lock`) failed
 * with a bare ENOENT naming `<folder>/.lock`, or a folder was taken for an earlier result.
 */
export function requireOutputFile(out: string, option = '--out'): void {
  const base = path.basename(out);
  const folder = out.endsWith('/') || out.endsWith(path.sep) || base === '' || base === '.' || base === '..' ||
    (() => { try { return statSync(out).isDirectory(); } catch { return false; } })();
  if (folder)
    throw new LangneuronsError('E_OPTIONS', `${option} ${out}: must be a file path (such as result.json), not a folder`, { field: option });
}
