// Where a fine-tuning run trains: the device ('cpu' or 'cuda:N', resolved as the model commands resolve --device:
// src/engine/device.ts), the compute mode (the CPU trainer computes in float32; the CUDA trainer in bf16 by
// default, or f32 for checks) and on the CPU the kernel family (AVX2 and AVX-512 products differ in the last bits).
// run.json records them, and a run resumes only where it started: bit-identical resume is promised on the same
// device, compute mode and kernel family, nowhere else.
import { LangneuronsError } from '../errors.js';
import { cudaDeviceProblem, resolveDevice, type ResolvedDevice } from '../engine/device.js';
import { loadAddon, type Addon } from '../native/addon.js';
import type { NativeTrainer, NativeTrainerMemory, NativeTrainerOptions } from './native.js';

export type TrainCompute = 'f32' | 'bf16';
export interface Placement {
  device: ResolvedDevice;
  compute: TrainCompute;
  /** The CPU trainer's kernel family (absent on a GPU, and in runs from before it was recorded). */
  kernel?: string;
}
/** What the user asked for (both optional: the default device is auto, quiet on a machine without a driver). */
export interface PlacementRequest { device?: string; compute?: string }
/** What placement needs of the addon (tests pass a stand-in with devices). */
type DeviceAddon = Pick<Addon, 'cudaInfo' | 'kernelInfo'>;

function checkCompute(compute: string | undefined): TrainCompute | undefined {
  if (compute !== undefined && compute !== 'f32' && compute !== 'bf16')
    throw new LangneuronsError('E_OPTIONS', `--compute must be f32 or bf16, got '${compute}'`, { field: 'compute' });
  return compute;
}

/** The device and compute mode of a new run. */
export function resolvePlacement(req: PlacementRequest, threads: number, addon: DeviceAddon = loadAddon()): Placement {
  const compute = checkCompute(req.compute);
  const device = resolveDevice(req.device ?? 'auto', addon, threads, { quietAuto: req.device === undefined });
  if (device === 'cpu') {
    if (compute === 'bf16')
      throw new LangneuronsError('E_OPTIONS', `--compute bf16 is the CUDA trainer's mode; the CPU trainer computes in float32 (run ${req.device === undefined || req.device === 'auto' ? 'fell back to the CPU' : 'on --device cpu'})`, { field: 'compute' });
    return { device, compute: 'f32', kernel: addon.kernelInfo().kernel };
  }
  return { device, compute: compute ?? 'bf16' };
}

const describePlacement = (p: Placement) => `${p.device} (${p.compute}${p.kernel ? `, ${p.kernel} kernels` : ''})`;

/**
 * The placement a resumed run uses: the recorded one (runs from before it was recorded trained on the CPU in
 * f32). A --device / --compute that resolves to anything else is refused, as are a recorded CUDA device that is not
 * usable here and a CPU run on another kernel family: one line naming the run, where it trains and why it cannot
 * continue here.
 */
export function resumePlacement(runDir: string, recorded: Partial<Placement>, req: PlacementRequest, threads: number,
  addon: DeviceAddon = loadAddon()): Placement {
  const onDevice = recorded.device ?? 'cpu';
  const rec: Placement = { device: onDevice, compute: recorded.compute ?? 'f32', ...(onDevice === 'cpu' && recorded.kernel ? { kernel: recorded.kernel } : {}) };
  const refuse = (why: string) => new LangneuronsError('E_RESUME',
    `${runDir}: the run trains on ${describePlacement(rec)}; ${why}: a run resumes bit-identically only on the device, compute mode and kernel family it started with`);
  const compute = checkCompute(req.compute);
  let device: ResolvedDevice;
  if (req.device !== undefined) {
    try {
      device = resolveDevice(req.device, addon, threads, { warn: () => {} });
    } catch (e) {
      throw refuse((e as Error).message);
    }
  } else if (rec.device === 'cpu') {
    device = 'cpu';
  } else {
    const cuda = addon.cudaInfo();
    if (cuda.devices === 0) throw refuse(`no usable CUDA device here (${cuda.reason})`);
    const problem = cudaDeviceProblem(cuda, Number(rec.device.slice(5)));
    if (problem) throw refuse(problem);
    device = rec.device;
  }
  if (device !== rec.device) throw refuse(`resuming on ${device} is refused`);
  if (compute !== undefined && compute !== rec.compute) throw refuse(`resuming with --compute ${compute} is refused`);
  const here = addon.kernelInfo().kernel;
  if (rec.device === 'cpu' && rec.kernel !== undefined && here !== rec.kernel)
    throw refuse(`this process runs the ${here} CPU kernels, whose products differ from ${rec.kernel}'s in the last bits ` +
      `(LANGNEURONS_KERNEL=${rec.kernel} chooses the run's family on a CPU that has it)`);
  return rec;
}

/** The native trainer's options for a placement (the CPU trainer takes none). */
export function trainerDeviceOptions(p: Placement): Pick<NativeTrainerOptions, 'device' | 'compute'> {
  return p.device === 'cpu' ? {} : { device: Number(p.device.slice(5)), compute: p.compute };
}

/** Refuses a trainer that does not run where asked (an addon whose binding predates the CUDA trainer ignores the
 *  device option and would train on the CPU without a word). */
export function checkTrainerPlacement(tr: Pick<NativeTrainer, 'info'>, p: Placement): void {
  if (p.device === 'cpu') return;
  const got = tr.info().device;
  if (got !== p.device)
    throw new LangneuronsError('E_DEVICE', `--device ${p.device}: this build's trainer ${got ? `runs on ${got}` : 'has no CUDA trainer'}; rebuild the addon with the CUDA toolkit (npm run build:native with nvcc on the PATH)`, { field: 'device' });
}

/** Bytes in the largest binary unit that keeps a number >= 1 (0 B, 660.5 KiB, 2.31 GiB). */
function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : i === 3 ? 2 : 1)} ${units[i]}`;
}

/** One line of the trainer's memory report (bytes by use; the device's used / total on a GPU). */
export function formatTrainerMemory(m: NativeTrainerMemory): string {
  const parts = [`weights ${bytes(m.weights)}`, `master ${bytes(m.master)}`, `grad ${bytes(m.grad)}`, `adam ${bytes(m.adam)}`,
    `activations ${bytes(m.activations)}`, `scratch ${bytes(m.scratch)}`];
  if (m.deviceTotal > 0) parts.push(`device ${bytes(m.deviceUsed)} of ${bytes(m.deviceTotal)} used`);
  return parts.join(', ');
}
