#!/usr/bin/env node
// The engine against llama.cpp on the same random checkpoints (Qwen2.5-0.5B and Llama-3.2-1B shapes): prefill and
// decode tokens/s in paired rounds, f32 compute against an F32 GGUF and bf16 compute against a BF16 GGUF, plus
// the decode weight streams in GB/s against the machine's read bandwidth. See README.md next to this file.
//
//   LLAMA_CPP_DIR=/path/to/llama.cpp node benchmarks/llamacpp/run.mjs [--quick] [--rounds N] [--threads N]
//       [--models a,b] [--computes f32,bf16] [--prefill N] [--decode N] [--jobs N] [--out FILE] [--json] [--no-check]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { dims, ensureSyntheticCheckpoint, MODEL_SHAPES } from '../common/synthetic-checkpoint.mjs';
import { median, runChild, writeFileAtomic } from '../common/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const cacheDir = path.join(root, 'benchmarks', '.cache');
const workDir = path.join(cacheDir, 'llamacpp');

/** --quick: tiny shapes of both architectures (the converter's llama and qwen2 paths), seconds per round. */
const QUICK_SHAPES = {
  'tiny-llama': { ...MODEL_SHAPES['llama-3.2-1b'], hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, vocab_size: 2048, bos_token_id: 1, eos_token_id: 2 },
  'tiny-qwen2': { ...MODEL_SHAPES['qwen2.5-0.5b'], hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 2048, bos_token_id: 1, eos_token_id: 2 },
};

class UsageError extends Error {}

/** Engine f32 vs llama.cpp F32 logits, relative to the largest |logit|: measured 3e-7 on the tiny
 * shapes (f32 KV cache in llama-logits); the same GGUF without the rotary permutation of q/k: 2e-2. */
const SAME_MODEL_TOLERANCE = 1e-4;

function parseArgs(argv) {
  const o = { quick: false, rounds: null, threads: 1, models: null, computes: ['f32', 'bf16'], prefill: null, decode: null,
    jobs: Math.max(1, os.availableParallelism()), out: null, json: false, check: true };
  const int = (a, v, min) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${a}: expected an integer >= ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--rounds') o.rounds = int(a, val(), 1);
    else if (a === '--threads') o.threads = int(a, val(), 1);
    else if (a === '--models') o.models = val().split(',');
    else if (a === '--computes') o.computes = val().split(',');
    else if (a === '--prefill') o.prefill = int(a, val(), 1);
    else if (a === '--decode') o.decode = int(a, val(), 1);
    else if (a === '--jobs') o.jobs = int(a, val(), 1);
    else if (a === '--out') o.out = path.resolve(val());
    else if (a === '--json') o.json = true;
    else if (a === '--no-check') o.check = false;
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(5, 7).join('\n').replace(/^\/\/ ?/gm, ''));
      process.exit(0);
    } else throw new UsageError(`unknown option ${a} (see --help)`);
  }
  o.shapes = o.quick ? QUICK_SHAPES : MODEL_SHAPES;
  o.models ??= Object.keys(o.shapes);
  for (const m of o.models) if (!o.shapes[m]) throw new UsageError(`--models: unknown model ${m}; known: ${Object.keys(o.shapes).join(', ')}`);
  for (const c of o.computes) if (c !== 'f32' && c !== 'bf16') throw new UsageError(`--computes: unknown compute mode ${c} (f32, bf16)`);
  o.rounds ??= o.quick ? 1 : 3;
  o.prefill ??= o.quick ? 64 : 512;
  o.decode ??= o.quick ? 16 : 64;
  o.out ??= o.quick ? path.join(workDir, 'results-quick.json') : path.join(here, 'results.json');
  return o;
}

// ---- tools: llama.cpp build, read-bandwidth loop, python with gguf-py ----------------------------------------

