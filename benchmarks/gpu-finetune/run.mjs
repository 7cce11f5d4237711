#!/usr/bin/env node
// What each fine-tuning method costs on the GPU (issue "Masked fine-tuning on the GPU"): random BF16 checkpoints
// with Llama-3.2-1B's and Llama-3.1-8B's shapes, batches of 8 x 512 tokens, a random 1% neuron mask; for every
// method (neurons, random, mlp, full where it fits, lora r 32, neuron-lora) the step time (median of the timed
// steps after warm-up), tokens/s, MFU against the bf16 GEMM peak cuBLASLt reaches in the same run, the device
// memory and the gradient + optimizer memory; then the PyTorch baselines (torch_baseline.py: the seed papers'
// dense-then-mask, full, PEFT LoRA) on the same shapes and batches, and the ratios the issue sets targets for.
// See README.md.
//
//   node benchmarks/gpu-finetune/run.mjs [--quick] [--device cuda|cuda:N|cpu] [--compute bf16|f32]
//        [--shapes llama-3.2-1b,llama-3.1-8b] [--methods neurons,...] [--batch 8] [--seq-len 512]
//        [--warmup 2] [--steps 5] [--fraction 0.01] [--budget SECONDS] [--no-torch] [--python PATH]
//        [--peak-tflops X | --peak-json bench_gpu.json] [--out results.json]
// --quick: a small shape (GPU) or a tiny one (--device cpu: the CPU trainer, so the driver runs anywhere).
// --budget: no new measurement starts after that many seconds (the rest is listed as skipped).
// Needs dist/ (npm run build:ts) and the addon; on CUDA, build/bench_gpu (the GEMM peak) when present.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { runChild, writeFileAtomic } from '../common/proc.mjs';
import { MODEL_SHAPES, tensorList } from '../common/synthetic-checkpoint.mjs';
import { writeRandomCheckpoint } from './checkpoint.mjs';
import { deviceFitSkip, matmulParams, stepFlops } from './flops.mjs';
import { METHODS, RUNS, ratioChecks, renderTable, runMethod, targetShapes } from './report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const LANG = 'xx';

const LLAMA_8B = {
  ...MODEL_SHAPES['llama-3.2-1b'], hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 8, head_dim: 128, rope_scaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 },
  tie_word_embeddings: false,
};
const SHAPES = {
  'llama-3.2-1b': MODEL_SHAPES['llama-3.2-1b'],
  'llama-3.1-8b': LLAMA_8B,
  // --quick on a GPU: every kernel path of the big shapes (GQA, head_dim 64, untied head) in seconds.
  small: { ...MODEL_SHAPES['llama-3.2-1b'], hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 4, num_attention_heads: 16,
    num_key_value_heads: 4, head_dim: 64, vocab_size: 32000, tie_word_embeddings: false },
  // --quick --device cpu: the driver's smoke test.
  tiny: { ...MODEL_SHAPES['llama-3.2-1b'], hidden_size: 64, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, head_dim: 16, vocab_size: 512, tie_word_embeddings: false, rope_scaling: null, max_position_embeddings: 1024 },
};

