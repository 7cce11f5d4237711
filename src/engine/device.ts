// Which runtime a model runs on: 'cpu', 'cuda' (the first GPU), 'cuda:N', or 'auto' (the first GPU this build can
// run on, else the CPU, said once on stderr with the reason). An explicit 'cuda' without a usable device is an
// error, never a silent fallback (node-llama-cpp's and sharp's rule).
import { existsSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import type { Addon } from '../native/addon.js';

export type DeviceRequest = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export type ResolvedDevice = 'cpu' | `cuda:${number}`;

/** 'cpu' or 'cuda': what a result's number depends on, not which of a machine's GPUs gave it (the GPU model and the
 *  library's version are the engine kind's, LanguageModel.engineKind()). */
export function deviceKind(device: string): 'cpu' | 'cuda' {
  return device.startsWith('cuda') ? 'cuda' : 'cpu';
}

export function isDeviceRequest(s: string): s is DeviceRequest {
  return s === 'auto' || s === 'cpu' || s === 'cuda' || /^cuda:\d{1,3}$/.test(s);
}

let fallbackSaid = false;

/** Whether this machine shows an NVIDIA driver (so a GPU was probably expected). */
export function nvidiaDriverPresent(): boolean {
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl');
}

/** Why CUDA device `index` cannot run this build's GPU code ('' when it can): no device (the reason), no such
 *  index, or a GPU whose compute capability the build has no code for. */
export function cudaDeviceProblem(cuda: ReturnType<Addon['cudaInfo']>, index = 0): string {
  if (cuda.devices === 0) return cuda.reason || 'no CUDA device';
  if (index >= cuda.devices) return `this machine has ${cuda.devices} CUDA device${cuda.devices === 1 ? '' : 's'}`;
  return cuda.problems?.[index] ?? '';
}

/** Resolves a request against the addon's CUDA support. `quietAuto`: the default 'auto' (not asked for by the
 *  user) stays quiet on a machine with no NVIDIA driver, where nobody expects a GPU; with a driver, or when
 *  'auto' is asked for explicitly, the fallback to the CPU is said once, with the reason. */
export function resolveDevice(request: string, addon: Pick<Addon, 'cudaInfo' | 'kernelInfo'>, threads: number,
  opts: { quietAuto?: boolean; driverPresent?: boolean; warn?: (line: string) => void } = {}): ResolvedDevice {
  if (!isDeviceRequest(request))
    throw new LangneuronsError('E_OPTIONS', `device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '${request}'`, { field: 'device' });
  if (request === 'cpu') return 'cpu';
  const cuda = addon.cudaInfo();
  if (request === 'auto') {
    // The CUDA simulator (an addon built by scripts/cuda-sim-check.sh) runs kernels on the CPU, far slower than the
    // CPU engine: only an explicit --device cuda uses it.
    const usable = Array.from({ length: cuda.devices }, (_, i) => i).find((i) => !cudaDeviceProblem(cuda, i));
    if (usable !== undefined && !cuda.simulated) return `cuda:${usable}`;
    const why = cuda.simulated ? 'this addon is built on the CUDA simulator, not a GPU' : cudaDeviceProblem(cuda);
    if (!(opts.quietAuto && !(opts.driverPresent ?? nvidiaDriverPresent()) && !cuda.simulated) && !fallbackSaid) {
      fallbackSaid = true;
      (opts.warn ?? ((l: string) => process.stderr.write(`${l}\n`)))(
        `langneurons: no usable CUDA device (${why}): using the CPU backend (${addon.kernelInfo().kernel} kernels, ${threads} threads)`);
    }
    return 'cpu';
  }
  const index = request === 'cuda' ? 0 : Number(request.slice(5));
  if (cuda.devices === 0)
    throw new LangneuronsError('E_DEVICE', `--device ${request}: no usable CUDA device: ${cuda.reason}`, { field: 'device' });
  if (index >= cuda.devices)
    throw new LangneuronsError('E_DEVICE', `--device ${request}: there ${cuda.devices === 1 ? 'is 1 CUDA device' : `are ${cuda.devices} CUDA devices`} (cuda:0${cuda.devices > 1 ? ` … cuda:${cuda.devices - 1}` : ''})`, { field: 'device' });
  const problem = cudaDeviceProblem(cuda, index);
  if (problem) throw new LangneuronsError('E_DEVICE', `--device ${request}: ${problem}`, { field: 'device' });
  return `cuda:${index}`;
}

/** For tests: forget that the fallback line was printed. */
export function resetDeviceNotice(): void { fallbackSaid = false; }
