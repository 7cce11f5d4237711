// Fine-tuning on the GPU (the CUDA trainer behind `finetune --device cuda`) against the CPU trainer, through the
// binding, the loop and the CLI. Skipped (and reported as skipped) without a usable CUDA device;
// `scripts/gpu-check.sh` runs it on a GPU.
//
// Tolerances (f32 mode; GEMM sums in another order, FMAs, expf by an ulp: docs/CUDA.md):
//   - one forward + backward: loss within 1e-5 relative, every parameter's gradient within 1e-4 relative (L2;
//     1e-3 for a tensor whose gradient is under 1e-6 of the largest, as native_gpu_tests gpu_trainer_*);
//   - a whole run (4 AdamW steps, accumulation, clipping, validation): every step's loss and the validation loss
//     within 2e-4 relative; the trained values' change from their start within 1e-2 relative (L2) of the CPU's
//     change, and at most 0.1% of values more than 0.1 lr apart (Adam's first steps move every value by about lr,
//     whatever its gradient's size, so a gradient within rounding of 0 can move the other way);
//   - weights outside the mask: bit-identical to the checkpoint (both compute modes);
//   - resume after a kill: bit-identical to the uninterrupted run on the same GPU (bf16, the default mode).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { readAllTensors } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { cudaDeviceProblem } from '../src/engine/device.js';
import { loadAddon } from '../src/native/addon.js';
import { modelIdentity } from '../src/profile/identity.js';
import { finetune, resume, type FinetuneOptions } from '../src/train/finetune.js';
import { LORA_DEFAULTS, METHODS, randomNeurons, selectTrainable, type FinetuneMethod } from '../src/train/methods.js';
import { createNativeTrainer, tensorName, type NativeTrainer } from '../src/train/native.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const cuda = loadAddon().cudaInfo();
const gpuProblem = cudaDeviceProblem(cuda);  // none, or a GPU this build has no code for: skipped
const noGpu = gpuProblem !== '';
// On the CUDA simulator (scripts/cuda-sim-check.sh --node) the kernels run on the CPU: longer time limits.
const LIMIT = cuda.simulated ? 6 : 1;
if (noGpu) console.log(`gpu-finetune tests skipped: ${gpuProblem}`);

const STORIES = fixturePath('stories260k');
const LLAMA3 = fixturePath('tiny-llama3');
// The families' special parts through the CUDA trainer (Gemma 2: a sliding window of 8 on these 17 / 23 tokens).
const FAMILIES = (['tiny-gemma2', 'tiny-cohere', 'tiny-qwen3'] as const).map((n) => fixturePath(n));
const BIN = path.join(repoRoot, 'bin', 'langneurons.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-gpu-finetune-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const arts = udhrArticles('mt');
const trainFile = path.join(tmp, 'train.txt'), validFile = path.join(tmp, 'valid.txt');
writeFileSync(trainFile, arts.filter((a) => a.number <= 4).map((a) => a.text).join('\n') + '\n');
writeFileSync(validFile, arts.filter((a) => a.number >= 25 && a.number <= 26).map((a) => a.text).join('\n') + '\n');

async function maskFor(dir: string, name: string): Promise<{ file: string; mask: NeuronMask }> {
  const ck = await openCheckpoint(dir);
  const L = ck.config.numLayers, I = ck.config.intermediateSize;
  const mask: NeuronMask = {
    format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [], layers: L, width: I,
    languages: { mt: randomNeurons(L, I, Math.max(1, Math.round(0.05 * L * I)), 99) },
  };
  const file = path.join(tmp, `mask-${name}.json`);
  await writeMask(file, mask);
  return { file, mask };
}

const relL2 = (a: Float32Array, b: Float32Array) => {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i]! - b[i]!) ** 2; n += b[i]! ** 2; }
  return Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-30);
};
const f32 = (t: { data: unknown }) => t.data as Float32Array;
const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const logOf = (run: string) => readFileSync(path.join(run, 'train.jsonl'), 'utf8').trim().split('\n')
  .map((l) => { const e = JSON.parse(l) as Record<string, unknown>; delete e.tokensPerSecond; delete e.seconds; return e; });

/** A CPU trainer and a CUDA f32 trainer of the same method and seed (same parameter table and initial values). */
async function trainers(dir: string, method: FinetuneMethod): Promise<{ cpu: NativeTrainer; gpu: NativeTrainer }> {
  const ck = await openCheckpoint(dir);
  const m = method === 'neurons' || method === 'random' || method === 'neuron-lora' ? await maskFor(dir, `${method}-grad`) : null;
  const sel = selectTrainable(method, ck, { ...(m ? { mask: m.mask, maskFile: m.file, langs: ['mt'] } : {}), seed: 3,
    ...(method === 'lora' || method === 'neuron-lora' ? { lora: LORA_DEFAULTS[method] } : {}) });
  return {
    cpu: createNativeTrainer(ck, 2, sel.trainable, { seed: 3 }),
    gpu: createNativeTrainer(ck, 2, sel.trainable, { seed: 3, device: 0, compute: 'f32' }),
  };
}

