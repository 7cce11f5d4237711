#!/usr/bin/env node
// Overhead of the fused activation statistics: a 512-token forward (logits 'none') of a small random-weight
// model without statistics, with the default statistics (site act: count > 0, sum, sum of squares), and with
// them plus lastLayer = L/2 - 1 (profiling the first half only). Best of several interleaved runs each (so that
// a change in machine load hits every variant alike). Needs `npm run build` (reads dist/).
//   node benchmarks/profile/overhead.mjs [--dir <checkpoint>] [--tokens 512] [--reps 7] [--threads N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { writeSyntheticSafetensors } from '../common/synthetic-checkpoint.mjs';

const dist = new URL('../../dist/src/', import.meta.url);
const { loadModel } = await import(new URL('engine/model.js', dist).href);

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const tokens = Number(arg('tokens', 512));
const reps = Number(arg('reps', 7));
const threads = Number(arg('threads', os.availableParallelism()));

// Small Llama shape (~40M parameters, bf16): big enough that the forward is GEMM-bound like real models.
const SMALL = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 512, intermediate_size: 1408,
  num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 4096,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000.0, tie_word_embeddings: true,
  hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16',
};

function smallCheckpoint() {
  const dir = path.join(os.tmpdir(), 'langneurons-bench-profile-small');
  const st = path.join(dir, 'model.safetensors');
  const cfgFile = path.join(dir, 'config.json');
  const text = JSON.stringify(SMALL, null, 2) + '\n';
  if (fs.existsSync(st) && fs.existsSync(cfgFile) && fs.readFileSync(cfgFile, 'utf8') === text) return dir;
  fs.mkdirSync(dir, { recursive: true });
  writeSyntheticSafetensors(st, SMALL, 1);
  fs.writeFileSync(cfgFile, text);
  return dir;
}

const dir = arg('dir', null) ?? smallCheckpoint();
const model = await loadModel(dir, { threads, tokenizer: false });
const L = model.config.numLayers;
let seed = 12345;
const ids = Array.from({ length: tokens }, () => (seed = (seed * 1103515245 + 12345) >>> 0) % model.vocabSize);

const variants = {
  base: () => ({ logits: 'none' }),
  stats: () => ({ logits: 'none', stats: model.createStats({ sites: ['act'] }) }),
  halfStats: () => ({ stats: model.createStats({ sites: ['act'], layers: Math.floor(L / 2) }), lastLayer: Math.floor(L / 2) - 1 }),
};
// Wall time, and CPU time of the whole process (less disturbed when other processes share the cores).
const best = Object.fromEntries(Object.keys(variants).map((k) => [k, Infinity]));
const bestCpu = Object.fromEntries(Object.keys(variants).map((k) => [k, Infinity]));
await model.forward([ids], variants.base()); // warm-up: scratch buffers, page-in of the weights
for (let r = 0; r < reps; r++) {
  for (const [k, make] of Object.entries(variants)) {
    const opts = make();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await model.forward([ids], opts);
    best[k] = Math.min(best[k], performance.now() - t0);
    const c = process.cpuUsage(c0);
    bestCpu[k] = Math.min(bestCpu[k], (c.user + c.system) / 1000);
  }
}
const info = model.info();
console.log(`model ${path.basename(dir)} (L=${L}, hidden=${model.config.hiddenSize}, intermediate=${model.config.intermediateSize}), ` +
  `${tokens} tokens, ${info.threads} threads, kernel ${info.kernel}, best of ${reps}`);
const line = (label, k) => console.log(`  ${label.padEnd(26)} wall ${best[k].toFixed(2).padStart(9)} ms (x${(best[k] / best.base).toFixed(4)})` +
  `   cpu ${bestCpu[k].toFixed(2).padStart(9)} ms (x${(bestCpu[k] / bestCpu.base).toFixed(4)})`);
line('forward, no stats', 'base');
line('forward, stats (act)', 'stats');
line(`lastLayer=${Math.floor(L / 2) - 1}, stats (act)`, 'halfStats');
