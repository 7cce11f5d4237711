#!/usr/bin/env node
// Overhead of an intervention in the forward: the same prefill with and without an intervention that edits
// a LAPE-sized neuron set (default 2% of each layer's neurons, two specs composed: deactivate + set), timed
// interleaved in one run so that both see the same machine state; reports the ratio of the medians.
// Needs the TypeScript build (npx tsc) and the native addon.
//
// With --setting kojima, instead: Kojima et al.'s setting, every linear layer's outputs (q, k, v, o, gate, up, down) with
// `fraction` of each site's units per layer set to a value (seven specs, one per site's mask), so that the projection
// sites' edit passes are timed too.
//
//   node benchmarks/intervene/run.mjs [--model qwen2.5-0.5b] [--tokens 256] [--reps 9] [--threads 2] [--fraction 0.02] [--setting act|kojima]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { median, parseOptions } from '../common/proc.mjs';
import { ensureSyntheticCheckpoint } from '../common/synthetic-checkpoint.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = new URL('../../dist/src/', import.meta.url);
const o = parseOptions({ model: 'qwen2.5-0.5b', tokens: 256, reps: 9, threads: 2, fraction: 0.02, setting: 'act' });
if (!['act', 'kojima'].includes(o.setting)) throw new Error(`--setting must be act or kojima, got ${o.setting}`);

const { loadModel } = await import(new URL('engine/model.js', dist).href);
const { resolveIntervention } = await import(new URL('intervene/index.js', dist).href);
const { writeMaskJson, MASK_FORMAT } = await import(new URL('identify/masks.js', dist).href);
const { modelIdentity } = await import(new URL('profile/identity.js', dist).href);
const { seededRandom } = await import(new URL('identify/mask-ops.js', dist).href);

const { dir } = ensureSyntheticCheckpoint(path.join(root, 'benchmarks', '.cache'), o.model, { log: (m) => process.stderr.write(`${m}\n`) });
const model = await loadModel(dir, { threads: o.threads, tokenizer: false });
const { numLayers: L, intermediateSize: I, vocabSize: V } = model.config;

// Masks of fraction × width random units per layer: two "languages" at act, or one per Kojima site.
const rand = seededRandom(1);
const pick = (W) => Array.from({ length: L }, () => [...new Set(Array.from({ length: Math.round(o.fraction * W) }, () => Math.floor(rand() * W)))].sort((a, b) => a - b));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'langneurons-bench-intervene-'));
const writeMask = async (site, W, languages) => {
  const file = path.join(tmp, `mask.${site}.json`);
  await writeMaskJson(file, { format: MASK_FORMAT, method: 'bench', parameters: {}, site, model: modelIdentity(model.checkpoint), sources: [], layers: L, width: W, languages });
  return file;
};
const c = model.config;
const KOJIMA = { q: c.numHeads * c.headDim, k: c.numKvHeads * c.headDim, v: c.numKvHeads * c.headDim, o: c.hiddenSize, gate: I, up: I, down: c.hiddenSize };
let specs;
if (o.setting === 'kojima') {
  specs = [];
  for (const [site, W] of Object.entries(KOJIMA)) specs.push(`set:0.5:mask=${await writeMask(site, W, { de: pick(W) })}:lang=de:site=${site}`);
} else {
  const maskFile = await writeMask('act', I, { en: pick(I), sw: pick(I) });
  specs = [`deactivate:${maskFile}:en`, `set:1.5:mask=${maskFile}:lang=sw`];
}
const iv = await resolveIntervention(model, specs);

const tokens = Array.from({ length: o.tokens }, (_, i) => (i * 7919 + 13) % V);
const time = async (opts) => { const t0 = performance.now(); await model.forward([tokens], { logits: 'last', ...opts }); return performance.now() - t0; };
await time({}); await time({ intervene: iv }); // warm-up
const plain = [], intervened = [];
for (let r = 0; r < o.reps; r++) {
  // Alternate the order so drift does not favour one side.
  if (r % 2) { intervened.push(await time({ intervene: iv })); plain.push(await time({})); }
  else { plain.push(await time({})); intervened.push(await time({ intervene: iv })); }
}
const result = { model: o.model, setting: o.setting === 'kojima' ? 'kojima: q, k, v, o, gate, up, down' : 'act: deactivate + set', tokens: o.tokens, threads: o.threads,
  edits: iv.edits, editsPerLayer: iv.edits / L,
  plainMs: median(plain), intervenedMs: median(intervened), ratio: median(intervened) / median(plain) };
console.log(JSON.stringify(result, null, 2));
fs.rmSync(tmp, { recursive: true, force: true });
