#!/usr/bin/env node
// What a greedy decode step costs with the next token picked where the model runs (logits 'greedy') against the
// same step with the last logits returned to JavaScript and picked there (src/generate/sampling.ts: repetition
// penalty, argmax, after the non-finite check), timed alternately in one run on the same KV cache position.
// The difference is host work (copies of sequences x vocab floats, their scan in JavaScript) that a GPU waits for.
// Then sampling's cost per row (--temperature): the order of the logits by sampleNext's radix sort against the
// comparator sort it replaced.
// Needs the TypeScript build (npx tsc) and the native addon.
//
//   node benchmarks/generate/run.mjs [--model llama-3.2-1b] [--batches 1,32] [--steps 9] [--penalty 1.1]
//                                    [--threads 2] [--device cpu|cuda] [--prompt 16] [--model-dir <checkpoint>]
// --model-dir runs a checkpoint of your own instead of the random one (e.g. a fixture, whose step is short enough on
// a CPU for the host's share to show as it would next to a GPU step).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { median, parseOptions } from '../common/proc.mjs';
import { ensureSyntheticCheckpoint } from '../common/synthetic-checkpoint.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = new URL('../../dist/src/', import.meta.url);
const o = parseOptions({ model: 'llama-3.2-1b', batches: '1,32', steps: 9, penalty: 1.1, threads: 2, device: 'cpu', prompt: 16, 'model-dir': '' });
const batches = o.batches.split(',').map(Number);
if (batches.some((b) => !(Number.isInteger(b) && b > 0)) || !(o.steps >= 1) || !(o.penalty > 0))
  throw new Error('--batches takes positive integers, --steps >= 1, --penalty > 0');

const { loadModel } = await import(new URL('engine/model.js', dist).href);
const { Rng, sampleNext, orderByLogit } = await import(new URL('generate/sampling.js', dist).href);

const dir = o['model-dir'] ? path.resolve(o['model-dir'])
  : ensureSyntheticCheckpoint(path.join(root, 'benchmarks', '.cache'), o.model, { log: (m) => process.stderr.write(`${m}\n`) }).dir;
