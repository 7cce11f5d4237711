// One measurement of the forward benchmark, in its own process (run.mjs forks one per task, so that the peak
// RSS of a model run belongs to that model and compute mode alone, and the baselines' buffers count nowhere).
//   { kind: 'baseline', shapes: [{ m, n, k }], computes, threads, gemmReps, copyBytes, copyReps }
//   { kind: 'model', dir, compute, threads, prefill: [T...], logits: ['none', 'last'], reps, decodePrompt, decodeSteps,
//     seed, breakdown, breakdownSeqLen, baseline }
// A model task runs its baseline task (GEMM at the model's shapes, memcpy) in the same process right after the
// forward measurements, once the peak RSS has been read: close in time, so that a machine load that changes
// during the run disturbs a figure and its baseline alike.
import { childMain, rss } from '../common/proc.mjs';

const dist = new URL('../../dist/src/', import.meta.url);
const { loadAddon } = await import(new URL('native/addon.js', dist).href);

function log(msg) {
  process.stderr.write(`  [${process.pid}] ${msg}\n`);
}

function baseline(task) {
  const bench = loadAddon().bench;
  const out = { copyBytesPerSec: null, gemm: {} };
  out.copyBytesPerSec = bench.copy({ bytes: task.copyBytes, reps: task.copyReps });
  log(`memcpy ${(out.copyBytesPerSec / 1e9).toFixed(2)} GB/s`);
  for (const compute of task.computes) {
    for (const s of task.shapes) {
      const key = `${compute}:${s.m}x${s.n}x${s.k}`;
      if (key in out.gemm) continue;
      const reps = s.m === 1 ? Math.max(3, task.gemmReps) : task.gemmReps;
      const o = { m: s.m, n: s.n, k: s.k, dtype: 'BF16', compute, threads: task.threads };
      // CPU seconds per GEMM (all threads; the pool sleeps when idle, so this is work, and less sensitive to
      // other processes than wall time): a 1-rep call and a (1 + reps)-rep call differ by `reps` GEMMs.
      const c0 = process.cpuUsage();
      bench.gemm({ ...o, reps: 1 });
      const c1 = process.cpuUsage();
      const sec = bench.gemm({ ...o, reps: 1 + reps });
      const c2 = process.cpuUsage();
      const us = (a, b) => (b.user + b.system - a.user - a.system) / 1e6;
      out.gemm[key] = sec;
      out.gemmCpu ??= {};
      out.gemmCpu[key] = Math.max(0, (us(c1, c2) - us(c0, c1)) / reps);
      log(`gemm ${key.padEnd(22)} ${(sec * 1e3).toFixed(2).padStart(9)} ms  ${(2 * s.m * s.n * s.k / sec / 1e9).toFixed(1)} GFLOP/s`);
    }
  }
  return out;
}

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
}

function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Wall seconds and CPU seconds (all threads of the process, user + system) of an async call. */
async function timed(fn) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await fn();
  const sec = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { sec, cpuSec: (c.user + c.system) / 1e6, r };
}

async function modelRun(task) {
  const { loadModel } = await import(new URL('engine/model.js', dist).href);
  const rssStart = rss();
  const { sec: loadSec, r: model } = await timed(() => loadModel(task.dir, { threads: task.threads, compute: task.compute, tokenizer: false }));
  const V = model.vocabSize;
  const rnd = xorshift(task.seed);
  const tokens = (n) => Array.from({ length: n }, () => rnd() % V);
  const out = { loadSec, info: null, prefill: [], warmupSec: 0, rss: {}, decode: null, scratchBytes: 0, cacheBytes: 0 };

  // Warm-up: touches every weight page (the mapping starts cold) and the engine's buffers.
  out.warmupSec = (await timed(() => model.forward([tokens(task.decodePrompt)], { logits: 'last' }))).sec;
  log(`${task.name} ${task.compute}: load ${loadSec.toFixed(2)} s, warm-up (${task.decodePrompt} tok) ${out.warmupSec.toFixed(2)} s`);

  for (const T of task.prefill) {
    for (const logits of task.logits ?? ['none', 'last']) {
      const secs = [], cpuSecs = [];
      for (let r = 0; r < task.reps; r++) {
        const batch = [tokens(T)];
        const t = await timed(() => model.forward(batch, { logits }));
        secs.push(t.sec);
        cpuSecs.push(t.cpuSec);
      }
      const best = Math.min(...secs);
      out.prefill.push({ tokens: T, logits, secs, cpuSecs, best, cpuOfBest: cpuSecs[secs.indexOf(best)] });
      log(`${task.name} ${task.compute}: prefill ${T} logits=${logits}: ${secs.map((s) => s.toFixed(2)).join(', ')} s -> ${(T / best).toFixed(1)} tok/s`);
    }
  }
  // Attention share: the same T tokens as T/64 sequences of 64 tokens do the same projection work but about
  // 1/(T/64) of the causal attention work (run.mjs derives the attention time from the difference).
  out.packed = [];
  if (task.breakdown) {
    for (const T of task.prefill) {
      const n = Math.max(1, Math.floor(T / task.breakdownSeqLen));
      const secs = [], cpuSecs = [];
      for (let r = 0; r < task.reps; r++) {
        const batch = Array.from({ length: n }, () => tokens(task.breakdownSeqLen));
        const t = await timed(() => model.forward(batch, { logits: 'none' }));
        secs.push(t.sec);
        cpuSecs.push(t.cpuSec);
      }
      const best = Math.min(...secs);
      out.packed.push({ tokens: n * task.breakdownSeqLen, seqs: n, seqLen: task.breakdownSeqLen, secs, cpuSecs, best,
        cpuOfBest: cpuSecs[secs.indexOf(best)] });
      log(`${task.name} ${task.compute}: prefill ${n} x ${task.breakdownSeqLen} logits=none: ${secs.map((s) => s.toFixed(2)).join(', ')} s`);
    }
  }
  out.info = model.info();
  out.scratchBytes = out.info.scratchBytes;
  out.rss.afterPrefill = rss();

  // Decode: a prompt into the KV cache, then single-token greedy steps (what generate() does per step).
  const cache = model.createCache(1, task.decodePrompt + task.decodeSteps);
  out.cacheBytes = cache.bytes;
  const prompt = tokens(task.decodePrompt);
  const { sec: promptSec, r: first } = await timed(() => model.forward([prompt], { logits: 'last', cache }));
  let next = argmax(first.logits);
  const steps = [];
  for (let i = 0; i < task.decodeSteps; i++) {
    const { sec, r } = await timed(() => model.forward([[next]], { logits: 'last', cache }));
    steps.push(sec);
    next = argmax(r.logits);
  }
  const total = steps.reduce((a, b) => a + b, 0);
  const sorted = [...steps].sort((a, b) => a - b);
  out.decode = {
    prompt: task.decodePrompt, steps: task.decodeSteps, promptSec, totalSec: total,
    tokensPerSec: task.decodeSteps / total, medianStepSec: sorted[Math.floor(sorted.length / 2)], bestStepSec: sorted[0],
  };
  log(`${task.name} ${task.compute}: decode ${task.decodeSteps} steps ${(task.decodeSteps / total).toFixed(2)} tok/s (median step ${(out.decode.medianStepSec * 1e3).toFixed(0)} ms)`);
  out.rss.start = rssStart;
  out.rss.end = rss();
  out.info = model.info();
  out.scratchBytes = out.info.scratchBytes;
  if (task.baseline) out.baseline = baseline(task.baseline);
  return out;
}

childMain((task) => (task.kind === 'baseline' ? baseline(task) : modelRun(task)));
