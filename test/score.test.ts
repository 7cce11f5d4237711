// Scoring against float64 recomputations from the fixtures' reference logits and from the engine's own logits.
import { beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { logLikelihood, logLikelihoodTokens, scoreTokens, slidingWindows } from '../src/engine/score.js';
import { generate, generateTokens } from '../src/generate/generate.js';
import { fixturePath } from './helpers/fixtures.js';
import { loadReference, logSoftmaxAt, type FixtureReference } from './helpers/reference.js';

describe('slidingWindows', () => {
  it('scores every token with context once; without overlap the first token of each window is skipped', () => {
    expect(slidingWindows(10, 4, 4)).toEqual([
      { begin: 0, end: 4, firstScored: 1 }, { begin: 4, end: 8, firstScored: 5 }, { begin: 8, end: 10, firstScored: 9 }]);
    expect(slidingWindows(10, 4, 2)).toEqual([
      { begin: 0, end: 4, firstScored: 1 }, { begin: 2, end: 6, firstScored: 4 }, { begin: 4, end: 8, firstScored: 6 },
      { begin: 6, end: 10, firstScored: 8 }]);
    for (const [n, w, s] of [[100, 16, 5], [17, 17, 17], [2, 2, 1], [50, 7, 6]] as const) {
      const seen = new Array(n).fill(0);
      for (const win of slidingWindows(n, w, s)) {
        expect(win.end - win.begin).toBeLessThanOrEqual(w);
        for (let t = win.firstScored; t < win.end; t++) seen[t]++;
      }
      expect(seen.slice(1).every((c) => c === 1)).toBe(true);
    }
  });
});

describe('scoring on stories260k', () => {
  let model: LanguageModel;
  let ref: FixtureReference;
  beforeAll(async () => {
    model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    ref = await loadReference('stories260k');
  });

  it('200000 pairs of one one-token context (texts packed after BOS) are scored, each as when alone', async () => {
    // The grouping copied each context's list per pair (40000 pairs: 49 s) and spread it into push (over ~120k
    // arguments: a stack overflow).
    const n = 200_000;
    const pairs = Array.from({ length: n }, (_, i) => ({ context: [1], continuation: [2 + (i % 300), 3 + (i % 200)] }));
    const all = await logLikelihoodTokens(model, pairs);
    expect(all).toHaveLength(n);
    const some = [0, 1, 299, 123_457, n - 1];
    const alone = await logLikelihoodTokens(model, some.map((i) => pairs[i]!));
    some.forEach((i, k) => {
      expect(all[i]!.tokens).toBe(2);
      expect(all[i]!.logprob).toBeCloseTo(alone[k]!.logprob, 4);
    });
  });

  it('mean NLL equals the float64 NLL of the reference logits', async () => {
    const ids = ref.inputIds, V = model.vocabSize;
    let nll = 0;
    for (let t = 0; t + 1 < ids.length; t++) nll -= logSoftmaxAt(ref.logits.subarray(t * V, (t + 1) * V), ids[t + 1]!);
    const r = await scoreTokens(model, ids);
    expect(r.tokens).toBe(ids.length - 1);
    expect(Math.abs(r.totalNll - nll) / nll).toBeLessThan(1e-5);
    expect(r.perplexity).toBeCloseTo(Math.exp(nll / (ids.length - 1)), 4);
  });

  it('non-overlapping windows equal scoring each window alone (packed several per forward)', async () => {
    const ids = ref.inputIds;
    const r = await scoreTokens(model, ids, { window: 16, batchTokens: 40 });
    let sum = 0, n = 0;
    for (let b = 0; b < ids.length; b += 16) {
      const part = await scoreTokens(model, ids.slice(b, b + 16));
      sum += part.totalNll; n += part.tokens;
    }
    expect(r.tokens).toBe(n);
    expect(n).toBe(ids.length - Math.ceil(ids.length / 16));
    expect(Math.abs(r.totalNll - sum) / sum).toBeLessThan(1e-5);
  });

  it('overlapping windows score every token once, each with more context', async () => {
    const ids = ref.inputIds;
    const overlapped = await scoreTokens(model, ids, { window: 16, stride: 4 });
    expect(overlapped.tokens).toBe(ids.length - 1);
    // recompute by hand: token t is predicted from ids[begin..t] of the first window with begin + 16 > t
    let nll = 0;
    for (let t = 1; t < ids.length; t++) {
      const begin = t < 16 ? 0 : Math.ceil((t - 15) / 4) * 4;
      const [c] = await logLikelihoodTokens(model, [{ context: ids.slice(begin, t), continuation: [ids[t]!] }]);
      nll -= c!.logprob;
    }
    expect(Math.abs(overlapped.totalNll - nll) / nll).toBeLessThan(1e-5);
  });

  it('continuation log-likelihoods equal sums of per-token log-probs from the full logits, batched or not', async () => {
    const ids = ref.inputIds, V = model.vocabSize;
    const pairs = [
      { context: ids.slice(0, 10), continuation: ids.slice(10, 14) },
      { context: ids.slice(0, 3), continuation: ids.slice(3, 4) },
      { context: ids.slice(20, 40), continuation: ids.slice(40, 50) },
    ];
    const batched = await logLikelihoodTokens(model, pairs);
    const oneByOne = [];
    for (const p of pairs) oneByOne.push(...(await logLikelihoodTokens(model, [p])));
    for (let i = 0; i < pairs.length; i++) {
      const { context, continuation } = pairs[i]!;
      const whole = [...context, ...continuation];
      const all = await model.forward([whole], { logits: 'all' });
      let want = 0;
      for (let j = 0; j < continuation.length; j++) {
        const row = context.length - 1 + j;
        want += logSoftmaxAt(all.logits.subarray(row * V, (row + 1) * V), whole[row + 1]!);
      }
      expect(batched[i]!.tokens).toBe(continuation.length);
      expect(Math.abs(batched[i]!.logprob - want)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));
      expect(Math.abs(batched[i]!.logprob - oneByOne[i]!.logprob)).toBeLessThan(1e-4);
    }
  });
});

