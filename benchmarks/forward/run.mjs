#!/usr/bin/env node
// Forward-pass benchmark of the engine on random-weight BF16 checkpoints with real model shapes
// (Qwen2.5-0.5B, Llama-3.2-1B): prefill throughput against the engine's own GEMM, decode speed against the
// memory-bandwidth limit, and peak RSS against a budget. See README.md next to this file.
//
//   node benchmarks/forward/run.mjs [--quick] [--full] [--threads N] [--reps N] [--models a,b] [--computes f32,bf16]
//                                   [--tokens 512,2048] [--decode-steps N] [--[no-]breakdown] [--no-json] [--from-raw benchmarks/.cache/forward-raw.json]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { dims, ensureSyntheticCheckpoint, MODEL_SHAPES } from '../common/synthetic-checkpoint.mjs';
import { runChild, writeFileAtomic } from '../common/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const cacheDir = path.join(root, 'benchmarks', '.cache');
const childScript = path.join(here, 'child.mjs');

// ---- options ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { quick: false, full: false, threads: 2, reps: null, models: Object.keys(MODEL_SHAPES), computes: ['f32', 'bf16'],
    decodeSteps: null, decodePrompt: 64, json: true, breakdown: null, fromRaw: null, prefill: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--full') o.full = true;
    else if (a === '--threads') o.threads = Number(val());
    else if (a === '--reps') o.reps = Number(val());
    else if (a === '--models') o.models = val().split(',');
    else if (a === '--computes') o.computes = val().split(',');
    else if (a === '--decode-steps') o.decodeSteps = Number(val());
    else if (a === '--no-json') o.json = false;
    else if (a === '--from-raw') o.fromRaw = val();
    else if (a === '--tokens') o.prefill = val().split(',').map(Number);
    else if (a === '--breakdown') o.breakdown = true;
    else if (a === '--no-breakdown') o.breakdown = false;
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(4, 7).join('\n').replace(/^\/\/ ?/gm, ''));
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (o.quick && o.full) throw new Error('--quick and --full exclude each other');
  for (const m of o.models) if (!MODEL_SHAPES[m]) throw new Error(`unknown model ${m}; known: ${Object.keys(MODEL_SHAPES).join(', ')}`);
  for (const c of o.computes) if (c !== 'f32' && c !== 'bf16') throw new Error(`unknown compute mode ${c}`);
  o.reps ??= o.quick ? 1 : 2;
  o.decodeSteps ??= o.quick ? 16 : 32;
  o.prefill ??= o.full ? [512, 2048] : [512];
  o.gemmReps = o.quick ? 2 : 3;
  o.breakdown ??= !o.quick;
  // --quick: the 'last' prefill only (it is the 'none' prefill plus one LM-head row, < 1% of the time).
  o.logits = o.quick ? ['last'] : ['none', 'last'];
  return o;
}

// ---- figures ---------------------------------------------------------------------------------------------

/** GEMM shapes (n = out features, k = in features, count per layer) of one layer's projections. */
function projectionShapes(d) {
  return [
    { key: 'q', n: d.qd, k: d.H, count: 1 },
    { key: 'k,v', n: d.kvd, k: d.H, count: 2 },
    { key: 'o', n: d.H, k: d.qd, count: 1 },
    { key: 'gate,up', n: d.I, k: d.H, count: 2 },
    { key: 'down', n: d.H, k: d.I, count: 1 },
  ];
}

/** FLOPs of a prefill of one sequence of T tokens (no cache): projections, causal attention, LM head rows. */
function prefillFlops(d, T, lmRows) {
  const proj = 2 * d.L * d.layerMatmul * T;
  const attn = d.L * 2 * 2 * d.nh * d.hd * (T * (T + 1)) / 2; // QK^T and PV over the causal triangle
  const lm = 2 * d.H * d.V * lmRows;
  return { proj, attn, lm, total: proj + attn + lm };
}

const gemmKey = (compute, m, n, k) => `${compute}:${m}x${n}x${k}`;

