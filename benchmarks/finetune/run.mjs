#!/usr/bin/env node
// Cost of each fine-tuning method (issue "Training engine ... with their cost measured", "Fast and lean"): step
// time, tokens/s, trainable parameters, bytes of gradients + optimizer state and peak RSS for full, mlp, neurons,
// random, lora, neuron-lora and dense-then-mask, each in a fresh child process (child.mjs), as ratios to `full`.
// See README.md.
//
//   node benchmarks/finetune/run.mjs [--quick] [--models a,b] [--methods m1,m2] [--steps N] [--tokens T]
//                                    [--threads N] [--fraction F] [--out file]
// Needs `npx tsc -p tsconfig.json` (dist/) and the native addon. Results: benchmarks/finetune/results.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { runChild, writeFileAtomic } from '../common/proc.mjs';
import { dims, ensureSyntheticCheckpoint, MODEL_SHAPES } from '../common/synthetic-checkpoint.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const cacheDir = path.join(root, 'benchmarks', '.cache');
const ALL_METHODS = ['full', 'mlp', 'neurons', 'random', 'lora', 'neuron-lora', 'dense-then-mask', 'dense-then-mask-native'];
const LANG = 'xx';

const o = { quick: false, models: null, methods: ALL_METHODS, steps: 1, tokens: 256, threads: os.availableParallelism?.() ?? 2,
  fraction: 0.01, out: path.join(here, 'results.json'), fullBytesLimit: 0.8 * os.totalmem() };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const val = () => process.argv[++i];
  if (a === '--quick') o.quick = true;
  else if (a === '--models') o.models = val().split(',');
  else if (a === '--methods') o.methods = val().split(',');
  else if (a === '--steps') o.steps = Number(val());
  else if (a === '--tokens') o.tokens = Number(val());
  else if (a === '--threads') o.threads = Number(val());
  else if (a === '--fraction') o.fraction = Number(val());
  else if (a === '--out') o.out = path.resolve(val());
  else throw new Error(`unknown option ${a}`);
}
o.models ??= o.quick ? ['qwen2.5-0.5b'] : ['qwen2.5-0.5b', 'llama-3.2-1b'];
const log = (m) => process.stderr.write(`${m}\n`);

const dist = new URL('../../dist/src/', import.meta.url);
const { openCheckpoint } = await import(new URL('model/checkpoint.js', dist).href);
const { modelIdentity } = await import(new URL('profile/identity.js', dist).href);
const { writeMask, MASK_FORMAT } = await import(new URL('identify/masks.js', dist).href);
const { randomNeurons } = await import(new URL('train/methods.js', dist).href);

/** A random mask of `fraction` of all (layer, neuron) pairs in the format of src/identify/masks.ts. */
async function ensureMask(dir, fraction) {
  const ckpt = await openCheckpoint(dir);
  const c = ckpt.config;
  const count = Math.round(fraction * c.numLayers * c.intermediateSize);
  const file = path.join(cacheDir, `finetune-mask-${path.basename(dir)}-${count}.json`);
  const mask = {
    format: MASK_FORMAT, method: 'random', parameters: { fraction, count, seed: 7 }, site: 'act',
    model: modelIdentity(ckpt), sources: [], layers: c.numLayers, width: c.intermediateSize,
    languages: { [LANG]: randomNeurons(c.numLayers, c.intermediateSize, count, 7) },
  };
  await writeMask(file, mask);
  return { file, count };
}

const results = { date: new Date().toISOString(), host: { cpus: os.cpus()[0]?.model, n: os.cpus().length, mem: os.totalmem() },
  options: { ...o, out: undefined }, models: {} };
