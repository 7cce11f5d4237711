#!/usr/bin/env node
// One measurement of benchmarks/profile/run.mjs in a fresh Node process (see README.md next to this file):
//   { kind: 'forward', dir, tokens, reps, threads }: interleaved forwards of one `tokens`-long sequence:
//       base  = logits 'none', no statistics;  stats = logits 'none' + the default statistics (profiling);
//       naive = logits 'all' + the default statistics (a profiler that runs the whole model, LM head included);
//     best wall and CPU time of each over `reps` rounds.
//   { kind: 'profile', dir, corpus, lang, tokens, maxLen, batchTokens, layers?, threads }: profileCorpus over a corpus
//     folder with a token budget; tokens/s and the peak RSS (VmHWM) of the process afterwards.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { childMain, rss } from '../common/proc.mjs';

const dist = new URL('../../dist/src/', import.meta.url);
const { loadModel } = await import(new URL('engine/model.js', dist).href);

async function forwardTask(t) {
  const model = await loadModel(t.dir, { threads: t.threads, tokenizer: false });
  let seed = 12345;
  const ids = Array.from({ length: t.tokens }, () => (seed = (seed * 1103515245 + 12345) >>> 0) % model.vocabSize);
  const variants = {
    base: () => ({ logits: 'none' }),
    stats: () => ({ logits: 'none', stats: model.createStats() }),
    naive: () => ({ logits: 'all', stats: model.createStats() }),
  };
  await model.forward([ids.slice(0, 64)], { logits: 'none' }); // warm-up: pages in the layer weights
  await model.forward([ids.slice(0, 16)], { logits: 'all' }); // and the LM head
  const wall = {}, cpu = {}, all = {};
  for (const k of Object.keys(variants)) { wall[k] = Infinity; cpu[k] = Infinity; all[k] = []; }
  for (let r = 0; r < t.reps; r++) {
    // Rotate the order every round so that a load change does not always hit the same variant.
    const keys = Object.keys(variants);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[(i + r) % keys.length];
      const opts = variants[k]();
      globalThis.gc?.(); // run.mjs passes --expose-gc: the last variant's garbage is not collected inside this timing
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await model.forward([ids], opts);
      const w = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      const cs = (c.user + c.system) / 1e6;
      wall[k] = Math.min(wall[k], w);
      cpu[k] = Math.min(cpu[k], cs);
      all[k].push({ wall: w, cpu: cs });
    }
  }
  return { wall, cpu, runs: all, info: model.info(), loadavg: os.loadavg() };
}

async function profileTask(t) {
  const { profileCorpus } = await import(new URL('profile/profile.js', dist).href);
  const { openCorpusSpec } = await import(new URL('corpus/index.js', dist).href);
  const model = await loadModel(t.dir, { threads: t.threads });
  const corpus = await openCorpusSpec(t.corpus, { languages: [t.lang] });
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ln-bench-profile-'));
  try {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const [r] = await profileCorpus(model, corpus, {
      languages: [t.lang], outDir: out, batchTokens: t.batchTokens, resume: false,
      scope: { mode: 'windows', maxLen: t.maxLen, bos: false, countPadding: false, tokenBudget: t.tokens },
      ...(t.layers ? { layers: t.layers } : {}),
    });
    const seconds = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    return { tokens: r.tokens, sequences: r.sequences, seconds, cpuSeconds: (c.user + c.system) / 1e6, rss: rss(),
      statsFileBytes: fs.statSync(r.file).size, info: model.info(), loadavg: os.loadavg() };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

await childMain(async (t) => {
  if (t.kind === 'forward') return forwardTask(t);
  if (t.kind === 'profile') return profileTask(t);
  throw new Error(`unknown task kind ${t.kind}`);
});