function run(cmd, args, { logFile, env } = {}) {
  const fd = logFile ? fs.openSync(logFile, 'a') : 'ignore';
  try {
    if (logFile) fs.writeSync(fd, `\n$ ${cmd} ${args.join(' ')}\n`);
    const r = spawnSync(cmd, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
    if (r.error) throw new UsageError(`cannot run ${cmd}: ${r.error.message}`);
    if (r.status !== 0) {
      const tail = logFile ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new UsageError(`${cmd} ${args.slice(0, 3).join(' ')} ... failed (exit ${r.status})${logFile ? `; last lines of ${logFile}:\n${tail}` : ''}`);
    }
  } finally {
    if (logFile) fs.closeSync(fd);
  }
}

/** Builds llama-bench out of tree (CPU backend, -march=native) into a folder per checkout; a no-op when built. */
function buildLlamaBench(srcDir, jobs, log) {
  const real = fs.realpathSync(srcDir);
  const key = createHash('sha1').update(real).digest('hex').slice(0, 12);
  const buildDir = path.join(workDir, `build-${key}`);
  const logFile = path.join(workDir, `build-${key}.log`);
  if (!fs.existsSync(path.join(buildDir, 'CMakeCache.txt'))) {
    log(`configuring llama.cpp (${real}) in ${path.relative(root, buildDir)} (log: ${path.relative(root, logFile)})`);
    run('cmake', ['-S', real, '-B', buildDir, '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release', '-DGGML_NATIVE=ON',
      '-DLLAMA_CURL=OFF', '-DGGML_CUDA=OFF', '-DGGML_METAL=OFF', '-DGGML_VULKAN=OFF', '-DGGML_OPENMP=ON',
      '-DLLAMA_BUILD_TESTS=OFF', '-DLLAMA_BUILD_SERVER=OFF', '-DBUILD_SHARED_LIBS=OFF'], { logFile });
  }
  log(`building llama-bench with ${jobs} jobs (first time: several minutes) ...`);
  run('cmake', ['--build', buildDir, '--target', 'llama-bench', '-j', String(jobs)], { logFile });
  const bin = path.join(buildDir, 'bin', 'llama-bench');
  if (!fs.existsSync(bin)) throw new UsageError(`the llama.cpp build did not produce ${bin} (log: ${logFile})`);
  return bin;
}

/** llama_logits.cpp linked against the llama.cpp build (its static libraries, built with llama-bench). */
function buildLlamaLogits(srcDir, llamaBench) {
  const buildDir = path.dirname(path.dirname(llamaBench));
  const src = path.join(here, 'llama_logits.cpp');
  const bin = path.join(buildDir, 'bin', 'llama-logits');
  const libs = [path.join(buildDir, 'src', 'libllama.a'), ...['libggml.a', 'libggml-cpu.a', 'libggml-base.a'].map((l) => path.join(buildDir, 'ggml', 'src', l))];
  for (const l of libs) if (!fs.existsSync(l)) throw new UsageError(`the llama.cpp build has no ${l} (an older or newer layout than this script knows)`);
  const newest = Math.max(fs.statSync(src).mtimeMs, ...libs.map((l) => fs.statSync(l).mtimeMs));
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newest)
    run(process.env.CXX ?? 'c++', ['-std=c++17', '-O2', `-I${path.join(srcDir, 'include')}`, `-I${path.join(srcDir, 'ggml', 'include')}`, src, ...libs,
      '-fopenmp', '-pthread', '-lm', '-o', bin], { logFile: path.join(workDir, 'llama-logits.log') });
  return bin;
}

function buildReadBandwidth() {
  const src = path.join(here, 'read_bandwidth.c');
  const bin = path.join(workDir, 'read-bandwidth');
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < fs.statSync(src).mtimeMs)
    run(process.env.CC ?? 'cc', ['-O3', '-march=native', '-pthread', src, '-o', bin], { logFile: path.join(workDir, 'read-bandwidth.log') });
  return bin;
}

/** The first python3 that imports gguf-py from the checkout (it needs numpy and sentencepiece). */
function findPython(srcDir) {
  const env = { ...process.env, PYTHONPATH: [path.join(srcDir, 'gguf-py'), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) };
  const candidates = [...new Set([process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean))];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import gguf, numpy'], { env, stdio: 'ignore' });
    if (r.status === 0) return { py, env };
  }
  throw new UsageError(`none of ${candidates.join(', ')} can import llama.cpp's gguf-py from ${srcDir}/gguf-py: it needs numpy and ` +
    'sentencepiece (Debian: apt-get install python3-numpy python3-sentencepiece; or set PYTHON to a python3 that has them)');
}

/** <checkpoint>/model-<type>.gguf, converted when missing or older than the checkpoint or the converter. */
function ensureGguf(python, ckptDir, type, log) {
  const out = path.join(ckptDir, `model-${type}.gguf`);
  const converter = path.join(here, 'safetensors_to_gguf.py');
  const newest = Math.max(fs.statSync(path.join(ckptDir, 'model.safetensors')).mtimeMs, fs.statSync(converter).mtimeMs);
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= newest) return out;
  log(`writing ${path.relative(root, out)} with gguf-py ...`);
  run(python.py, [converter, ckptDir, out, '--type', type], { env: python.env, logFile: path.join(workDir, 'convert.log') });
  return out;
}