const model = await loadModel(dir, { threads: o.threads, tokenizer: false, device: o.device });
const V = model.config.vocabSize;
const rows = [];
for (const B of batches) {
  const cache = model.createCache(B, o.prompt + 2);
  const slots = Array.from({ length: B }, (_, i) => i);
  const history = slots.map((s) => Array.from({ length: o.prompt }, (_, t) => (s * 7919 + t * 104729 + 13) % V));
  await model.forward(history, { logits: 'none', cache, cacheSlots: slots });
  const step = history.map((h) => [h[h.length - 1]]);
  const penalty = o.penalty !== 1 ? { repetitionPenalty: o.penalty } : {};
  const rng = new Rng(0);
  // One decode step at position `prompt` (then the cache is cut back), picked in JavaScript or by the runtime.
  const inJs = async () => {
    const t0 = performance.now();
    const out = await model.forward(step, { logits: 'last', cache, cacheSlots: slots });
    const t1 = performance.now();
    const ids = slots.map((s) => sampleNext(out.logits.subarray(s * V, (s + 1) * V), history[s], penalty, rng));
    const ms = performance.now() - t0;
    slots.forEach((s) => cache.reset(s, o.prompt));
    return { ms, pickMs: ms - (t1 - t0), ids };
  };
  const inRuntime = async (withPenalty = true) => {
    const t0 = performance.now();
    const out = await model.forward(step, { logits: 'greedy', cache, cacheSlots: slots, ...(withPenalty && o.penalty !== 1 ? { ...penalty, penaltyTokens: history } : {}) });
    const ms = performance.now() - t0;
    slots.forEach((s) => cache.reset(s, o.prompt));
    return { ms, ids: Array.from(out.next.tokens) };
  };
  const a0 = await inJs(), b0 = await inRuntime(); // warm-up, and the two must agree
  if (a0.ids.join() !== b0.ids.join()) throw new Error(`batch ${B}: the runtime's picks differ from sampling.ts's`);
  const js = [], jsPick = [], rt = [], rtPlain = [];
  const timeJs = async () => { const r = await inJs(); js.push(r.ms); jsPick.push(r.pickMs); };
  for (let r = 0; r < o.steps; r++) {
    if (r % 2) { rt.push((await inRuntime()).ms); await timeJs(); rtPlain.push((await inRuntime(false)).ms); }
    else { rtPlain.push((await inRuntime(false)).ms); await timeJs(); rt.push((await inRuntime()).ms); }
  }
  // hostSavedMs: what the step in JavaScript costs beyond the runtime's (the logits' copies and the scan).
  const row = { batch: B, jsPickMs: median(js), jsScanMs: median(jsPick), runtimePickMs: median(rt) };
  row.ratio = row.jsPickMs / row.runtimePickMs;
  row.hostSavedMs = row.jsPickMs - row.runtimePickMs;
  // What the repetition penalty adds to the runtime's step (its lists sent, deduplicated, applied).
  row.runtimeNoPenaltyMs = median(rtPlain);
  row.penaltyMs = row.runtimePickMs - row.runtimeNoPenaltyMs;
  rows.push(row);
  console.error(`batch ${B}: logits to JavaScript + pick there ${row.jsPickMs.toFixed(1)} ms/step (of which the scan in ` +
    `JavaScript ${row.jsScanMs.toFixed(1)} ms), picked by the runtime ${row.runtimePickMs.toFixed(1)} ms/step: ` +
    `x${row.ratio.toFixed(2)}, ${row.hostSavedMs.toFixed(1)} ms of host work less per step; the penalty's share of the runtime's step ` +
    `${row.penaltyMs.toFixed(2)} ms (${row.runtimeNoPenaltyMs.toFixed(1)} ms without it)`);
}
// Sampling (--temperature): the order of one row of logits by the radix sort sampleNext uses against the comparator
// sort it replaced (the same order), and a whole sampleNext (temperature 0.8, top-p 0.95), on the model's logits.
const rowsOfLogits = (await model.forward(Array.from({ length: 8 }, (_, s) => [(s * 104729 + 7) % V]), { logits: 'last' })).logits;
const comparator = (l) => Int32Array.from(l.keys()).sort((a, b) => (l[b] - l[a]) || (a - b));
const timeRows = (f) => median(Array.from({ length: 8 }, (_, s) => {
  const l = rowsOfLogits.slice(s * V, (s + 1) * V);
  const t0 = performance.now();
  f(l);
  return performance.now() - t0;
}));
for (let s = 0; s < 8; s++) {
  const l = rowsOfLogits.subarray(s * V, (s + 1) * V);
  if (orderByLogit(l).join() !== comparator(l).join()) throw new Error('orderByLogit differs from the comparator sort');
}
const sampling = { comparatorSortMs: timeRows(comparator), radixOrderMs: timeRows(orderByLogit),
  sampleNextMs: timeRows((l) => sampleNext(l, [], { temperature: 0.8, topP: 0.95 }, new Rng(1))) };
sampling.ratio = sampling.comparatorSortMs / sampling.radixOrderMs;
console.error(`sampling: order of ${V} logits by the comparator sort ${sampling.comparatorSortMs.toFixed(1)} ms, by the radix sort ` +
  `${sampling.radixOrderMs.toFixed(1)} ms (x${sampling.ratio.toFixed(1)}); sampleNext (temperature 0.8, top-p 0.95) ${sampling.sampleNextMs.toFixed(1)} ms per row`);
console.log(JSON.stringify({ model: o['model-dir'] || o.model, vocab: V, device: model.info().describe, threads: o.threads, penalty: o.penalty,
  prompt: o.prompt, steps: o.steps, rows, sampling }, null, 2));
model.dispose();