describe.skipIf(noGpu)('gpu finetune: one forward + backward against the CPU trainer (f32)', () => {
  it.each(METHODS)('%s: the loss and every parameter gradient', async (method) => {
    for (const dir of [STORIES, LLAMA3, ...FAMILIES]) {
      const { cpu, gpu } = await trainers(dir, method);
      expect(gpu.info().device).toBe('cuda:0');
      expect(gpu.params().map((p) => [p.role, p.layer, p.mode, p.size])).toEqual(cpu.params().map((p) => [p.role, p.layer, p.mode, p.size]));
      for (const p of cpu.params()) if (p.size) expect(bytesOf(gpu.read('master', p.id)).equals(bytesOf(cpu.read('master', p.id))), `${p.role}.${p.layer} initial`).toBe(true);
      const ck = await openCheckpoint(dir);
      const ids = Int32Array.from({ length: 41 }, (_, i) => (i * 7919 + 13) % ck.config.vocabSize);
      const tokens = ids.subarray(0, 40), targets = ids.slice(1), lens = Int32Array.of(17, 23);
      targets[16] = -1;
      const fo = { backward: true, step: 0, micro: 0 };
      const a = await cpu.forwardBackward(tokens, targets, lens, fo), b = await gpu.forwardBackward(tokens, targets, lens, fo);
      expect(b.count).toBe(a.count);
      expect(Math.abs(b.lossSum - a.lossSum) / a.lossSum).toBeLessThan(1e-5);
      const norm = (g: Float32Array) => Math.sqrt(g.reduce((s, x) => s + x * x, 0));
      const grads = cpu.params().filter((p) => p.size).map((p) => ({ p, c: cpu.read('grad', p.id), g: gpu.read('grad', p.id) }));
      const largest = Math.max(...grads.map((x) => norm(x.c)));
      let worst = 0, where = '';
      for (const { p, c, g } of grads) {
        const e = relL2(g, c) / (norm(c) < 1e-6 * largest ? 10 : 1); // tensors with (almost) no gradient: 1e-3
        if (e > worst) { worst = e; where = `${p.role}.${p.layer}`; }
      }
      console.log(`${path.basename(dir)} ${method}: loss ${(a.lossSum / a.count).toFixed(6)}, worst gradient relative error ${worst.toExponential(2)} against its bound's 1e-4 (${where})`);
      expect(worst).toBeLessThan(1e-4);
    }
  }, 120_000 * LIMIT);
});

const run = (name: string) => path.join(tmp, name);
const baseOptions = (method: FinetuneMethod, masks: string | null): FinetuneOptions => ({
  method, train: trainFile, valid: validFile, ...(masks ? { masks, langs: ['mt'] } : {}), chunk: 32, batch: 2, accum: 2, steps: 4,
  evalEvery: 2, saveEvery: 2, lr: 1e-3, clip: 1.0, warmup: 1, schedule: 'cosine', threads: 2, seed: 5, writeModel: false,
});

