// Where a fine-tuning run trains (src/train/placement.ts) on every machine: --device / --compute resolved as the
// model commands resolve them, recorded in run.json, shown in the result; an explicit cuda without a usable device
// and a resume on another device or compute mode refused in one line. The GPU's own results:
// test/gpu-finetune.test.ts (skipped without a CUDA device).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { resetDeviceNotice } from '../src/engine/device.js';
import { readAllTensors } from '../src/io/safetensors.js';
import { loadAddon } from '../src/native/addon.js';
import { finetune, resume } from '../src/train/finetune.js';
import { resolvePlacement, resumePlacement } from '../src/train/placement.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const cuda = loadAddon().cudaInfo();
const STORIES = fixturePath('stories260k');
const BIN = path.join(repoRoot, 'bin', 'langneurons.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-ft-device-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const trainFile = path.join(tmp, 'train.txt');
writeFileSync(trainFile, udhrArticles('mt').filter((a) => a.number <= 3).map((a) => a.text).join('\n') + '\n');
const fast = { method: 'mlp' as const, train: trainFile, chunk: 32, batch: 2, evalEvery: 0, saveEvery: 1, threads: 2, steps: 3, lr: 1e-3, writeModel: false };

const kernelInfo = () => ({ kernel: 'avx2', hardwareThreads: 2 });
const gpus = (devices: number) => ({ cudaInfo: () => ({ built: true, devices, reason: devices ? '' : 'no NVIDIA driver' }), kernelInfo });

function cli(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
}

describe('placement', () => {
  afterEach(() => resetDeviceNotice());

  it('a new run: cpu trains in f32; a GPU in bf16 unless f32 is asked for; bf16 on the CPU is refused', () => {
    expect(resolvePlacement({ device: 'cpu' }, 2, gpus(2))).toEqual({ device: 'cpu', compute: 'f32', kernel: 'avx2' });
    expect(resolvePlacement({}, 2, gpus(2))).toEqual({ device: 'cuda:0', compute: 'bf16' });
    expect(resolvePlacement({ device: 'cuda:1', compute: 'f32' }, 2, gpus(2))).toEqual({ device: 'cuda:1', compute: 'f32' });
    expect(resolvePlacement({ device: 'auto' }, 2, gpus(0))).toEqual({ device: 'cpu', compute: 'f32', kernel: 'avx2' });
    expect(() => resolvePlacement({ device: 'cpu', compute: 'bf16' }, 2, gpus(2))).toThrow(/--compute bf16 is the CUDA trainer's mode; the CPU trainer computes in float32/);
    expect(() => resolvePlacement({ device: 'cuda', compute: 'fp16' }, 2, gpus(1))).toThrow(/--compute must be f32 or bf16, got 'fp16'/);
    expect(() => resolvePlacement({ device: 'cuda' }, 2, gpus(0))).toThrow(/--device cuda: no usable CUDA device: no NVIDIA driver/);
    expect(() => resolvePlacement({ device: 'gpu' }, 2, gpus(1))).toThrow(/device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'/);
  });

  it('a resumed run stays where it started; another device, index or compute mode is refused naming both', () => {
    const rec = { device: 'cuda:0' as const, compute: 'bf16' as const };
    expect(resumePlacement('runs/x', rec, {}, 2, gpus(2))).toEqual(rec);
    expect(resumePlacement('runs/x', rec, { device: 'cuda', compute: 'bf16' }, 2, gpus(2))).toEqual(rec);
    expect(resumePlacement('runs/x', rec, { device: 'auto' }, 2, gpus(1))).toEqual(rec);
    const refused = /^runs\/x: the run trains on cuda:0 \(bf16\); .*: a run resumes bit-identically only on the device, compute mode and kernel family it started with$/;
    expect(() => resumePlacement('runs/x', rec, { device: 'cpu' }, 2, gpus(2))).toThrow(refused);
    expect(() => resumePlacement('runs/x', rec, { device: 'cuda:1' }, 2, gpus(2))).toThrow(/resuming on cuda:1 is refused/);
    expect(() => resumePlacement('runs/x', rec, { compute: 'f32' }, 2, gpus(2))).toThrow(/resuming with --compute f32 is refused/);
    expect(() => resumePlacement('runs/x', rec, {}, 2, gpus(0))).toThrow(/cuda:0 \(bf16\); no usable CUDA device here \(no NVIDIA driver\)/);
    expect(() => resumePlacement('runs/x', { device: 'cuda:3', compute: 'f32' }, {}, 2, gpus(2))).toThrow(/this machine has 2 CUDA devices/);
    // a GPU this build has no code for (a requeue onto an older GPU)
    const t4 = { cudaInfo: () => ({ built: true, devices: 1, reason: '', problems: ['cuda:0 (Tesla T4) has compute capability 7.5, and …'] }), kernelInfo };
    expect(() => resumePlacement('runs/x', rec, {}, 2, t4)).toThrow(/the run trains on cuda:0 \(bf16\); cuda:0 \(Tesla T4\) has compute capability 7\.5/);
    expect(() => resolvePlacement({ device: 'cuda' }, 2, t4)).toThrow(/--device cuda: cuda:0 \(Tesla T4\) has compute capability 7\.5/);
    expect(resolvePlacement({}, 2, t4)).toEqual({ device: 'cpu', compute: 'f32', kernel: 'avx2' });
    // Runs from before the placement was recorded trained on the CPU in f32.
    expect(resumePlacement('runs/x', {}, {}, 2, gpus(2))).toEqual({ device: 'cpu', compute: 'f32' });
    expect(() => resumePlacement('runs/x', {}, { device: 'auto' }, 2, gpus(1))).toThrow(/the run trains on cpu \(f32\); resuming on cuda:0 is refused/);
    // A CPU run continues only on its kernel family (runs from before it was recorded, on any).
    const cpuRun = { device: 'cpu' as const, compute: 'f32' as const, kernel: 'avx512' };
    expect(resumePlacement('runs/x', { ...cpuRun, kernel: 'avx2' }, {}, 2, gpus(0))).toEqual({ ...cpuRun, kernel: 'avx2' });
    expect(() => resumePlacement('runs/x', cpuRun, {}, 2, gpus(0))).toThrow(
      /^runs\/x: the run trains on cpu \(f32, avx512 kernels\); this process runs the avx2 CPU kernels, whose products differ from avx512's in the last bits \(LANGNEURONS_KERNEL=avx512 chooses the run's family on a CPU that has it\): a run resumes/);
  });
});

describe('finetune --device on this machine', () => {
  it('run.json records where the run trains; the result and --json output say it', async () => {
    const run = path.join(tmp, 'run-cpu');
    const r = await finetune(STORIES, { ...fast, device: 'cpu' }, run);
    expect(r.trainer.device).toBe('cpu');
    expect(r.trainer.compute).toBe('f32');
    const rf = JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8'));
    expect(rf.options.device).toBe('cpu');
    expect(rf.options.compute).toBe('f32');
    const j = cli(['finetune', STORIES, '--method', 'mlp', '--train', trainFile, '--out', path.join(tmp, 'run-cli'), '--steps', '1', '--chunk', '32', '--device', 'cpu', '--json']);
    expect(j.status, j.stderr).toBe(0);
    const out = JSON.parse(j.stdout);
    expect(out.trainer).toMatchObject({ device: 'cpu', compute: 'f32' });
    const h = cli(['finetune', STORIES, '--method', 'mlp', '--train', trainFile, '--out', path.join(tmp, 'run-cli2'), '--steps', '1', '--chunk', '32', '--device', 'cpu']);
    expect(h.status, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/^device {9}cpu \(f32\)/m);
    // Progress lines: the trainer first (not in train.jsonl), then one per step.
    const events = h.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events[0]).toMatchObject({ event: 'trainer', device: 'cpu', compute: 'f32' });
    expect(readFileSync(path.join(tmp, 'run-cli2', 'train.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
  }, 60_000);

  it.skipIf(cuda.devices > 0)('--device cuda without a usable device: one clear line, exit 1, no run folder', () => {
    const out = path.join(tmp, 'run-cuda');
    for (const device of ['cuda', 'cuda:1']) {
      const r = cli(['finetune', STORIES, '--method', 'neurons', '--train', trainFile, '--out', out, '--device', device, '--compute', 'f32']);
      expect(r.status).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^langneurons: error: --device ${device}: no usable CUDA device: .{10,}`));
      expect(r.stdout).toBe('');
      expect(existsSync(out)).toBe(false);
    }
  });

  it('a resume on another device or compute mode is refused in one line and leaves the run as it was; on its own device it completes', async () => {
    const a = path.join(tmp, 'run-full'), b = path.join(tmp, 'run-part');
    await finetune(STORIES, { ...fast, device: 'cpu' }, a);
    const part = await finetune(STORIES, { ...fast, device: 'cpu' }, b, { stopAfterStep: 1 });
    expect(part.steps).toBe(1);
    const before = readFileSync(path.join(b, 'state', 'state.safetensors'));
    await expect(resume(b, {}, { compute: 'bf16' })).rejects.toThrow(/the run trains on cpu \(f32, \w+ kernels\); resuming with --compute bf16 is refused/);
    await expect(resume(b, {}, { device: 'cuda' })).rejects.toThrow(/the run trains on cpu \(f32, \w+ kernels\); /);
    const r = cli(['finetune', '--resume', b, '--device', 'cuda:0']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/the run trains on cpu \(f32, \w+ kernels\); .*a run resumes bit-identically only on the device, compute mode and kernel family it started with/);
    // A run recorded on a GPU this machine does not have.
    const rf = path.join(b, 'run.json');
    const original = readFileSync(rf, 'utf8');
    const onGpu = JSON.parse(original);
    onGpu.options.device = `cuda:${cuda.devices}`;
    onGpu.options.compute = 'bf16';
    writeFileSync(rf, JSON.stringify(onGpu));
    const g = cli(['finetune', '--resume', b]);
    expect(g.status).toBe(1);
    expect(g.stderr.trim().split('\n')).toHaveLength(1);
    expect(g.stderr).toMatch(new RegExp(`the run trains on cuda:${cuda.devices} \\(bf16\\); (no usable CUDA device here|this machine has)`));
    expect(readFileSync(path.join(b, 'state', 'state.safetensors')).equals(before)).toBe(true);
    // Another CPU kernel family (products that differ in the last bits) is refused too, naming how to continue.
    writeFileSync(rf, original);
    const kernel = JSON.parse(original).options.kernel as string;
    expect(kernel).toMatch(/^(plain|avx2|avx512|avx512bf16)$/);
    if (kernel !== 'plain') {
      const k = spawnSync(process.execPath, [BIN, 'finetune', '--resume', b], { encoding: 'utf8', env: { ...process.env, LANGNEURONS_KERNEL: 'plain' } });
      expect(k.status).toBe(1);
      expect(k.stderr).toMatch(new RegExp(`the run trains on cpu \\(f32, ${kernel} kernels\\); this process runs the plain CPU kernels, .*\\(LANGNEURONS_KERNEL=${kernel} chooses`));
      expect(readFileSync(path.join(b, 'state', 'state.safetensors')).equals(before)).toBe(true);
    }
    // A run folder from before the placement was recorded resumes on the CPU, as it trained.
    const legacy = JSON.parse(original);
    delete legacy.options.device;
    delete legacy.options.compute;
    delete legacy.options.kernel;
    writeFileSync(rf, JSON.stringify(legacy));
    const done = await resume(b, {}, { device: 'cpu' });
    expect(done.steps).toBe(3);
    expect(done.trainer.device).toBe('cpu');
    const x = await readAllTensors(path.join(a, 'delta.safetensors')), y = await readAllTensors(path.join(b, 'delta.safetensors'));
    for (const [k, t] of x) expect(Buffer.from((y.get(k)!.data as Float32Array).buffer).equals(Buffer.from((t.data as Float32Array).buffer)), k).toBe(true);
  }, 60_000);
});