// ---- options
const o = { quick: false, device: 'cuda', compute: 'bf16', shapes: null, methods: null, batch: null, seqLen: null, warmup: null, steps: null,
  fraction: 0.01, budget: Infinity, torch: true, python: process.env.PYTHON ?? null, peakTflops: null, peakJson: null,
  out: null, cache: path.join(root, 'benchmarks', '.cache'), threads: os.availableParallelism?.() ?? 2 };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const val = () => { if (i + 1 >= process.argv.length) fail(`${a} needs a value`); return process.argv[++i]; };
  const num = (name, min) => { const v = val(), x = Number(v); if (!Number.isFinite(x) || x < min) fail(`${name} must be a number >= ${min}, got '${v}'`); return x; };
  if (a === '--quick') o.quick = true;
  else if (a === '--device') o.device = val();
  else if (a === '--compute') o.compute = val();
  else if (a === '--shapes') o.shapes = val().split(',');
  else if (a === '--methods') o.methods = val().split(',');
  else if (a === '--batch') o.batch = num(a, 1);
  else if (a === '--seq-len') o.seqLen = num(a, 2);
  else if (a === '--warmup') o.warmup = num(a, 0);
  else if (a === '--steps') o.steps = num(a, 1);
  else if (a === '--fraction') o.fraction = num(a, 0);
  else if (a === '--budget') o.budget = num(a, 0);
  else if (a === '--no-torch') o.torch = false;
  else if (a === '--python') o.python = val();
  else if (a === '--peak-tflops') o.peakTflops = num(a, 0);
  else if (a === '--peak-json') o.peakJson = val();
  else if (a === '--out') o.out = path.resolve(val());
  else if (a === '--cache') o.cache = path.resolve(val());
  else if (a === '--threads') o.threads = num(a, 1);
  else fail(`unknown option ${a} (see the head of ${path.relative(process.cwd(), fileURLToPath(import.meta.url))})`);
}
function fail(msg) {
  process.stderr.write(`gpu-finetune: ${msg}\n`);
  process.exit(1);
}
const onCpu = o.device === 'cpu';
if (!onCpu && !/^cuda(:\d+)?$/.test(o.device)) fail(`--device must be cuda, cuda:N or cpu, got '${o.device}'`);
if (o.compute !== 'bf16' && o.compute !== 'f32') fail(`--compute must be bf16 or f32, got '${o.compute}'`);
// On a GPU also `neurons-recompute` (the trainer's activation recomputation); the CPU trainer has none.
o.methods ??= onCpu ? METHODS : RUNS;
for (const m of o.methods) if (!RUNS.includes(m)) fail(`unknown method '${m}' (methods: ${RUNS.join(', ')})`);
if (onCpu && o.methods.includes('neurons-recompute')) fail('neurons-recompute needs a CUDA device (the CPU trainer keeps its activations in host memory)');
o.shapes ??= o.quick ? [onCpu ? 'tiny' : 'small'] : ['llama-3.2-1b', 'llama-3.1-8b'];
for (const s of o.shapes) if (!SHAPES[s]) fail(`unknown shape '${s}' (shapes: ${Object.keys(SHAPES).join(', ')})`);
o.batch ??= onCpu && o.quick ? 2 : 8;
o.seqLen ??= onCpu && o.quick ? 32 : 512;
o.warmup ??= o.quick ? 1 : 2;
o.steps ??= o.quick ? 3 : 5;
// The issue's figures go to results.json beside this file; smoke runs to the (ignored) cache.
o.out ??= onCpu || o.quick ? path.join(o.cache, `gpu-finetune-results-${onCpu ? 'cpu' : 'quick'}.json`) : path.join(here, 'results.json');
const log = (m) => process.stderr.write(`${m}\n`);
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;

const dist = new URL('../../dist/src/', import.meta.url);
const { loadAddon } = await import(new URL('native/addon.js', dist).href);
const { cudaDeviceProblem } = await import(new URL('engine/device.js', dist).href);
const { openCheckpoint } = await import(new URL('model/checkpoint.js', dist).href);
const { modelIdentity } = await import(new URL('profile/identity.js', dist).href);
const { writeMask, MASK_FORMAT } = await import(new URL('identify/masks.js', dist).href);
const { randomNeurons } = await import(new URL('train/methods.js', dist).href);

const addon = loadAddon();
const deviceIndex = onCpu ? null : Number(o.device.split(':')[1] ?? 0);
if (!onCpu) {
  const problem = cudaDeviceProblem(addon.cudaInfo(), deviceIndex);
  if (problem) {
    process.stdout.write(`gpu-finetune: SKIPPED (needs a CUDA device: ${problem}); ` +
      '`--device cpu --quick` runs the driver on the CPU trainer\n');
    process.exit(0);
  }
}