describe.skipIf(noGpu)('gpu finetune: a whole CUDA f32 run against the same CPU run', () => {
  it.each(METHODS)('%s: losses, validation and the trained values', async (method) => {
    const masks = method === 'neurons' || method === 'random' || method === 'neuron-lora' ? (await maskFor(STORIES, `${method}-run`)).file : null;
    const o = baseOptions(method, masks);
    const rc = await finetune(STORIES, { ...o, device: 'cpu' }, run(`cpu-${method}`));
    const rg = await finetune(STORIES, { ...o, device: 'cuda', compute: 'f32' }, run(`gpu-${method}`));
    expect(rg.trainer).toMatchObject({ device: 'cuda:0', compute: 'f32' });
    expect(rg.trainer.memory!.master).toBeGreaterThanOrEqual(rg.trainableParameters * 4);
    const lc = logOf(run(`cpu-${method}`)), lg = logOf(run(`gpu-${method}`));
    expect(lg.length).toBe(lc.length);
    lc.forEach((e, i) => {
      for (const k of ['loss', 'validLoss'] as const) {
        if (typeof e[k] !== 'number') continue;
        const rel = Math.abs((lg[i]![k] as number) - (e[k] as number)) / (e[k] as number);
        expect(rel, `${method} line ${i + 1} ${k}: cpu ${e[k]} gpu ${lg[i]![k]}`).toBeLessThan(2e-4);
      }
    });
    // The trained values: their change from the start (a fresh trainer's master values) against the CPU's.
    const ck = await openCheckpoint(STORIES);
    const m = masks ? JSON.parse(readFileSync(masks, 'utf8')) as NeuronMask : undefined;
    const sel = selectTrainable(method, ck, { ...(m ? { mask: m, maskFile: masks!, langs: ['mt'] } : {}), seed: 5, ...(method === 'lora' || method === 'neuron-lora' ? { lora: LORA_DEFAULTS[method] } : {}) });
    const init = createNativeTrainer(ck, 2, sel.trainable, { seed: 5 });
    const sc = await readAllTensors(path.join(run(`cpu-${method}`), 'state', 'state.safetensors'));
    const sg = await readAllTensors(path.join(run(`gpu-${method}`), 'state', 'state.safetensors'));
    let far = 0, total = 0, worst = 0;
    for (const p of init.params()) {
      if (!p.size) continue;
      const n = `${tensorName(p.role, p.layer, ck.config.modelType)}.master`;
      const w0 = init.read('master', p.id), wc = f32(sc.get(n)!), wg = f32(sg.get(n)!);
      const dc = wc.map((x, i) => x - w0[i]!), dg = wg.map((x, i) => x - w0[i]!);
      worst = Math.max(worst, relL2(dg, dc));
      for (let i = 0; i < wc.length; i++) if (Math.abs(wg[i]! - wc[i]!) > 0.1 * o.lr!) far++;
      total += wc.length;
    }
    console.log(`${method}: trained change relative error ${worst.toExponential(2)}, ${far} of ${total} values more than 0.1 lr apart`);
    expect(worst).toBeLessThan(1e-2);
    expect(far / total).toBeLessThanOrEqual(1e-3);
  }, 180_000 * LIMIT);
});

/** Every file under dir with its bytes and modification time (a refused resume changes none). */
function snapshotDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()) {
    const full = path.join(dir, f), st = statSync(full);
    if (st.isFile()) out[f] = `${st.mtimeMs} ${readFileSync(full).toString('base64')}`;
  }
  return out;
}

