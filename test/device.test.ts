// Device selection (src/engine/device.ts), the loud CPU fallback, and dispose(): on every machine. The GPU's own
// results are tested by test/gpu-runtime.test.ts (skipped without a CUDA device).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { resetDeviceNotice, resolveDevice } from '../src/engine/device.js';
import { loadModel } from '../src/engine/model.js';
import { loadAddon } from '../src/native/addon.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const kernelInfo = () => ({ kernel: 'avx2', hardwareThreads: 2 });
const addonWith = (built: boolean, devices: number, reason: string) => ({ cudaInfo: () => ({ built, devices, reason }), kernelInfo });

describe('resolveDevice', () => {
  afterEach(() => resetDeviceNotice());

  it('cpu is always the CPU; auto takes the first GPU when there is one', () => {
    expect(resolveDevice('cpu', addonWith(true, 2, ''), 4)).toBe('cpu');
    expect(resolveDevice('auto', addonWith(true, 2, ''), 4)).toBe('cuda:0');
    expect(resolveDevice('cuda', addonWith(true, 2, ''), 4)).toBe('cuda:0');
    expect(resolveDevice('cuda:1', addonWith(true, 2, ''), 4)).toBe('cuda:1');
  });

  it('auto without a device falls back to the CPU and says so once, with the reason', () => {
    const lines: string[] = [];
    const warn = (l: string) => lines.push(l);
    const a = addonWith(true, 0, 'no CUDA device found');
    expect(resolveDevice('auto', a, 8, { warn })).toBe('cpu');
    expect(resolveDevice('auto', a, 8, { warn })).toBe('cpu');
    expect(lines).toEqual(['langneurons: no usable CUDA device (no CUDA device found): using the CPU backend (avx2 kernels, 8 threads)']);
  });

  it('the default auto stays quiet on a machine without an NVIDIA driver; with one, or asked for, it speaks', () => {
    const lines: string[] = [];
    const warn = (l: string) => lines.push(l);
    const a = addonWith(true, 0, 'no CUDA driver');
    expect(resolveDevice('auto', a, 2, { quietAuto: true, driverPresent: false, warn })).toBe('cpu');
    expect(lines).toEqual([]);
    expect(resolveDevice('auto', a, 2, { quietAuto: true, driverPresent: true, warn })).toBe('cpu');
    expect(lines).toHaveLength(1);
    resetDeviceNotice();
    expect(resolveDevice('auto', a, 2, { driverPresent: false, warn })).toBe('cpu');
    expect(lines).toHaveLength(2);
  });

  it('auto never picks the CUDA simulator (kernels on the CPU); an explicit cuda does', () => {
    const lines: string[] = [];
    const sim = { cudaInfo: () => ({ built: true, devices: 1, reason: '', simulated: true }), kernelInfo };
    expect(resolveDevice('auto', sim, 2, { quietAuto: true, driverPresent: false, warn: (l) => lines.push(l) })).toBe('cpu');
    expect(lines).toEqual(['langneurons: no usable CUDA device (this addon is built on the CUDA simulator, not a GPU): using the CPU backend (avx2 kernels, 2 threads)']);
    expect(resolveDevice('cuda', sim, 2)).toBe('cuda:0');
  });

  it('a GPU this build has no code for: auto takes the next one or the CPU, saying why; an explicit request is an error', () => {
    const t4 = 'cuda:0 (Tesla T4) has compute capability 7.5, and this build\'s GPU code is for LN_CUDA_ARCHITECTURES="80;90" only';
    const mixed = { cudaInfo: () => ({ built: true, devices: 2, reason: '', problems: [t4, ''] }), kernelInfo };
    expect(resolveDevice('auto', mixed, 2)).toBe('cuda:1');
    expect(resolveDevice('cuda:1', mixed, 2)).toBe('cuda:1');
    expect(() => resolveDevice('cuda', mixed, 2)).toThrow(`--device cuda: ${t4}`);
    const lines: string[] = [];
    const only = { cudaInfo: () => ({ built: true, devices: 1, reason: '', problems: [t4] }), kernelInfo };
    expect(resolveDevice('auto', only, 2, { quietAuto: true, driverPresent: true, warn: (l) => lines.push(l) })).toBe('cpu');
    expect(lines).toEqual([`langneurons: no usable CUDA device (${t4}): using the CPU backend (avx2 kernels, 2 threads)`]);
  });

  it('this addon lists one problem per device it reports', () => {
    const info = loadAddon().cudaInfo();
    expect(info.problems).toHaveLength(info.devices);
  });

  it('an explicit cuda without a usable device is an error naming the reason, never a fallback', () => {
    expect(() => resolveDevice('cuda', addonWith(true, 0, 'no CUDA driver'), 2)).toThrow(/--device cuda: no usable CUDA device: no CUDA driver/);
    expect(() => resolveDevice('cuda:2', addonWith(true, 2, ''), 2)).toThrow(/there are 2 CUDA devices \(cuda:0 … cuda:1\)/);
    expect(() => resolveDevice('gpu', addonWith(true, 1, ''), 2)).toThrow(/device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'/);
  });
});

const cuda = loadAddon().cudaInfo();

describe('this build', () => {
  it('reports whether it has the CUDA runtime and why no device is usable', () => {
    expect(typeof cuda.built).toBe('boolean');
    if (cuda.devices === 0) expect(cuda.reason.length).toBeGreaterThan(10);
    else expect(cuda.reason).toBe('');
  });

  it.skipIf(cuda.devices > 0)('--device cuda without a usable device: one clear line, exit 1', () => {
    const bin = path.join(repoRoot, 'bin', 'langneurons.js');
    const r = spawnSync(process.execPath, [bin, 'score', fixturePath('stories260k'), '--text', 'hello', '--device', 'cuda'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/--device cuda: no usable CUDA device/);
  });

  it.skipIf(cuda.devices > 0)('info --device auto without a usable device: the CPU engine\'s figures against its own estimate', () => {
    const bin = path.join(repoRoot, 'bin', 'langneurons.js');
    const r = spawnSync(process.execPath, [bin, 'info', fixturePath('tiny-llama3'), '--device', 'auto', '--context', '256', '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/no usable CUDA device.*using the CPU backend/);
    const j = JSON.parse(r.stdout);
    expect(j.device.device).toBe('cpu');
    // The BF16 checkpoint is memory-mapped as stored and the cache is float32: not the GPU runtime's f32 copy.
    expect(j.device.estimate).toEqual({ ...j.memory, batchTokens: undefined, contextTokens: undefined });
    expect(j.device.measured.weights).toBe(j.memory.weightBytes);
    expect(j.device.measured.kvCache).toBe(j.device.estimate.kvCacheBytes);
  });
});

describe('dispose', () => {
  it('frees the model after queued forwards; later forwards and info are refused; idempotent', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1, device: 'cpu' });
    expect(model.device).toBe('cpu');
    expect(model.info().describe).toMatch(/^cpu: \w+ kernels, 1 threads, f32$/);
    const pending = model.forward([[1, 2, 3]], { logits: 'last' });
    await model.dispose();
    expect((await pending).logits.length).toBe(model.vocabSize); // queued before dispose: it ran
    await expect(model.forward([[1, 2]])).rejects.toThrow(/was disposed/);
    expect(() => model.info()).toThrow(/disposed/);
    await model.dispose();
    expect(model.isDisposed).toBe(true);
  });

  it('is what `await using` calls', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1, device: 'cpu' });
    await model[Symbol.asyncDispose]();
    expect(model.isDisposed).toBe(true);
  });

  it('reports the memory the runtime holds', async () => {
    const model = await loadModel(fixturePath('tiny-qwen2'), { threads: 1, device: 'cpu' });
    await model.forward([[1, 2, 3, 4]], { logits: 'last' });
    const cache = model.createCache(2, 16);
    const m = model.info().memory;
    expect(m.weights).toBeGreaterThan(0);
    expect(m.kvCache).toBe(cache.bytes);
    expect(m.activations).toBeGreaterThan(0);
    expect(m.deviceTotal).toBe(0);
    await model.dispose();
  });
});

