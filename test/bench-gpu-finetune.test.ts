// The driver of benchmarks/gpu-finetune on the CPU trainer and a tiny shape (`--device cpu --quick`): every method
// measured, the trainable counts and FLOPs against hand counts, the ratios reported (not judged off the issue's
// shapes), the PyTorch baselines listed as skipped; without a CUDA device the GPU run stops with one SKIPPED line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { cudaDeviceProblem } from '../src/engine/device.js';
import { loadAddon } from '../src/native/addon.js';
import { repoRoot } from './helpers/fixtures.js';

const DRIVER = path.join(repoRoot, 'benchmarks', 'gpu-finetune', 'run.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-bench-gpu-ft-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

// The tiny shape of run.mjs: H 64, I 256, 2 layers, 4 heads of 16 (2 kv heads), vocab 512, untied.
const H = 64, I = 256, L = 2, V = 512, qd = 64, kvd = 32, layerMatmul = H * qd + 2 * H * kvd + qd * H + 3 * H * I;

describe('benchmarks/gpu-finetune', () => {
  it('--device cpu --quick: every method measured, counted and reported', async () => {
    const flopsModule = '../benchmarks/gpu-finetune/flops.mjs'; // plain JS, beside the driver
    const { stepFlops } = await import(flopsModule) as {
      stepFlops: (cfg: object, params: object[], lens: number[]) => { model: number; actual: number };
    };
    const out = path.join(tmp, 'r.json');
    const r = spawnSync(process.execPath, [DRIVER, '--device', 'cpu', '--quick', '--threads', '2', '--cache', tmp, '--out', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(out, 'utf8'));
    const s = res.shapes.tiny;
    expect(Object.keys(s.runs).sort()).toEqual(['full', 'lora', 'mlp', 'neuron-lora', 'neurons', 'random']);
    const perLayer = Math.round(0.01 * I);
    expect(s.neurons).toBe(perLayer * L);
    expect(s.runs.neurons.trainable).toBe(3 * H * perLayer * L);
    expect(s.runs.random.trainable).toBe(3 * H * perLayer * L);
    expect(s.runs.mlp.trainable).toBe(3 * H * I * L);
    expect(s.runs.full.trainable).toBe(2 * V * H + L * (layerMatmul + 2 * H) + H);
    expect(s.runs.lora.trainable).toBe(L * 32 * 3 * (H + I)); // r 32 on gate, up, down: A [r, in] + B [out, r]
    for (const [m, x] of Object.entries(s.runs) as [string, Record<string, number>][]) {
      expect(x.stepSeconds, m).toBeGreaterThan(0);
      expect(x.tokensPerSecond, m).toBeCloseTo((2 * 32) / x.stepSeconds!, 6);
      expect(x.mfu, m).toBeGreaterThan(0);
      expect(x.gradOptBytes, m).toBe(12 * x.trainable!);
    }
    // FLOPs: full = 6 N T (model) and 6 N T + 12 qd P L (actual: attention forward 4 qd P, backward 8 qd P per layer).
    const T = 64, P = 2 * (32 * 33) / 2, N = L * layerMatmul + V * H;
    expect(s.runs.full.flops.model).toBe(6 * N * T);
    expect(s.runs.full.flops.actual).toBe(6 * N * T + 12 * qd * P * L);
    expect(s.runs.full.mfuBasis).toBe('model (6 N T)');
    // neurons: forward + every input gradient (the mask reaches layer 0) + 2 T x the trained rows and columns.
    expect(s.runs.neurons.flops.actual).toBe(4 * N * T + 12 * qd * P * L + 2 * T * 3 * H * perLayer * L);
    expect(s.runs.neurons.mfuBasis).toBe('actual');
    // A LoRA adapter adds its forward and input gradient (4 T |A| + |B|) to its weight gradients (2 T).
    const cfg = JSON.parse(readFileSync(path.join(s.dir, 'config.json'), 'utf8'));
    const norm = { role: 'ffn_norm', layer: 1, mode: 'dense', rows: H, cols: 1, size: H }; // element-wise: no FLOPs counted
    const adapter = { role: 'w_up.lora_A', layer: 1, mode: 'lora_a', rows: 8, cols: H, size: 8 * H };
    expect(stepFlops(cfg, [norm, adapter], [32, 32]).actual - stepFlops(cfg, [norm], [32, 32]).actual).toBe(6 * T * 8 * H);
    expect(res.checks.map((c: { what: string; ok: unknown }) => [c.what, c.ok])).toEqual([
      ['tiny: neurons step time vs full', null], ['tiny: neurons grad+optimizer memory vs full', null]]);
    expect(res.checks[1].value).toBe(`${(100 * (3 * H * perLayer * L) / s.runs.full.trainable).toFixed(3)}%`);
    expect(res.skipped).toEqual([{ what: 'tiny torch masked-dense,lora,full', why: 'the PyTorch baselines run on CUDA only' }]);
    expect(res.failed).toEqual([]);
    expect(r.stdout).toMatch(/\| neurons \| [\d.]+ \| \d+ \| [\d.]+ \| actual \| 1,152 \|/);
  }, 120_000);

  it('the issue\'s ratios judged on its shapes: neurons vs full (1B), vs PyTorch dense-then-mask (8B), lora vs PEFT', async () => {
    const reportModule = '../benchmarks/gpu-finetune/report.mjs';
    const { ratioChecks, renderTable } = await import(reportModule) as {
      ratioChecks: (r: object, shapes: string[]) => { what: string; value: string; target: string; ok: boolean | null }[];
      renderTable: (r: object, shapes: string[], cfgs: object) => string;
    };
    const GiB = 2 ** 30;
    const run = (stepSeconds: number, gradOptBytes: number, heldBytes: number) => ({ stepSeconds, gradOptBytes, heldBytes, tokensPerSecond: 4096 / stepSeconds,
      mfu: 0.5, mfuBasis: 'actual', trainable: gradOptBytes / 12, masterBytes: gradOptBytes / 3, memory: { deviceUsed: heldBytes + GiB } });
    const torchRow = (step: number, peak: number, extra = {}) => ({ step_seconds: step, tokens_per_s: 4096 / step, peak_memory_bytes: peak, trainable_params: 1, grad_opt_bytes: 1, device_used_bytes: peak, ...extra });
    const results = {
      device: 'cuda', compute: 'bf16', options: { batch: 8, seqLen: 512, fraction: 0.01, steps: 5, warmup: 2 }, peak: { tflops: 900, source: 'test' },
      shapes: {
        'llama-3.2-1b': { matmulParams: 1.2e9, neurons: 1312, runs: {
          neurons: { ...run(0.040, 0.1 * GiB, 4 * GiB), stepTimes: [{ step: 'gate/up GEMM', ms: 5, marks: 16 }, { step: 'dX GEMMs', ms: 12.5, marks: 64 }] },
          full: { ...run(0.100, 13.8 * GiB, 30 * GiB), stepTimes: [{ step: 'gate/up GEMM', ms: 5.25, marks: 16 }, { step: 'dW (trained)', ms: 40, marks: 112 }] },
          lora: run(0.05, GiB, 5 * GiB) } },
        'llama-3.1-8b': { matmulParams: 7.5e9, neurons: 4576, runs: { neurons: run(0.300, 0.6 * GiB, 20 * GiB), full: { skipped: 'needs about 170 GiB' },
          'neurons-recompute': run(0.400, 0.6 * GiB, 16 * GiB) } },
      },
      torch: { 'llama-3.2-1b': { lora: torchRow(0.1, 10 * GiB, { lora_impl: 'peft' }) }, 'llama-3.1-8b': { 'masked-dense': torchRow(0.5, 90 * GiB), full: { error: 'out of memory' } } },
    };
    const checks = ratioChecks(results, ['llama-3.2-1b', 'llama-3.1-8b']);
    expect(checks.map((c) => [c.what, c.value, c.ok])).toEqual([
      ['llama-3.2-1b: neurons step time vs full', '0.400x (40.0 vs 100.0 ms)', true],
      ['llama-3.2-1b: neurons grad+optimizer memory vs full', '0.725%', true],
      ['llama-3.1-8b: neurons speed-up vs PyTorch dense-then-mask', '1.67x (300.0 vs 500.0 ms)', false],
      ['llama-3.1-8b: neurons peak memory vs PyTorch dense-then-mask', '4.50x smaller (20.0 vs 90.0 GiB)', false],
      ['llama-3.1-8b: neurons --recompute speed-up vs PyTorch dense-then-mask', '1.25x (400.0 vs 500.0 ms)', false],
      ['llama-3.1-8b: neurons --recompute peak memory vs PyTorch dense-then-mask', '5.63x smaller (16.0 vs 90.0 GiB)', true],
      ['llama-3.2-1b: lora (r 32) step time vs PEFT LoRA', '0.500x (50.0 vs 100.0 ms)', null],
    ]);
    const table = renderTable({ ...results, checks }, ['llama-3.2-1b', 'llama-3.1-8b'], { 'llama-3.2-1b': {}, 'llama-3.1-8b': {} });
    expect(table).toMatch(/\| full \| needs about 170 GiB \|/);
    expect(table).toMatch(/\| neurons-recompute \| 400\.0 \|/);
    expect(table).toMatch(/\| torch full \| out of memory \|/);
    expect(table).toMatch(/\| torch lora \(peft\) \| 100\.0 \|/);
    // the clocked step's kinds of work: a column for each kind either method names, '-' where a method has none
    expect(table).toContain('| method | gate/up GEMM | dX GEMMs | dW (trained) | total |');
    expect(table).toContain('| neurons | 5.0 | 12.5 | - | 17.5 |');
    expect(table).toContain('| full | 5.3 | - | 40.0 | 45.3 |');
    expect(table).not.toMatch(/\| lora \| [\d.-]+ \| [\d.-]+ \| [\d.-]+ \| [\d.]+ \|$/m);
    expect(table).toMatch(/- llama-3\.1-8b: neurons speed-up vs PyTorch dense-then-mask: 1\.67x .* \(target >= 2x\) → MISSED/);
  });

  it('the fit check before every measurement: a method that cannot fit the device is skipped with its reason', async () => {
    const flopsModule = '../benchmarks/gpu-finetune/flops.mjs', shapesModule = '../benchmarks/common/synthetic-checkpoint.mjs';
    const { deviceFitSkip, trainedValuesEstimate } = await import(flopsModule) as {
      deviceFitSkip: (cfg: object, method: string, neurons: number, tokens: number, compute: string, total: number | null) => string | null;
      trainedValuesEstimate: (cfg: object, method: string, neurons: number) => number;
    };
    const { MODEL_SHAPES } = await import(shapesModule) as { MODEL_SHAPES: Record<string, object> };
    // run.mjs's shapes: Llama-3.2-1B, and Llama-3.1-8B (hidden 4096, I 14336, 32 layers, 32 / 8 heads of 128, untied).
    const b1 = MODEL_SHAPES['llama-3.2-1b']!;
    const b8 = { ...b1, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8,
      head_dim: 128, tie_word_embeddings: false };
    const h100 = 81559 * 2 ** 20, h200 = 143771 * 2 ** 20, tokens = 8 * 512, neurons8 = 143 * 32;
    // mlp on 8B: every gate / up / down weight, 5.6 B values; 16 bytes each (master, gradient, Adam m, v) = 90.2 GB,
    // + 16.06 GB of bf16 weights (8.03 B parameters, the untied head included) + 36.5 GB of activations + 1 GiB.
    expect(trainedValuesEstimate(b8, 'mlp', neurons8)).toBe(32 * 3 * 4096 * 14336);
    const need = 2 * (32 * 218_103_808 + 2 * 128_256 * 4096) + 16 * 5_637_144_576 + 4 * (4 * 4096 + 2 * 4096 + 2 * 1024 + 3 * 14336) * tokens * 32 + 2 ** 30;
    expect(deviceFitSkip(b8, 'mlp', neurons8, tokens, 'bf16', h100)).toBe(
      `needs about ${(need / 2 ** 30).toFixed(0)} GiB (bf16 weights + float32 master, gradient, Adam m and v of the trained values + activations), the device has 80 GiB`);
    expect(need / 2 ** 30).toBeCloseTo(134.0, 1);
    expect(deviceFitSkip(b8, 'mlp', neurons8, tokens, 'bf16', h200)).toMatch(/^needs about 134 GiB .* the device has 140 GiB$/);
    expect(deviceFitSkip(b8, 'full', neurons8, tokens, 'bf16', h200)).toMatch(/^needs about 170 GiB .*every parameter.* the device has 140 GiB$/);
    for (const m of ['neurons', 'random', 'lora', 'neuron-lora']) expect(deviceFitSkip(b8, m, neurons8, tokens, 'bf16', h100), m).toBeNull();
    for (const m of ['full', 'mlp', 'neurons', 'lora']) expect(deviceFitSkip(b1, m, 82 * 16, tokens, 'bf16', h100), m).toBeNull();
    expect(deviceFitSkip(b8, 'full', neurons8, tokens, 'bf16', null)).toBeNull();  // size unknown: the run decides
  });

  it.skipIf(!cudaDeviceProblem(loadAddon().cudaInfo()))('on CUDA without a usable device: one SKIPPED line, exit 0', () => {
    const r = spawnSync(process.execPath, [DRIVER, '--quick', '--cache', tmp], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toMatch(/^gpu-finetune: SKIPPED \(needs a CUDA device: .+\)/);
  });

  // On a CUDA device (the CUDA simulator's addon too: scripts/cuda-sim-check.sh --finetune-ts): the driver's GPU path
  // on the tiny shape, with the trainer's clocked step and its table.
  it.runIf(!cudaDeviceProblem(loadAddon().cudaInfo()))('on CUDA: each method\'s clocked step names its kinds of work', () => {
    const out = path.join(tmp, 'cuda.json');
    const r = spawnSync(process.execPath, [DRIVER, '--shapes', 'tiny', '--batch', '2', '--seq-len', '32', '--warmup', '1',
      '--steps', '1', '--peak-tflops', '1', '--no-torch', '--methods', 'neurons,lora,neurons-recompute', '--cache', tmp, '--out', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const runs = JSON.parse(readFileSync(out, 'utf8')).shapes.tiny.runs;
    const kinds = (m: string) => new Map((runs[m].stepTimes as { step: string; ms: number; marks: number }[]).map((x) => [x.step, x]));
    const neurons = kinds('neurons'), lora = kinds('lora');
    for (const k of ['q/k/v GEMM', 'attention', 'gate/up GEMM', 'loss head', 'dX GEMMs', 'attention bwd', 'zero, AdamW']) {
      expect(neurons.get(k)?.ms, `neurons ${k}`).toBeGreaterThanOrEqual(0);
      expect(lora.get(k)?.ms, `lora ${k}`).toBeGreaterThanOrEqual(0);
    }
    expect(neurons.get('q/k/v GEMM')?.marks).toBe(L);  // one micro-batch: the forward once per layer
    expect(neurons.has('dW (trained)') && !neurons.has('LoRA bwd')).toBe(true);
    expect(lora.has('LoRA bwd') && !lora.has('dW (trained)')).toBe(true);
    // activation recomputation: the same trained values, each layer's forward once more (one micro-batch), fewer
    // activation bytes held
    const rc = kinds('neurons-recompute');
    expect(rc.get('recompute')?.marks).toBe(L);
    expect(neurons.has('recompute')).toBe(false);
    expect(runs['neurons-recompute'].recompute).toBe(true);
    expect(runs['neurons-recompute'].trainable).toBe(runs.neurons.trainable);
    expect(runs['neurons-recompute'].loss).toBe(runs.neurons.loss);
    expect(runs['neurons-recompute'].memory.activations).toBeLessThan(runs.neurons.memory.activations);
    expect(r.stdout).toMatch(/Where a step's device time goes[^]*\| neurons \| [\d.]+ \|/);
  }, 300_000);

  it('bad options: one line, exit 1', () => {
    const r = spawnSync(process.execPath, [DRIVER, '--device', 'cpu', '--methods', 'neurons,fast'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("gpu-finetune: unknown method 'fast' (methods: neurons, full, lora, random, mlp, neuron-lora, neurons-recompute)");
    const c = spawnSync(process.execPath, [DRIVER, '--device', 'cpu', '--methods', 'neurons-recompute'], { encoding: 'utf8' });
    expect(c.status).toBe(1);
    expect(c.stderr.trim()).toBe('gpu-finetune: neurons-recompute needs a CUDA device (the CPU trainer keeps its activations in host memory)');
  });
});