// ---- measurements ----------------------------------------------------------------------------------------------

/** One llama-bench process: pp<prefill> and tg<decode>, one repetition each after its own warm-up. */
function llamaBenchRound(bin, gguf, o) {
  const r = spawnSync(bin, ['-m', gguf, '-p', String(o.prefill), '-n', String(o.decode), '-t', String(o.threads), '-r', '1', '-o', 'json'],
    { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new UsageError(`llama-bench failed on ${gguf} (exit ${r.status}):\n${(r.stderr ?? '').split('\n').slice(-10).join('\n')}`);
  const tests = JSON.parse(r.stdout);
  const pp = tests.find((t) => t.n_prompt === o.prefill && t.n_gen === 0);
  const tg = tests.find((t) => t.n_gen === o.decode && t.n_prompt === 0);
  if (!pp || !tg) throw new UsageError(`llama-bench on ${gguf}: no pp${o.prefill}/tg${o.decode} results in its JSON output`);
  return { prefillTokensPerSec: pp.avg_ts, decodeTokensPerSec: tg.avg_ts, cpuInfo: pp.cpu_info, buildCommit: pp.build_commit,
    backends: pp.backends, type: pp.model_type };
}

/** Largest |engine − llama.cpp| f32 logit over a few token ids, against the largest |logit|: the same model? */
async function sameModelCheck(llamaLogits, dir, ggufF32, vocab) {
  const tokens = Array.from({ length: 8 }, (_, i) => (i * 7919 + 13) % vocab);
  const engine = await runChild(path.join(here, 'child.mjs'), { kind: 'logits', dir, tokens });
  const r = spawnSync(llamaLogits, [ggufF32, ...tokens.map(String)], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new UsageError(`llama.cpp cannot run ${ggufF32}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ')}`);
  const llama = JSON.parse(r.stdout);
  if (llama.vocab !== engine.vocab) throw new UsageError(`${ggufF32}: llama.cpp sees a vocab of ${llama.vocab}, the engine ${engine.vocab}`);
  let maxDiff = 0, maxAbs = 0;
  for (let t = 0; t < tokens.length; t++) {
    for (let v = 0; v < vocab; v++) {
      maxDiff = Math.max(maxDiff, Math.abs(engine.logits[t][v] - llama.logits[t][v]));
      maxAbs = Math.max(maxAbs, Math.abs(llama.logits[t][v]));
    }
  }
  return { tokens, maxAbsDiff: maxDiff, maxAbsLogit: maxAbs, relative: maxDiff / maxAbs };
}

function readBandwidth(bin, threads) {
  const r = spawnSync(bin, ['1024', '3', String(threads)], { encoding: 'utf8' });
  if (r.status !== 0) throw new UsageError(`read-bandwidth failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout).bytesPerSec;
}

// ---- main ------------------------------------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const log = (m) => process.stderr.write(`${m}\n`);
  const srcDir = process.env.LLAMA_CPP_DIR;
  if (!srcDir) throw new UsageError('LLAMA_CPP_DIR is not set: point it at a llama.cpp checkout (the folder with CMakeLists.txt and gguf-py/)');
  if (!fs.existsSync(path.join(srcDir, 'CMakeLists.txt')) || !fs.existsSync(path.join(srcDir, 'gguf-py', 'gguf')))
    throw new UsageError(`LLAMA_CPP_DIR=${srcDir}: not a llama.cpp checkout (expected CMakeLists.txt and gguf-py/gguf in it)`);
  if (!fs.existsSync(path.join(root, 'dist', 'src', 'engine', 'model.js')))
    throw new UsageError('dist/ is missing: build the engine first (npm run build:native && npm run build:ts)');
  // One run at a time: two would build llama.cpp into the same folder and measure each other's load.
  const { acquireOutputLock } = await import(new URL('../../dist/src/io/lock.js', import.meta.url).href);
  let lock;
  try {
    lock = await acquireOutputLock(workDir, 'benchmarks/llamacpp/run.mjs');
  } catch (e) {
    throw new UsageError(e.message);
  }
  const t0 = performance.now();

  const llamaBench = buildLlamaBench(srcDir, o.jobs, log);
  const llamaLogits = o.check ? buildLlamaLogits(srcDir, llamaBench) : null;
  const readBw = buildReadBandwidth();
  const python = findPython(srcDir);
  log(`llama.cpp vs engine: models ${o.models.join(', ')}; compute ${o.computes.join(', ')}; threads ${o.threads}; ` +
    `prefill ${o.prefill} tokens, decode ${o.decode} tokens; ${o.rounds} paired rounds${o.quick ? ' (quick)' : ''}; ` +
    `LANGNEURONS_KERNEL=${process.env.LANGNEURONS_KERNEL ?? '(unset: widest the CPU has)'}`);
  log(`load average now: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other processes on the ${os.availableParallelism()} cores disturb the figures)`);

  const pairs = [];
  const sameModel = {};
  for (const name of o.models) {
    const ckpt = ensureSyntheticCheckpoint(cacheDir, name, { config: o.shapes[name], log });
    const d = dims(ckpt.config);
    const matmulWeights = d.L * d.layerMatmul + d.lmHead; // every weight a decode step streams (LM head: the tied embedding)
    if (o.check) {
      // The engine in f32 and llama.cpp on the F32 GGUF must agree to f32 rounding, or the timings compare
      // different models (a wrong tensor name, rotary layout or bias would show here, not in the timings).
      const c = await sameModelCheck(llamaLogits, ckpt.dir, ensureGguf(python, ckpt.dir, 'f32', log), d.V);
      sameModel[name] = c;
      log(`${name}: engine f32 vs llama.cpp F32 GGUF logits (${c.tokens.length} tokens): max |difference| ${c.maxAbsDiff.toExponential(2)} ` +
        `(${c.relative.toExponential(2)} of the largest |logit|)`);
      if (!(c.relative <= SAME_MODEL_TOLERANCE))
        throw new UsageError(`${name}: llama.cpp and the engine do not compute the same model from ${ckpt.dir}: logits differ by ` +
          `${c.relative.toExponential(2)} of the largest |logit| (tolerance ${SAME_MODEL_TOLERANCE})`);
    }
    for (const compute of o.computes) {
      const gguf = ensureGguf(python, ckpt.dir, compute, log);
      // The engine streams the BF16 checkpoint in both compute modes; llama.cpp streams the GGUF's type.
      pairs.push({ name, compute, dir: ckpt.dir, gguf, ggufType: compute.toUpperCase(),
        engineBytesPerToken: 2 * matmulWeights, llamaBytesPerToken: (compute === 'f32' ? 4 : 2) * matmulWeights, rounds: [] });
    }
  }

  const bandwidths = [];
  for (let round = 0; round < o.rounds; round++) {
    for (const p of pairs) {
      const engine = await runChild(path.join(here, 'child.mjs'), { dir: p.dir, compute: p.compute, threads: o.threads,
        prefillTokens: o.prefill, decodeSteps: o.decode, seed: 12345 + round });
      const llama = llamaBenchRound(llamaBench, p.gguf, o);
      p.rounds.push({ engine, llama });
      log(`round ${round + 1}/${o.rounds} ${p.name} ${p.compute} (engine kernel ${engine.kernel}) vs ${p.ggufType} GGUF: ` +
        `prefill ${engine.prefillTokensPerSec.toFixed(1)} / ${llama.prefillTokensPerSec.toFixed(1)} tok/s, ` +
        `decode ${engine.decodeTokensPerSec.toFixed(2)} / ${llama.decodeTokensPerSec.toFixed(2)} tok/s`);
    }
    bandwidths.push(readBandwidth(readBw, o.threads));
    log(`round ${round + 1}/${o.rounds}: read bandwidth ${(bandwidths.at(-1) / 1e9).toFixed(2)} GB/s (${o.threads} thread${o.threads > 1 ? 's' : ''})`);
  }

  // Medians over rounds of the per-round ratios (a round's engine and llama.cpp runs are seconds apart, so a change
  // of the machine's load moves both); decode GB/s against the read bandwidth of the same round.
  const results = pairs.map((p) => {
    const r = p.rounds;
    const decodeGbs = (bytes, key) => r.map((x) => bytes * x[key].decodeTokensPerSec);
    const engineGbs = decodeGbs(p.engineBytesPerToken, 'engine'), llamaGbs = decodeGbs(p.llamaBytesPerToken, 'llama');
    return {
      model: p.name, compute: p.compute, ggufType: p.ggufType, kernel: r[0].engine.kernel, gguf: path.relative(root, p.gguf),
      prefill: {
        tokens: o.prefill,
        engineTokensPerSec: median(r.map((x) => x.engine.prefillTokensPerSec)),
        llamaTokensPerSec: median(r.map((x) => x.llama.prefillTokensPerSec)),
        ratio: median(r.map((x) => x.engine.prefillTokensPerSec / x.llama.prefillTokensPerSec)),
      },
      decode: {
        tokens: o.decode,
        engineTokensPerSec: median(r.map((x) => x.engine.decodeTokensPerSec)),
        llamaTokensPerSec: median(r.map((x) => x.llama.decodeTokensPerSec)),
        ratio: median(r.map((x) => x.engine.decodeTokensPerSec / x.llama.decodeTokensPerSec)),
        engineBytesPerToken: p.engineBytesPerToken, llamaBytesPerToken: p.llamaBytesPerToken,
        engineBytesPerSec: median(engineGbs), llamaBytesPerSec: median(llamaGbs),
        engineOfReadBandwidth: median(engineGbs.map((g, i) => g / bandwidths[i])),
        llamaOfReadBandwidth: median(llamaGbs.map((g, i) => g / bandwidths[i])),
      },
      rounds: r,
    };
  });

  const f = (x, n = 2) => x.toFixed(n);
  const gb = (x) => (x / 1e9).toFixed(2);
  const table = [
    `| model | engine compute vs llama.cpp GGUF | prefill ${o.prefill}: engine / llama.cpp tok/s | engine / llama.cpp | decode ${o.decode}: engine / llama.cpp tok/s | engine / llama.cpp | decode GB/s: engine / llama.cpp (of read bandwidth) |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((x) => `| ${x.model} | ${x.compute} (${x.kernel}) vs ${x.ggufType} | ${f(x.prefill.engineTokensPerSec, 1)} / ${f(x.prefill.llamaTokensPerSec, 1)} | ` +
      `**${f(x.prefill.ratio)}** | ${f(x.decode.engineTokensPerSec)} / ${f(x.decode.llamaTokensPerSec)} | **${f(x.decode.ratio)}** | ` +
      `${gb(x.decode.engineBytesPerSec)} (${f(x.decode.engineOfReadBandwidth)}) / ${gb(x.decode.llamaBytesPerSec)} (${f(x.decode.llamaOfReadBandwidth)}) |`),
  ].join('\n');
  // The issue's form: one row per (phase, compute), the models side by side.
  const summary = [
    `| | engine / llama.cpp (${o.models.join(' / ')}) |`,
    '| --- | --- |',
    ...['prefill', 'decode'].flatMap((phase) => o.computes.map((c) => `| ${phase}, ${c} compute vs ${c.toUpperCase()} GGUF | ` +
      `${o.models.map((m) => results.find((x) => x.model === m && x.compute === c)[phase].ratio.toFixed(2)).join(' / ')} |`)),
  ].join('\n');
  const bw = median(bandwidths);
  const llamaInfo = pairs[0]?.rounds[0]?.llama;
  const elapsed = (performance.now() - t0) / 1000;
  const out = {
    date: new Date().toISOString(),
    command: `LLAMA_CPP_DIR=${srcDir} node benchmarks/llamacpp/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    options: { quick: o.quick, rounds: o.rounds, threads: o.threads, prefill: o.prefill, decode: o.decode, models: o.models, computes: o.computes,
      kernelEnv: process.env.LANGNEURONS_KERNEL ?? null },
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), memBytes: os.totalmem(), node: process.version,
      loadAvgAtEnd: os.loadavg() },
    llamaCpp: { dir: fs.realpathSync(srcDir), buildCommit: llamaInfo?.buildCommit ?? null, cpuInfo: llamaInfo?.cpuInfo ?? null, backends: llamaInfo?.backends ?? null },
    sameModel,
    readBandwidth: { threads: o.threads, bytesPerSec: bw, perRound: bandwidths },
    elapsedSec: elapsed,
    results,
  };
  writeFileAtomic(o.out, JSON.stringify(out, null, 2) + '\n');
  if (o.json) process.stdout.write(JSON.stringify(out) + '\n');
  else {
    console.log(summary);
    console.log(`\n${table}`);
    console.log(`\nread bandwidth (${o.threads} thread${o.threads > 1 ? 's' : ''}, median of ${bandwidths.length} rounds): ${gb(bw)} GB/s; ` +
      `decode bytes per token: the engine streams its BF16 checkpoint in both compute modes, llama.cpp the GGUF's type`);
  }
  await lock.release();
  log(`done in ${elapsed.toFixed(0)} s; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; wrote ${path.relative(process.cwd(), o.out)}`);
}

main().catch((e) => {
  if (e instanceof UsageError) process.stderr.write(`llamacpp benchmark: ${e.message}\n`);
  else process.stderr.write(`llamacpp benchmark failed: ${e?.stack ?? e}\n`);
  process.exit(1);
});