describe('shared contexts (multiple-choice items)', () => {
  it('score the same as each pair alone, with and without an intervention on prompt positions', async () => {
    const model = await loadModel(fixturePath('tiny-llama3'), { threads: 2 });
    const ref = await loadReference('tiny-llama3');
    const ctx = ref.inputIds.slice(0, 20);
    const pairs = [
      { context: ctx, continuation: ref.inputIds.slice(20, 23) },
      { context: ctx, continuation: ref.inputIds.slice(30, 31) },
      { context: ref.inputIds.slice(5, 9), continuation: ref.inputIds.slice(9, 12) },
      { context: ctx, continuation: ref.inputIds.slice(40, 47) },
    ];
    const { resolveIntervention } = await import('../src/intervene/index.js');
    const promptOnly = await resolveIntervention(model, 'scale:3:neurons=all:positions=prompt');
    for (const opts of [{}, { intervene: promptOnly }]) {
      const together = await logLikelihoodTokens(model, pairs, 4096, opts); // three share ctx: the cache path
      for (let i = 0; i < pairs.length; i++) {
        const [alone] = await logLikelihoodTokens(model, [pairs[i]!], 4096, opts); // a single pair: packed path
        expect(together[i]!.tokens).toBe(pairs[i]!.continuation.length);
        expect(Math.abs(together[i]!.logprob - alone!.logprob)).toBeLessThan(1e-4 * Math.max(1, Math.abs(alone!.logprob)));
      }
    }
    // the intervention really acted on the prompt positions
    const base = await logLikelihoodTokens(model, pairs.slice(0, 2));
    const under = await logLikelihoodTokens(model, pairs.slice(0, 2), 4096, { intervene: promptOnly });
    expect(Math.abs(base[0]!.logprob - under[0]!.logprob)).toBeGreaterThan(1e-3);
  });
});

describe('text-level scoring and generation (byte-fallback tokenizer of tiny-qwen2)', () => {
  let model: LanguageModel;
  beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); });

  it('moves trailing context spaces into the continuation, as lm-evaluation-harness does', async () => {
    const [a] = await logLikelihood(model, [{ context: 'The cat ', continuation: 'sat' }]);
    const [b] = await logLikelihood(model, [{ context: 'The cat', continuation: ' sat' }]);
    expect(a!.tokens).toBe(4); // ' sat' is 4 bytes = 4 tokens
    expect(a!.logprob).toBeCloseTo(b!.logprob, 5);
  });

  it('cuts generation at a stop string and reports why it stopped', async () => {
    const [free] = await generate(model, 'Hello', { maxNewTokens: 24 });
    expect(free!.finishReason).toBe('length');
    expect(free!.tokens.length).toBe(24);
    const text = free!.text;
    const stop = text.slice(5, 7);
    expect(stop.length).toBe(2);
    const [cut] = await generate(model, 'Hello', { maxNewTokens: 24, stop: [stop] });
    expect(cut!.finishReason).toBe('stop');
    expect(cut!.text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('refuses prompts longer than the context, and generates nothing for maxNewTokens 0', async () => {
    await expect(generateTokens(model, [new Array(model.contextLength + 1).fill(5)])).rejects.toThrow(/longer than the model's context/);
    const [g] = await generateTokens(model, [[1, 5]], { maxNewTokens: 0 });
    expect(g!.tokens).toEqual([]);
  });

  it('sampling is reproducible with a seed', async () => {
    const o = { maxNewTokens: 16, temperature: 1.0, topK: 50, topP: 0.9, seed: 11 };
    const [a] = await generate(model, 'abc', o);
    const [b] = await generate(model, 'abc', o);
    expect(a!.tokens).toEqual(b!.tokens);
  });
});