describe.skipIf(noGpu)('gpu finetune: what the CUDA trainer leaves alone, and resume', () => {
  it.each(['bf16', 'f32'] as const)('neurons (%s): every weight outside the mask bit-identical to the BF16 checkpoint', async (compute) => {
    const { file, mask } = await maskFor(LLAMA3, `outside-${compute}`);
    const dir = run(`outside-${compute}`);
    await finetune(LLAMA3, { ...baseOptions('neurons', file), valid: undefined, evalEvery: 0, lr: 1e-2, writeModel: true, device: 'cuda', compute }, dir);
    const base = await openCheckpoint(LLAMA3);
    const out = await readAllTensors(path.join(dir, 'model', 'model.safetensors'));
    const H = base.config.hiddenSize, I = base.config.intermediateSize;
    let changed = 0;
    for (const [name, info] of base.tensors) {
      const a = Buffer.from(readFileSync(info.file).subarray(info.byteOffset, info.byteOffset + info.byteLength));
      const b = bytesOf(out.get(name)!.data as Uint16Array);
      const mm = /^model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/.exec(name);
      if (!mm) { expect(a.equals(b), name).toBe(true); continue; }
      const sel = new Set(mask.languages['mt']![Number(mm[1])]!);
      for (let i = 0; i < info.byteLength / 2; i++) {
        const neuron = mm[2] === 'down' ? i % I : Math.floor(i / H);
        const same = a.readUInt16LE(2 * i) === b.readUInt16LE(2 * i);
        if (!sel.has(neuron)) { if (!same) expect.fail(`${name}[${i}] outside the mask changed`); } else if (!same) changed++;
      }
    }
    expect(changed).toBeGreaterThan(0);
  }, 120_000 * LIMIT);

  it.each(['neurons', 'lora'] as const)('%s (bf16): killed and resumed on the GPU, bit-identical to an uninterrupted run', async (method) => {
    const masks = method === 'neurons' ? (await maskFor(STORIES, 'resume')).file : null;
    const o = { ...baseOptions(method, masks), steps: 6, device: 'cuda' };
    const a = run(`resume-a-${method}`), b = run(`resume-b-${method}`);
    await finetune(STORIES, o, a);
    expect((await finetune(STORIES, o, b, { stopAfterStep: 4 })).steps).toBe(4);
    const r = await resume(b);
    expect(r.trainer).toMatchObject({ device: 'cuda:0', compute: 'bf16' });
    const files = method === 'lora' ? ['adapter/adapter_model.safetensors', 'state/state.safetensors'] : ['delta.safetensors', 'state/state.safetensors'];
    for (const f of files) {
      const x = await readAllTensors(path.join(a, f)), y = await readAllTensors(path.join(b, f));
      expect([...y.keys()].sort()).toEqual([...x.keys()].sort());
      for (const [k, v] of x) expect(bytesOf(y.get(k)!.data as Float32Array).equals(bytesOf(v.data as Float32Array)), `${f} ${k}`).toBe(true);
    }
    expect(logOf(b)).toEqual(logOf(a));
  }, 180_000 * LIMIT);

  it('--recompute (bf16): the same log, delta and adapter bit for bit, fewer activation bytes, recorded in run.json', async () => {
    const { file } = await maskFor(LLAMA3, 'recompute');
    for (const method of ['neurons', 'lora'] as const) {
      const o = { ...baseOptions(method, method === 'neurons' ? file : null), device: 'cuda' };
      const a = run(`recompute-off-${method}`), b = run(`recompute-on-${method}`);
      const ra = await finetune(LLAMA3, o, a), rb = await finetune(LLAMA3, { ...o, recompute: true }, b);
      expect(logOf(b)).toEqual(logOf(a));
      const f = method === 'lora' ? 'adapter/adapter_model.safetensors' : 'delta.safetensors';
      const x = await readAllTensors(path.join(a, f)), y = await readAllTensors(path.join(b, f));
      for (const [k, v] of x) expect(bytesOf(y.get(k)!.data as Float32Array).equals(bytesOf(v.data as Float32Array)), `${method} ${k}`).toBe(true);
      expect(rb.trainer.memory!.activations).toBeLessThan(ra.trainer.memory!.activations);
      expect(JSON.parse(readFileSync(path.join(b, 'run.json'), 'utf8')).options.recompute).toBe(true);
      expect(JSON.parse(readFileSync(path.join(a, 'run.json'), 'utf8')).options.recompute).toBeUndefined();
    }
  }, 240_000 * LIMIT);

  it('CLI: --device cuda --json reports the device, the compute mode and the memory; resuming elsewhere is refused in one line', () => {
    const dir = run('cli');
    const r = spawnSync(process.execPath, [BIN, 'finetune', STORIES, '--method', 'mlp', '--train', trainFile, '--out', dir, '--steps', '2',
      '--chunk', '32', '--save-every', '1', '--device', 'cuda', '--compute', 'f32', '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.trainer).toMatchObject({ device: 'cuda:0', compute: 'f32' });
    expect(res.trainer.describe).toMatch(/cuda:0/);
    for (const k of ['weights', 'master', 'grad', 'adam', 'activations', 'deviceUsed', 'deviceTotal']) expect(res.trainer.memory[k], k).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')).options).toMatchObject({ device: 'cuda:0', compute: 'f32' });
    for (const extra of [['--device', 'cpu'], ['--compute', 'bf16']]) {
      const x = spawnSync(process.execPath, [BIN, 'finetune', '--resume', dir, ...extra], { encoding: 'utf8' });
      expect(x.status).toBe(1);
      expect(x.stderr.trim().split('\n')).toHaveLength(1);
      expect(x.stderr).toMatch(/the run trains on cuda:0 \(f32\); .*a run resumes bit-identically only on the device, compute mode and kernel family it started with/);
    }
    // A requeued job on another GPU model (or finding another cuBLASLt) at the same index: refused, the folder unchanged.
    const runJson = path.join(dir, 'run.json'), rec = JSON.parse(readFileSync(runJson, 'utf8'));
    for (const describe of [rec.trainer.describe.replace(/\(([^)]*)\)/, '(NVIDIA A100-SXM4-80GB)'), rec.trainer.describe.replace(/cuBLASLt .*$/, 'cuBLASLt 12.2.5')]) {
      expect(describe).not.toBe(rec.trainer.describe);
      writeFileSync(runJson, JSON.stringify({ ...rec, trainer: { ...rec.trainer, describe } }));
      const before = snapshotDir(dir);
      const x = spawnSync(process.execPath, [BIN, 'finetune', '--resume', dir], { encoding: 'utf8' });
      expect(x.status, x.stderr).toBe(1);
      expect(x.stderr.trim().split('\n')).toHaveLength(1);
      expect(x.stderr).toContain(`the run trained on "${describe}", this machine's trainer is "${rec.trainer.describe}"`);
      expect(snapshotDir(dir)).toEqual(before);
    }
  }, 120_000 * LIMIT);
});

describe('finetune --recompute without a GPU', () => {
  it('is refused in one line on the CPU trainer (exit 1), before anything is written', () => {
    const dir = run('recompute-cpu');
    const r = spawnSync(process.execPath, [BIN, 'finetune', STORIES, '--method', 'mlp', '--train', trainFile, '--out', dir, '--steps', '1',
      '--device', 'cpu', '--recompute'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--recompute is for the CUDA trainer/);
    expect(existsSync(dir)).toBe(false);
  });
});
