#!/usr/bin/env node
// Whether `profile` overlaps its two stages: cutting batches from the corpus (reading, tokenizing: JavaScript on
// the main thread) and the runtime's forward with statistics (off the JS thread; on a GPU the device). Times each
// stage alone on the same batches, then profileCorpus end to end, in one run: with the overlap the whole takes about
// the slower stage, without it the sum. The bundled udhr20 model is the default because its forward is about as
// fast as the tokenizer on a CPU, as a large model's forward is on a GPU. Needs the TypeScript build (npx tsc).
//
//   node benchmarks/profile/pipeline.mjs [--model models/udhr20] [--langs en,de,fr,sw,ru,zh] [--tokens 40000]
//                                        [--batch-tokens 4096] [--max-len 128] [--threads 2] [--device cpu] [--reps 3]
//                                        [--layers N (profile the first N layers: a cheaper forward; 0 = all)]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { median, parseOptions } from '../common/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = new URL('../../dist/src/', import.meta.url);
const o = parseOptions({ model: path.join(root, 'models', 'udhr20'), langs: 'en,de,fr,sw,ru,zh', tokens: 40000, 'batch-tokens': 4096,
  'max-len': 128, threads: 2, device: 'cpu', reps: 3, layers: 0 });

const { loadModel } = await import(new URL('engine/model.js', dist).href);
const { udhrCorpus } = await import(new URL('corpus/udhr.js', dist).href);
const { scopeBatches } = await import(new URL('corpus/scopes.js', dist).href);
const { profileCorpus } = await import(new URL('profile/profile.js', dist).href);

const langs = o.langs.split(',');
const model = await loadModel(o.model, { threads: o.threads, device: o.device });
const tok = model.requireTokenizer();
const corpus = udhrCorpus(langs, { split: 'all' });
const scope = { mode: 'windows', maxLen: o['max-len'], bos: false, countPadding: false, tokenBudget: o.tokens };
const layers = o.layers || model.config.numLayers;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'langneurons-bench-pipeline-'));

const cut = async () => {
  const batches = [];
  for (const lang of langs) for await (const b of scopeBatches(corpus.source(lang), tok, { scope, batchTokens: o['batch-tokens'] })) batches.push(b);
  return batches;
};
const rounds = { cut: [], forward: [], whole: [], fixed: [] };
let tokens = 0;
for (let r = 0; r <= o.reps; r++) { // round 0 warms up
  let t0 = performance.now();
  const batches = await cut();
  const tCut = performance.now() - t0;
  const stats = model.createStats({ sites: ['act'], layers });
  t0 = performance.now();
  for (const b of batches) await model.forward(b.sequences, { logits: 'none', stats, countMask: b.countMask, lastLayer: layers - 1 });
  const tForward = performance.now() - t0;
  tokens = batches.reduce((n, b) => n + b.tokens, 0);
  const out = path.join(tmp, `r${r}`);
  t0 = performance.now();
  await profileCorpus(model, corpus, { languages: langs, outDir: out, scope, batchTokens: o['batch-tokens'], layers });
  const tWhole = performance.now() - t0;
  // What a run costs besides its batches (fingerprints of the weights and the corpus, the lock, writing the files):
  // the same run with one window per language.
  t0 = performance.now();
  await profileCorpus(model, corpus, { languages: langs, outDir: `${out}-fixed`, scope: { ...scope, tokenBudget: scope.maxLen },
    batchTokens: o['batch-tokens'], layers });
  const tFixed = performance.now() - t0;
  if (r > 0) { rounds.cut.push(tCut); rounds.forward.push(tForward); rounds.whole.push(tWhole); rounds.fixed.push(tFixed); }
}
const cutMs = median(rounds.cut), forwardMs = median(rounds.forward), wholeMs = median(rounds.whole), fixedMs = median(rounds.fixed);
const batchesMs = wholeMs - fixedMs;
const result = { model: path.basename(o.model), device: model.info().describe, langs, tokens, layers, cutMs, forwardMs, wholeMs, fixedMs,
  batchesOverSlowerStage: batchesMs / Math.max(cutMs, forwardMs), batchesOverSum: batchesMs / (cutMs + forwardMs) };
console.error(`${tokens} tokens: cutting batches ${cutMs.toFixed(0)} ms, forwards ${forwardMs.toFixed(0)} ms; profile end to end ` +
  `${wholeMs.toFixed(0)} ms, of which ${fixedMs.toFixed(0)} ms fixed: the batches took ${result.batchesOverSlowerStage.toFixed(2)} x the ` +
  `slower stage, ${result.batchesOverSum.toFixed(2)} x the sum of both (1.00 x the sum: no overlap)`);
console.log(JSON.stringify(result, null, 2));
fs.rmSync(tmp, { recursive: true, force: true });
model.dispose();
