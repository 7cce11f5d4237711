// One round of the engine's side of the llama.cpp comparison, in a fresh process (as llama-bench is one):
//   { kind: 'round', dir, compute, threads, prefillTokens, decodeSteps, seed }
//   -> { kernel, loadSec, prefillSec, prefillTokensPerSec, decodeSec, decodeTokensPerSec }
// or the engine's f32 logits of one sequence, for the check that llama.cpp runs the same model:
//   { kind: 'logits', dir, tokens } -> { vocab, logits: number[][] (one row per token) }
// Prefill: one forward of `prefillTokens` random token ids with logits 'last' (llama-bench's pp: one batch, logits
// of the last token). Decode: one token into an empty KV cache, then `decodeSteps` single-token greedy steps (each a
// forward with logits 'last' and an argmax, as generate() does), timed together (llama-bench's tg: `n` tokens one
// at a time from an empty cache).
import { childMain } from '../common/proc.mjs';

const dist = new URL('../../dist/src/', import.meta.url);

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

async function engineRound(task) {
  const { loadModel } = await import(new URL('engine/model.js', dist).href);
  let t0 = performance.now();
  const model = await loadModel(task.dir, { threads: task.threads, compute: task.compute, tokenizer: false });
  const loadSec = (performance.now() - t0) / 1000;
  const rnd = xorshift(task.seed);
  const tokens = (n) => Array.from({ length: n }, () => rnd() % model.vocabSize);

  // Warm-up (llama-bench warms up too): faults in every page of the memory-mapped weights, sizes the buffers.
  await model.forward([tokens(Math.min(64, task.prefillTokens))], { logits: 'last' });

  const batch = [tokens(task.prefillTokens)];
  t0 = performance.now();
  await model.forward(batch, { logits: 'last' });
  const prefillSec = (performance.now() - t0) / 1000;

  const cache = model.createCache(1, 1 + task.decodeSteps);
  const first = await model.forward([tokens(1)], { logits: 'last', cache });
  let next = argmax(first.logits);
  t0 = performance.now();
  for (let i = 0; i < task.decodeSteps; i++) {
    const r = await model.forward([[next]], { logits: 'last', cache });
    next = argmax(r.logits);
  }
  const decodeSec = (performance.now() - t0) / 1000;
  return {
    kernel: model.info().kernel, loadSec, prefillSec, prefillTokensPerSec: task.prefillTokens / prefillSec,
    decodeSec, decodeTokensPerSec: task.decodeSteps / decodeSec,
  };
}

async function engineLogits(task) {
  const { loadModel } = await import(new URL('engine/model.js', dist).href);
  const model = await loadModel(task.dir, { threads: 1, compute: 'f32', tokenizer: false });
  const r = await model.forward([task.tokens], { logits: 'all' });
  const V = model.vocabSize;
  return { vocab: V, logits: task.tokens.map((_, i) => Array.from(r.logits.subarray(i * V, (i + 1) * V))) };
}

childMain((task) => (task.kind === 'logits' ? engineLogits(task) : engineRound(task)));