for (const name of o.models) {
  const ck = ensureSyntheticCheckpoint(cacheDir, name, { log });
  const d = dims(MODEL_SHAPES[name]);
  const { file: maskFile, count } = await ensureMask(ck.dir, o.fraction);
  const params = d.V * d.H * (d.tied ? 1 : 2) + d.L * (d.layerMatmul + 2 * d.H + (d.qkvBias ? d.qd + 2 * d.kvd : 0)) + d.H;
  const fullBytes = params * 16 + d.L * o.tokens * (4 * d.H + 2 * d.qd + 2 * d.kvd + 3 * d.I) * 4 + 2.5e9;
  const m = { neurons: count, params, runs: {}, skipped: {} };
  results.models[name] = m;
  for (const method of o.methods) {
    if (method === 'full' && fullBytes > o.fullBytesLimit) {
      m.skipped[method] = `needs ~${(fullBytes / 1e9).toFixed(1)} GB (f32 master + grad + Adam m, v of ${(params / 1e9).toFixed(2)} B parameters), over the limit of ${(o.fullBytesLimit / 1e9).toFixed(1)} GB`;
      log(`${name} ${method}: skipped (${m.skipped[method]})`);
      continue;
    }
    log(`${name} ${method} ...`);
    const t0 = performance.now();
    try {
      m.runs[method] = await runChild(path.join(here, 'child.mjs'),
        { dir: ck.dir, method, maskFile, lang: LANG, tokens: o.tokens, steps: o.steps, threads: o.threads, seed: 1 });
      const r = m.runs[method];
      log(`  step ${r.stepSeconds.toFixed(2)} s, cpu ${r.stepCpuSeconds.toFixed(2)} s, load ${r.loadavg[0].toFixed(2)} (fwd ${r.forwardSeconds.toFixed(2)}, bwd ${r.backwardSeconds.toFixed(2)}, mask ${r.maskSeconds.toFixed(2)}, adam ${r.optSeconds.toFixed(2)}), peak RSS ${(r.rss.peak / 1e9).toFixed(2)} GB, child ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    } catch (e) {
      m.skipped[method] = `failed: ${e.message.split('\n')[0]}`;
      log(`  ${m.skipped[method]}`);
    }
  }
  writeFileAtomic(o.out, JSON.stringify(results, null, 2) + '\n');
}

// ---- markdown table
const fmt = (x, digits = 2) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const gb = (b) => `${(b / 1e9).toFixed(b < 1e8 ? 4 : 2)} GB`;
const lines = [];
for (const [name, m] of Object.entries(results.models)) {
  const base = m.runs.full;
  const ref = base ? 'full' : m.runs.mlp ? 'mlp' : null;
  const R = ref ? m.runs[ref] : null;
  const kernel = Object.values(m.runs)[0]?.kernel ?? '?';
  lines.push(`\n### ${name} (${(m.params / 1e9).toFixed(3)} B parameters, mask: ${m.neurons} neurons = ${(100 * o.fraction).toFixed(1)}%, ${o.tokens} tokens x batch 1, ${o.threads} threads, ${kernel} kernels)\n`);
  if (ref !== 'full') lines.push(`\`full\` not measured (${m.skipped.full ?? 'not requested'}); ratios are to \`${ref}\`.\n`);
  lines.push(`| method | step s | ×${ref} | step cpu s | ×${ref} | fwd s | bwd s | mask s | adam s | tok/s | trainable | ×${ref} | grad+opt | ×${ref} | peak RSS | ×${ref} |`);
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const method of ALL_METHODS) {
    const r = m.runs[method];
    if (!r) { if (m.skipped[method]) lines.push(`| ${method} | ${m.skipped[method]} |||||||||||||`); continue; }
    lines.push(`| ${method} | ${fmt(r.stepSeconds)} | ${fmt(R && r.stepSeconds / R.stepSeconds, 3)} | ${fmt(r.stepCpuSeconds)} | ${fmt(R && r.stepCpuSeconds / R.stepCpuSeconds, 3)} | ${fmt(r.forwardSeconds)} | ${fmt(r.backwardSeconds)} | ${fmt(r.maskSeconds)} | ${fmt(r.optSeconds)} | ${fmt(r.tokensPerSecond, 1)} | ${r.trainable.toLocaleString('en')} | ${fmt(R && r.trainable / R.trainable, 5)} | ${gb(r.gradOptBytes)} | ${fmt(R && r.gradOptBytes / R.gradOptBytes, 5)} | ${gb(r.rss.peak)} | ${fmt(R && r.rss.peak / R.rss.peak, 3)} |`);
  }
  const n = m.runs.neurons, dtm = m.runs['dense-then-mask'];
  if (n && base) {
    lines.push('');
    lines.push(`- neurons step ≤ 0.70× full: ${fmt(n.stepSeconds / base.stepSeconds, 3)} → ${n.stepSeconds / base.stepSeconds <= 0.7 ? 'PASS' : 'FAIL'}`);
    lines.push(`- neurons grad+optimizer ≤ 2% of full: ${fmt(100 * n.gradOptBytes / base.gradOptBytes, 4)}% → ${n.gradOptBytes / base.gradOptBytes <= 0.02 ? 'PASS' : 'FAIL'}`);
  }
  const dtmn = m.runs['dense-then-mask-native'];
  if (n && dtmn) lines.push(`- neurons ≥ 1.3× faster than dense-then-mask-native: ${fmt(dtmn.stepSeconds / n.stepSeconds, 3)}× → ${dtmn.stepSeconds / n.stepSeconds >= 1.3 ? 'PASS' : 'FAIL'}`);
  if (n && dtm) lines.push(`- neurons ≥ 1.3× faster than dense-then-mask: ${fmt(dtm.stepSeconds / n.stepSeconds, 3)}× (${fmt((dtm.stepSeconds - dtm.maskSeconds) / n.stepSeconds, 3)}× without the JS masking) → ${dtm.stepSeconds / n.stepSeconds >= 1.3 ? 'PASS' : 'FAIL'}`);
}
const table = lines.join('\n') + '\n';
results.table = table;
writeFileAtomic(o.out, JSON.stringify(results, null, 2) + '\n');
process.stdout.write(table);