// ---- the GEMM peak of this run
function gemmPeak() {
  if (o.peakTflops !== null) return { tflops: o.peakTflops, source: '--peak-tflops' };
  if (onCpu) {
    const n = o.quick ? 512 : 2048;
    const sec = addon.bench.gemm({ m: n, n, k: n, dtype: 'F32', compute: 'f32', threads: o.threads, reps: 3 });
    return { tflops: (2 * n ** 3) / sec / 1e12, source: `CPU f32 GEMM ${n}^3, ${o.threads} threads (addon.bench.gemm)` };
  }
  const bench = path.join(root, 'build', 'bench_gpu');
  if (fs.existsSync(bench)) {
    const tmp = path.join(os.tmpdir(), `gpu-finetune-gemm-${process.pid}.json`);
    const r = spawnSync(bench, ['--gemm-only', '--device', String(deviceIndex), '--json-out', tmp], { encoding: 'utf8' });
    try {
      const j = JSON.parse(fs.readFileSync(tmp, 'utf8'));
      fs.rmSync(tmp, { force: true });
      if (j.gemm_tflops > 0) return { tflops: j.gemm_tflops, source: `cuBLASLt bf16 GEMM ${j.gemm_size}^3 (build/bench_gpu --gemm-only)` };
    } catch { /* below */ }
    log(`bench_gpu --gemm-only gave no rate (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
  }
  if (o.peakJson && fs.existsSync(o.peakJson)) {
    const j = JSON.parse(fs.readFileSync(o.peakJson, 'utf8'));
    if (j.gemm_tflops > 0) return { tflops: j.gemm_tflops, source: `cuBLASLt bf16 GEMM ${j.gemm_size}^3 (${o.peakJson})` };
  }
  return { tflops: null, source: 'not measured (no build/bench_gpu, no --peak-json): MFU left out' };
}

// ---- checkpoints and masks (cached under benchmarks/.cache; regenerated when the shape changes)
function ensureCheckpoint(name) {
  const cfg = SHAPES[name];
  const dir = path.join(o.cache, `gpu-finetune-${name}`);
  const stampFile = path.join(dir, 'stamp.json');
  const want = JSON.stringify({ generator: 1, config: cfg });
  const bytes = tensorList(cfg).reduce((s, [, shape]) => s + shape.reduce((a, b) => a * b, 1) * 2, 0);
  try {
    if (fs.readFileSync(stampFile, 'utf8') === want && fs.existsSync(path.join(dir, 'model.safetensors'))) return { dir, generatedSeconds: 0 };
  } catch { /* missing: generate */ }
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(stampFile, { force: true });
  log(`generating ${name}: ${(bytes / 1e9).toFixed(2)} GB of random bf16 in ${dir} ...`);
  const g0 = performance.now();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
  writeRandomCheckpoint(path.join(dir, 'model.safetensors'), cfg, 1);
  fs.writeFileSync(stampFile, want);
  return { dir, generatedSeconds: (performance.now() - g0) / 1000 };
}

/** A random mask of round(fraction x I) neurons in every layer (torch_baseline.py draws the same count). */
async function ensureMask(dir) {
  const ckpt = await openCheckpoint(dir);
  const c = ckpt.config;
  const perLayer = Math.max(1, Math.round(o.fraction * c.intermediateSize));
  const file = path.join(dir, `mask-${perLayer}.json`);
  if (!fs.existsSync(file)) {
    const units = Array.from({ length: c.numLayers }, (_, l) => randomNeurons(1, c.intermediateSize, perLayer, 7 + l)[0]);
    await writeMask(file, { format: MASK_FORMAT, method: 'random', parameters: { fraction: o.fraction, perLayer, seed: 7 }, site: 'act',
      model: modelIdentity(ckpt), sources: [], layers: c.numLayers, width: c.intermediateSize, languages: { [LANG]: units } });
  }
  return { file, neurons: perLayer * c.numLayers };
}

function deviceTotalBytes() {
  const r = spawnSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits', '-i', String(deviceIndex)], { encoding: 'utf8' });
  const mib = Number(r.stdout?.trim());
  return r.status === 0 && mib > 0 ? mib * 2 ** 20 : null;
}

// ---- the plan: the measurements behind the issue's targets first, so that a --budget cuts the extras
function plan() {
  const jobs = [];
  const ours = (shape, method) => { if (o.methods.includes(method) && shape) jobs.push({ kind: 'ours', shape, method }); };
  const torch = (shape, methods) => { if (o.torch && shape) jobs.push({ kind: 'torch', shape, methods }); };
  const [small, second] = targetShapes(o.shapes), big = second ?? null;
  ours(small, 'neurons'); ours(small, 'full');
  // (neurons-recompute after the PyTorch run it is compared with: the issue's own figures first, if time runs short)
  if (big) { ours(big, 'neurons'); torch(big, ['masked-dense', 'lora']); ours(big, 'neurons-recompute'); } else ours(small, 'neurons-recompute');
  ours(small, 'lora'); if (big) ours(big, 'lora');
  torch(small, ['masked-dense', 'lora', 'full']);
  for (const shape of o.shapes) for (const m of ['random', 'mlp', 'neuron-lora']) ours(shape, m);
  for (const shape of o.shapes) if (shape !== small) ours(shape, 'full');
  if (big) torch(big, ['full']);
  for (const shape of o.shapes) if (shape !== small && shape !== big) { ours(shape, 'neurons'); ours(shape, 'lora'); torch(shape, ['masked-dense', 'lora', 'full']); }
  return jobs;
}

/** --python, $PYTHON, else the first of python3 and the reference machine's PyTorch venv that imports torch. */
let pythonChosen = null;
function python() {
  if (o.python) return o.python;
  pythonChosen ??= ['python3', '/opt/torch/.venv/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) ?? 'python3';
  return pythonChosen;
}

function runTorch(shape, methods) {
  const ck = path.join(o.cache, `gpu-finetune-${shape}`, 'config.json');
  const args = [path.join(here, 'torch_baseline.py'), '--config', ck, '--shape-name', shape, '--methods', methods.join(','),
    '--batch', String(o.batch), '--seq-len', String(o.seqLen), '--steps', String(o.steps), '--warmup', String(o.warmup),
    '--mask-fraction', String(o.fraction), '--device', String(deviceIndex)];
  const r = spawnSync(python(), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  const out = r.stdout ?? '';
  process.stderr.write(out.split('\n').filter((l) => l && !l.startsWith('JSON ')).map((l) => `  torch: ${l}\n`).join(''));
  const rows = out.split('\n').filter((l) => l.startsWith('JSON ')).map((l) => JSON.parse(l.slice(5)));
  if (r.status !== 0 && rows.length === 0) return { error: `${python()} torch_baseline.py exited ${r.status ?? r.signal}${r.error ? `: ${r.error.message}` : ''}` };
  return { rows };
}

// ---- run
const peak = gemmPeak();
log(`peak: ${peak.tflops === null ? '-' : `${peak.tflops.toFixed(1)} TFLOP/s`} (${peak.source})`);
const totalBytes = onCpu ? null : deviceTotalBytes();
const results = { bench: 'gpu-finetune', date: new Date().toISOString(), device: o.device, compute: onCpu ? 'f32' : o.compute, quick: o.quick,
  host: { cpu: os.cpus()[0]?.model, cores: os.cpus().length }, peak, deviceTotalBytes: totalBytes,
  options: { batch: o.batch, seqLen: o.seqLen, warmup: o.warmup, steps: o.steps, fraction: o.fraction, budget: Number.isFinite(o.budget) ? o.budget : null },
  shapes: {}, torch: {}, skipped: [], failed: [], checks: [] };
const shapeInfo = async (shape) => {
  if (results.shapes[shape]) return results.shapes[shape];
  const ck = ensureCheckpoint(shape);
  const mask = await ensureMask(ck.dir);
  const cfg = SHAPES[shape];
  results.shapes[shape] = { dir: ck.dir, generatedSeconds: ck.generatedSeconds, maskFile: mask.file, neurons: mask.neurons,
    matmulParams: matmulParams(cfg), runs: {} };
  return results.shapes[shape];
};
const save = () => writeFileAtomic(o.out, JSON.stringify(results, null, 2) + '\n');

for (const job of plan()) {
  const what = job.kind === 'ours' ? `${job.shape} ${job.method}` : `${job.shape} torch ${job.methods.join(',')}`;
  if (elapsed() > o.budget) { results.skipped.push({ what, why: `time budget of ${o.budget} s spent` }); log(`${what}: skipped (budget)`); continue; }
  const s = await shapeInfo(job.shape);
  if (job.kind === 'torch') {
    if (onCpu) { results.skipped.push({ what, why: 'the PyTorch baselines run on CUDA only' }); continue; }
    log(`${what} ...`);
    const r = runTorch(job.shape, job.methods);
    if (r.error) { results.failed.push({ what, why: r.error }); log(`  ${r.error}`); }
    for (const row of r.rows ?? []) (results.torch[job.shape] ??= {})[row.method] = row;
    save();
    continue;
  }
  const cfg = SHAPES[job.shape];
  const { method, recompute } = runMethod(job.method);
  const why = deviceFitSkip(cfg, method, s.neurons, o.batch * o.seqLen, o.compute, totalBytes);
  if (why) {
    results.skipped.push({ what, why });
    s.runs[job.method] = { skipped: why };
    log(`${what}: skipped (${why})`);
    continue;
  }
  log(`${what} ...`);
  try {
    const r = await runChild(path.join(here, 'child.mjs'), { dir: s.dir, method, recompute, maskFile: ['neurons', 'random', 'neuron-lora'].includes(method) ? s.maskFile : null,
      lang: LANG, batch: o.batch, seqLen: o.seqLen, warmup: o.warmup, steps: o.steps, device: deviceIndex, compute: o.compute, threads: o.threads, seed: 1 });
    const f = stepFlops(cfg, r.params, Array(o.batch).fill(o.seqLen));
    r.flops = { model: f.model, actual: f.actual };
    r.mfuBasis = method === 'full' ? 'model (6 N T)' : 'actual';
    r.mfu = peak.tflops ? (method === 'full' ? f.model : f.actual) / r.stepSeconds / (peak.tflops * 1e12) : null;
    r.mfuActual = peak.tflops ? f.actual / r.stepSeconds / (peak.tflops * 1e12) : null;
    delete r.params;
    s.runs[job.method] = r;
    log(`  step ${(r.stepSeconds * 1e3).toFixed(1)} ms, ${r.tokensPerSecond.toFixed(0)} tok/s, MFU ${r.mfu === null ? '-' : r.mfu.toFixed(3)}, ` +
      `grad+opt ${(r.gradOptBytes / 2 ** 30).toFixed(3)} GiB, held ${r.heldBytes === null ? '-' : `${(r.heldBytes / 2 ** 30).toFixed(2)} GiB`}`);
  } catch (e) {
    const why = `failed: ${e.message.split('\n')[0]}`;
    s.runs[job.method] = { skipped: why };
    results.failed.push({ what, why });
    log(`  ${why}`);
  }
  save();
}

// ---- checks and tables
results.checks = ratioChecks(results, o.shapes);
results.table = renderTable(results, o.shapes, SHAPES);
results.seconds = elapsed();
save();
process.stdout.write(results.table);
process.stdout.write(`results: ${path.relative(process.cwd(), o.out)} (${results.seconds.toFixed(0)} s)\n`);
// A measurement that failed (not one skipped for the budget, the device's size or the CPU) fails the run.
if (results.failed.length) process.exit(1);