// What a project that installed langneurons meets when its install script did not run (npm 12 and later skip a
// dependency's install script unless the project's package.json approves it): one line naming the file and the
// commands that build it, exit 1.
describe('a missing native addon', () => {
  // The CLI of the package at `root`, with exactly the environment `env`.
  const run = (root: string, env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, [path.join(root, 'bin', 'langneurons.js'), 'score', fixturePath('stories260k'), '--text', 'hello'],
      { encoding: 'utf8', env });

  it('LANGNEURONS_ADDON naming no file: one line naming it', () => {
    const r = run(repoRoot, { ...process.env, LANGNEURONS_ADDON: '/nonexistent/langneurons.node' });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual(['langneurons: error: LANGNEURONS_ADDON=/nonexistent/langneurons.node: no such file (expected the path of a built langneurons.node)']);
  });

  it('a package without build/: one line naming the file and how to build it, also from a depending project', () => {
    const pkg = mkdtempSync(path.join(os.tmpdir(), 'ln-no-addon-'));
    try {
      for (const part of ['package.json', 'bin', 'dist']) cpSync(path.join(repoRoot, part), path.join(pkg, part), { recursive: true });
      symlinkSync(path.join(repoRoot, 'node_modules'), path.join(pkg, 'node_modules'));
      const env = { ...process.env };
      delete env.LANGNEURONS_ADDON;
      const r = run(pkg, env);
      expect(r.status).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`native addon not found at ${path.join(pkg, 'build', 'Release', 'langneurons.node')}`);
      expect(lines[0]).toContain('`npm rebuild langneurons`, after `npm install-scripts approve langneurons`');
    } finally {
      rmSync(pkg, { recursive: true, force: true });
    }
  });
});
