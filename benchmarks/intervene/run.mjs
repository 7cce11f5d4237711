#!/usr/bin/env node
// Overhead of an intervention in the forward: the same prefill with and without an intervention that edits
// a LAPE-sized neuron set (default 2% of each layer's neurons, two specs composed: deactivate + set), timed
// interleaved in one run so that both see the same machine state; reports the ratio of the medians.
// Needs the TypeScript build (npx tsc) and the native addon.
//
//   node benchmarks/intervene/run.mjs [--model qwen2.5-0.5b] [--tokens 256] [--reps 9] [--threads 2] [--fraction 0.02]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { median, parseOptions } from '../common/proc.mjs';
import { ensureSyntheticCheckpoint } from '../common/synthetic-checkpoint.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = new URL('../../dist/src/', import.meta.url);
const o = parseOptions({ model: 'qwen2.5-0.5b', tokens: 256, reps: 9, threads: 2, fraction: 0.02 });

const { loadModel } = await import(new URL('engine/model.js', dist).href);
const { resolveIntervention } = await import(new URL('intervene/index.js', dist).href);
const { writeMaskJson, MASK_FORMAT } = await import(new URL('identify/masks.js', dist).href);
const { modelIdentity } = await import(new URL('profile/identity.js', dist).href);
const { seededRandom } = await import(new URL('identify/mask-ops.js', dist).href);

const { dir } = ensureSyntheticCheckpoint(path.join(root, 'benchmarks', '.cache'), o.model, { log: (m) => process.stderr.write(`${m}\n`) });
const model = await loadModel(dir, { threads: o.threads, tokenizer: false });
const { numLayers: L, intermediateSize: I, vocabSize: V } = model.config;

// A mask with two "languages" of fraction × I random neurons per layer.
const rand = seededRandom(1);
const pick = () => Array.from({ length: L }, () => [...new Set(Array.from({ length: Math.round(o.fraction * I) }, () => Math.floor(rand() * I)))].sort((a, b) => a - b));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'langneurons-bench-intervene-'));
const maskFile = path.join(tmp, 'mask.json');
await writeMaskJson(maskFile, { format: MASK_FORMAT, method: 'bench', parameters: {}, site: 'act', model: modelIdentity(model.checkpoint), sources: [],
  layers: L, width: I, languages: { en: pick(), sw: pick() } });
const iv = await resolveIntervention(model, [`deactivate:${maskFile}:en`, `set:1.5:mask=${maskFile}:lang=sw`]);

const tokens = Array.from({ length: o.tokens }, (_, i) => (i * 7919 + 13) % V);
const time = async (opts) => { const t0 = performance.now(); await model.forward([tokens], { logits: 'last', ...opts }); return performance.now() - t0; };
await time({}); await time({ intervene: iv }); // warm-up
const plain = [], intervened = [];
for (let r = 0; r < o.reps; r++) {
  // Alternate the order so drift does not favour one side.
  if (r % 2) { intervened.push(await time({ intervene: iv })); plain.push(await time({})); }
  else { plain.push(await time({})); intervened.push(await time({ intervene: iv })); }
}
const result = { model: o.model, tokens: o.tokens, threads: o.threads, edits: iv.edits, editsPerLayer: iv.edits / L,
  plainMs: median(plain), intervenedMs: median(intervened), ratio: median(intervened) / median(plain) };
console.log(JSON.stringify(result, null, 2));
fs.rmSync(tmp, { recursive: true, force: true });
