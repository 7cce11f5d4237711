#!/usr/bin/env node
// Continuous batching against batch-by-batch generation, greedy, on the same prompts in one run:
//  - batch by batch (what eval and generate did before): generateTokens on `batch` prompts at a time, each call
//    decoding until its longest output ends;
//  - continuous: one call with concurrency `batch`, a sequence that ends handing its cache slot to the next prompt.
// Outputs end at EOS, the stop string or --max-new-tokens, so their lengths vary as an eval's do. Printed: forwards
// (steps), the mean number of sequences a decode step carries, and the wall time. On a GPU a decode step costs
// about the same for 1 or 64 sequences (it reads the weights once), so the steps ratio is the expected speed-up
// there; on this CPU a step's cost grows with its rows, so the wall time moves less. The outputs are checked equal.
// Needs the TypeScript build (npx tsc).
//
//   node benchmarks/generate/continuous.mjs [--model-dir models/udhr20] [--prompts 256] [--batch 64]
//        [--max-new-tokens 64] [--stop .] [--penalty 1.1] [--threads 2] [--device cpu|cuda]
// The default model is the bundled udhr20 (trained on UDHR text in 20 languages: its outputs end at a full stop
// after a varying number of tokens), with FLORES's repetition penalty.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseOptions } from '../common/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = new URL('../../dist/src/', import.meta.url);
const o = parseOptions({ 'model-dir': path.join(root, 'models', 'udhr20'), prompts: 256, batch: 64, 'max-new-tokens': 64, stop: '.', penalty: 1.1,
  threads: 2, device: 'cpu' });
const { loadModel } = await import(new URL('engine/model.js', dist).href);
const { generateTokens } = await import(new URL('generate/generate.js', dist).href);

const model = await loadModel(path.resolve(o['model-dir']), { threads: o.threads, device: o.device });
const tok = model.requireTokenizer();
const starts = ['Everyone has the right to', 'Il-bniedem kollha jitwieldu', 'Toute personne a droit', 'Jeder hat das Recht auf',
  'Toda persona tiene derecho', 'Kila mtu ana haki', 'No one shall be', 'Nul ne sera', 'Niemand darf', 'Hakuna mtu'];
const prompts = Array.from({ length: o.prompts }, (_, i) => tok.encode(`${starts[i % starts.length]}${i >= starts.length ? ` ${i}` : ''}`));
const gen = { maxNewTokens: o['max-new-tokens'], stop: [o.stop.replace(/\\n/g, '\n')], repetitionPenalty: o.penalty };

// Forwards and the rows of each, counted by wrapping the model's forward.
const forward = model.forward.bind(model);
let steps = 0, rows = 0;
model.forward = (batch, opts) => { steps++; rows += batch.length; return forward(batch, opts); };
const measure = async (run) => {
  steps = 0; rows = 0;
  const t0 = performance.now();
  const out = await run();
  return { ms: performance.now() - t0, steps, meanRows: rows / steps, out };
};
const byBatch = async () => {
  const out = [];
  for (let i = 0; i < prompts.length; i += o.batch) out.push(...await generateTokens(model, prompts.slice(i, i + o.batch), gen));
  return out;
};
const continuous = () => generateTokens(model, prompts, { ...gen, concurrency: o.batch });
await continuous(); // warm-up
const a = await measure(byBatch), b = await measure(continuous), a2 = await measure(byBatch), b2 = await measure(continuous);
if (JSON.stringify(a.out.map((g) => g.tokens)) !== JSON.stringify(b.out.map((g) => g.tokens))) throw new Error('continuous batching generated other tokens');
const lengths = b.out.map((g) => g.tokens.length).sort((x, y) => x - y);
const tokens = lengths.reduce((s, n) => s + n, 0);
const ms = (x, y) => Math.min(x.ms, y.ms);
const result = {
  model: path.basename(o['model-dir']), device: model.info().describe, prompts: o.prompts, batch: o.batch, maxNewTokens: o['max-new-tokens'],
  outputTokens: { total: tokens, median: lengths[lengths.length >> 1], max: lengths[lengths.length - 1] },
  byBatch: { steps: a.steps, meanRowsPerStep: a.meanRows, ms: ms(a, a2) },
  continuous: { steps: b.steps, meanRowsPerStep: b.meanRows, ms: ms(b, b2) },
};
result.stepsRatio = a.steps / b.steps;
result.timeRatio = result.byBatch.ms / result.continuous.ms;
console.error(`${o.prompts} prompts, batch ${o.batch}, outputs of ${lengths[0]}-${result.outputTokens.max} tokens (median ${result.outputTokens.median}):`);
console.error(`  batch by batch: ${a.steps} forwards, ${a.meanRows.toFixed(1)} sequences a step, ${result.byBatch.ms.toFixed(0)} ms`);
console.error(`  continuous:     ${b.steps} forwards, ${b.meanRows.toFixed(1)} sequences a step, ${result.continuous.ms.toFixed(0)} ms`);
console.error(`  x${result.stepsRatio.toFixed(2)} fewer forwards (the speed-up where a step costs the same for any batch, as on a GPU); x${result.timeRatio.toFixed(2)} wall time here`);
console.log(JSON.stringify(result, null, 2));
model.dispose();