// ---- main ------------------------------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(path.join(root, 'dist', 'src', 'engine', 'model.js')))
    throw new Error('dist/ is missing: build first (npx tsc -p tsconfig.json, and node scripts/build-native.mjs for the addon)');
  const t0 = performance.now();
  const log = (m) => process.stderr.write(`${m}\n`);
  log(`forward benchmark: models ${o.models.join(', ')}; compute ${o.computes.join(', ')}; threads ${o.threads}; ` +
    `prefill ${o.prefill.join(', ')} tokens (logits ${o.logits.join(', ')}) x ${o.reps} reps; decode ${o.decodePrompt} + ${o.decodeSteps} steps` +
    `${o.quick ? ' (quick)' : o.full ? ' (full)' : ''}`);
  log(`load average now: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other processes on the ${os.availableParallelism()} cores disturb the figures)`);

  const ckpts = {};
  if (!o.fromRaw) for (const name of o.models) ckpts[name] = ensureSyntheticCheckpoint(cacheDir, name, { log });

  // Each model run measures its baselines (memcpy bandwidth, the engine's GEMM at every projection shape of the
  // model in the same compute mode) in its own process right after the forward measurements.
  const runs = [];
  const rawFile = path.join(cacheDir, 'forward-raw.json');
  if (o.fromRaw) {
    const raw = JSON.parse(fs.readFileSync(o.fromRaw, 'utf8'));
    Object.assign(o, { ...raw.options, json: o.json, fromRaw: o.fromRaw });
    Object.assign(ckpts, raw.ckpts);
    runs.push(...raw.runs);
  }
  for (const name of o.fromRaw ? [] : o.models) {
    const d = dims(ckpts[name].config);
    const shapes = [];
    for (const T of o.prefill) for (const s of projectionShapes(d)) shapes.push({ m: T, n: s.n, k: s.k });
    shapes.push({ m: 1, n: d.V, k: d.H }); // LM head of one row ('last'), a GEMV
    for (const compute of o.computes) {
      log(`${name} ${compute} ...`);
      const r = await runChild(childScript, { kind: 'model', name, dir: ckpts[name].dir, compute, threads: o.threads,
        prefill: o.prefill, reps: o.reps, decodePrompt: o.decodePrompt, decodeSteps: o.decodeSteps, seed: 12345,
        logits: o.logits, breakdown: o.breakdown, breakdownSeqLen: 64,
        baseline: { kind: 'baseline', shapes, computes: [compute], threads: o.threads, gemmReps: o.gemmReps,
          copyBytes: 512 << 20, copyReps: o.quick ? 3 : 5 } });
      runs.push({ name, compute, r });
      // Raw results so far (re-render with --from-raw without measuring again).
      writeFileAtomic(rawFile, JSON.stringify({ options: o, ckpts, runs }) + '\n');
    }
  }

  // ---- rows ----
  const rows = [];
  const models = {};
  for (const { name, compute, r } of runs) {
    const d = dims(ckpts[name].config);
    const base = r.baseline;
    const g = (m, n, k) => base.gemm[gemmKey(compute, m, n, k)];
    const gc = (m, n, k) => base.gemmCpu[gemmKey(compute, m, n, k)];
    const entry = { model: name, compute, checkpointBytes: ckpts[name].safetensorsBytes, prefill: [], decode: null, memory: null };
    for (const p of r.prefill) {
      const T = p.tokens;
      const lmRows = p.logits === 'last' ? 1 : 0;
      const fl = prefillFlops(d, T, lmRows);
      const gflops = fl.total / p.best / 1e9;
      // GEMM baseline: the MLP's three GEMMs at m = T (gate and up: k=H -> n=I; down: k=I -> n=H).
      const tMlp = 2 * g(T, d.I, d.H) + g(T, d.H, d.I);
      const gemmGflops = 3 * 2 * T * d.H * d.I / tMlp / 1e9;
      // Ideal time: every projection GEMM of every layer at its measured speed, plus the LM head rows.
      const perShape = projectionShapes(d).map((s) => ({ key: s.key, sec: d.L * s.count * g(T, s.n, s.k) }));
      const ideal = perShape.reduce((a, s) => a + s.sec, 0) + (lmRows ? g(1, d.V, d.H) : 0);
      // The same in CPU seconds (all threads): robust to other processes taking the cores away.
      const idealCpu = projectionShapes(d).reduce((a, s) => a + d.L * s.count * gc(T, s.n, s.k), 0) + (lmRows ? gc(1, d.V, d.H) : 0);
      const cpu = Math.min(...p.cpuSecs);
      const e = { tokens: T, logits: p.logits, secs: p.secs, cpuSecs: p.cpuSecs, best: p.best,
        cpuUtilization: p.cpuOfBest / (p.best * o.threads), tokensPerSec: T / p.best, flops: fl,
        gflops, gemmGflops, ratio: gflops / gemmGflops, idealSec: ideal, idealBreakdown: perShape,
        lmHeadSec: lmRows ? g(1, d.V, d.H) : 0, idealRatio: ideal / p.best, cpuSec: cpu, idealCpuSec: idealCpu,
        idealCpuRatio: idealCpu / cpu };
      // The target ratio again in CPU time: GFLOP per CPU-second of the forward vs of the MLP GEMMs.
      const mlpCpu = 2 * gc(T, d.I, d.H) + gc(T, d.H, d.I);
      e.gemmGflopsPerCpuSec = 3 * 2 * T * d.H * d.I / mlpCpu / 1e9;
      e.gflopsPerCpuSec = fl.total / cpu / 1e9;
      e.cpuRatio = e.gflopsPerCpuSec / e.gemmGflopsPerCpuSec;
      entry.prefill.push(e);
      rows.push({ model: name, compute, metric: `prefill ${T} tok, logits ${p.logits}: GFLOP/s vs GEMM (MLP shapes, m=${T})`,
        value: `${gflops.toFixed(1)} GFLOP/s (${e.tokensPerSec.toFixed(1)} tok/s, ${p.best.toFixed(2)} s; per CPU-s: ${e.gflopsPerCpuSec.toFixed(1)} vs ${e.gemmGflopsPerCpuSec.toFixed(1)}, ratio ${e.cpuRatio.toFixed(2)})`,
        baseline: `${gemmGflops.toFixed(1)} GFLOP/s`, ratio: e.ratio, target: '>= 0.8', pass: e.ratio >= 0.8 ? 'pass' : 'fail' });
      rows.push({ model: name, compute, metric: `prefill ${T} tok, logits ${p.logits}: CPU time vs sum of its GEMMs' CPU time`,
        value: `${cpu.toFixed(2)} CPU-s (threads busy ${(100 * e.cpuUtilization).toFixed(0)}% of the wall time)`,
        baseline: `${idealCpu.toFixed(2)} CPU-s (wall: ${ideal.toFixed(2)} s, ratio ${e.idealRatio.toFixed(2)})`, ratio: e.idealCpuRatio, target: 'info', pass: 'info' });
    }
    // Breakdown of the logits-'none' prefill: GEMMs (ideal, from bench.gemm), attention (from the packed run, which
    // has the same GEMM work but fewer attention pairs), and the rest (norms, RoPE, SiLU, embedding, scheduling).
    entry.breakdown = [];
    for (const pk of r.packed ?? []) {
      const p = entry.prefill.find((x) => x.tokens === pk.tokens && x.logits === 'none');
      if (!p) continue;
      const T = pk.tokens;
      const pairsFull = T * (T + 1) / 2, pairsPacked = pk.seqs * pk.seqLen * (pk.seqLen + 1) / 2;
      const scale = 1 / (1 - pairsPacked / pairsFull);
      // In CPU seconds (robust to other processes); wall-time figures kept in the JSON.
      const packedCpu = Math.min(...pk.cpuSecs);
      const attnCpu = Math.max(0, (p.cpuSec - packedCpu) * scale);
      const otherCpu = p.cpuSec - p.idealCpuSec - attnCpu;
      const attnWall = Math.max(0, (p.best - pk.best) * scale);
      const b = { tokens: T, cpuSec: p.cpuSec, packedCpuSec: packedCpu, gemmIdealCpuSec: p.idealCpuSec, attentionCpuSec: attnCpu,
        otherCpuSec: otherCpu, attentionGflopsPerCpuSec: p.flops.attn / attnCpu / 1e9, packedSeqs: pk.seqs,
        wall: { totalSec: p.best, packedSec: pk.best, gemmIdealSec: p.idealSec, attentionSec: attnWall, otherSec: p.best - p.idealSec - attnWall } };
      entry.breakdown.push(b);
      const pct = (x) => `${(100 * x / p.cpuSec).toFixed(0)}%`;
      rows.push({ model: name, compute, metric: `prefill ${T} tok, logits none: CPU-time breakdown (GEMMs / attention / rest)`,
        value: `${p.idealCpuSec.toFixed(2)} (${pct(p.idealCpuSec)}) / ${attnCpu.toFixed(2)} (${pct(attnCpu)}, ${b.attentionGflopsPerCpuSec.toFixed(1)} GFLOP per CPU-s) / ${otherCpu.toFixed(2)} (${pct(otherCpu)}) CPU-s`,
        baseline: `${p.cpuSec.toFixed(2)} CPU-s total; ${pk.seqs}x${pk.seqLen} packed ${packedCpu.toFixed(2)} CPU-s`, ratio: p.idealCpuSec / p.cpuSec, target: 'info', pass: 'info' });
    }
    // Decode: weights read once per token (all projections + LM head; tied models read the embedding as LM head).
    const weightBytes = 2 * (d.L * d.layerMatmul + d.lmHead);
    const limit = base.copyBytesPerSec / weightBytes;
    entry.decode = { ...r.decode, weightBytes, copyBytesPerSec: base.copyBytesPerSec, limitTokensPerSec: limit,
      ratio: r.decode.tokensPerSec / limit };
    rows.push({ model: name, compute, metric: `decode (${r.decode.prompt}-tok prompt + ${r.decode.steps} steps): tok/s vs bandwidth limit`,
      value: `${r.decode.tokensPerSec.toFixed(2)} tok/s`, baseline: `${limit.toFixed(2)} tok/s (${(base.copyBytesPerSec / 1e9).toFixed(1)} GB/s / ${(weightBytes / 1e9).toFixed(2)} GB)`,
      ratio: entry.decode.ratio, target: '>= 0.6', pass: entry.decode.ratio >= 0.6 ? 'pass' : 'fail' });
    // Memory: peak RSS of the process (load + prefills + decode) against checkpoint + 10% + activations + KV cache.
    const budget = 1.1 * ckpts[name].safetensorsBytes + r.scratchBytes + r.cacheBytes;
    const peak = r.rss.end.peak;
    entry.memory = { peakBytes: peak, peakAfterPrefillBytes: r.rss.afterPrefill.peak, budgetBytes: budget,
      scratchBytes: r.scratchBytes, cacheBytes: r.cacheBytes, rssEnd: r.rss.end, rssStart: r.rss.start, ratio: peak / budget };
    rows.push({ model: name, compute, metric: 'peak RSS vs checkpoint + 10% + activations + KV cache',
      value: `${(peak / 2 ** 20).toFixed(0)} MiB`, baseline: `${(budget / 2 ** 20).toFixed(0)} MiB`, ratio: peak / budget,
      target: '<= 1.0', pass: peak / budget <= 1.0 ? 'pass' : 'fail' });
    entry.loadSec = r.loadSec;
    entry.warmupSec = r.warmupSec;
    entry.info = r.info;
    models[`${name}/${compute}`] = entry;
  }

  const table = [
    '| model | mode | metric | value | baseline | ratio | target | pass/fail |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((x) => `| ${x.model} | ${x.compute} | ${x.metric} | ${x.value} | ${x.baseline} | ${x.ratio.toFixed(2)} | ${x.target} | ${x.pass} |`),
  ].join('\n');
  console.log(table);

  const gemmTable = runs.flatMap(({ name, r }) => Object.entries(r.baseline.gemm).map(([key, sec]) => {
    const [compute, shape] = key.split(':');
    const [m, n, k] = shape.split('x').map(Number);
    const cpuSec = r.baseline.gemmCpu[key];
    return { model: name, compute, m, n, k, sec, gflops: 2 * m * n * k / sec / 1e9, cpuSec, gflopsPerCpuSec: 2 * m * n * k / cpuSec / 1e9 };
  }));
  const copies = runs.map(({ name, compute, r }) => ({ model: name, compute, copyBytesPerSec: r.baseline.copyBytesPerSec }));
  const elapsed = (performance.now() - t0) / 1000;
  log(`\nGEMM baselines (BF16 weights):\n${gemmTable.map((g) => `  ${g.model.padEnd(13)} ${g.compute.padEnd(4)} m=${String(g.m).padStart(4)} n=${String(g.n).padStart(6)} k=${String(g.k).padStart(5)}: ${(g.sec * 1e3).toFixed(2).padStart(8)} ms ${g.gflops.toFixed(1).padStart(6)} GFLOP/s, ${(g.cpuSec * 1e3).toFixed(2).padStart(8)} CPU-ms ${g.gflopsPerCpuSec.toFixed(1).padStart(6)} GFLOP per CPU-s`).join('\n')}`);
  log(`memcpy: ${copies.map((c) => `${(c.copyBytesPerSec / 1e9).toFixed(2)}`).join(', ')} GB/s`);
  log(`done in ${elapsed.toFixed(0)} s; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);

  if (o.json) {
    const out = {
      date: new Date().toISOString(),
      options: { quick: o.quick, full: o.full, threads: o.threads, reps: o.reps, prefill: o.prefill,
        decodePrompt: o.decodePrompt, decodeSteps: o.decodeSteps, computes: o.computes, models: o.models },
      machine: { cpus: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), memBytes: os.totalmem(),
        node: process.version, loadAvgAtEnd: os.loadavg() },
      elapsedSec: elapsed,
      baselines: { copy: copies, gemm: gemmTable },
      models,
      rows,
    };
    writeFileAtomic(path.join(here, 'results.json'), JSON.stringify(out, null, 2) + '\n');
    log(`wrote ${path.relative(process.cwd(), path.join(here, 'results.json'))}`);
  }
}

main().catch((e) => {
  process.stderr.write(`forward benchmark failed: ${e?.stack ?? e}\n`);
  process.exit(1);
});
