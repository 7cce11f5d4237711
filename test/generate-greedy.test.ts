// Greedy decoding picks its tokens in the runtime (logits 'greedy'): the picks must equal what
// src/generate/sampling.ts picks from the full logits (Hugging Face's repetition penalty, then torch.argmax's first
// index), step by step; the forward options are checked; non-finite rows still fail loudly.
import { describe, expect, it } from 'vitest';

import { loadModel } from '../src/engine/model.js';
import { generateTokens } from '../src/generate/generate.js';
import { applyRepetitionPenalty, argmax } from '../src/generate/sampling.js';
import { resolveIntervention } from '../src/intervene/index.js';
import { fixturePath } from './helpers/fixtures.js';

describe("logits 'greedy'", () => {
  it('equals the argmax of the last logits after the JavaScript repetition penalty, for a packed batch', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    const batch = [[1, 5, 9, 200], [1], [1, 461, 461, 30, 31, 32], [1, 2]];
    const last = await model.forward(batch, { logits: 'last' });
    const plain = await model.forward(batch, { logits: 'greedy' });
    expect(plain.logits.length).toBe(0);
    const V = last.vocab;
    const row = (i: number) => last.logits.slice(i * V, (i + 1) * V);
    expect(Array.from(plain.next!.tokens)).toEqual(batch.map((_, i) => argmax(row(i))));
    // Each sequence's penalty list holds its unpenalised pick (and repeats), so a penalty of 4 must move picks.
    const penaltyTokens = batch.map((s, i) => [...s, plain.next!.tokens[i]!, plain.next!.tokens[i]!]);
    const pen = await model.forward(batch, { logits: 'greedy', repetitionPenalty: 4, penaltyTokens });
    const want = batch.map((_, i) => {
      const r = row(i);
      applyRepetitionPenalty(r, penaltyTokens[i]!, 4);
      return { id: argmax(r), logit: r[argmax(r)] };
    });
    expect(Array.from(pen.next!.tokens)).toEqual(want.map((w) => w.id));
    expect(Array.from(pen.next!.logits)).toEqual(want.map((w) => w.logit));
    expect(want.filter((w, i) => w.id !== plain.next!.tokens[i]).length).toBeGreaterThanOrEqual(3);
  });

  it('generateTokens with a repetition penalty decodes as the step-by-step logits path', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    const prompts = [[1], [1, 461, 461], [1, 30, 40, 50, 60]];
    const steps = 24;
    const got = await generateTokens(model, prompts, { maxNewTokens: steps, stopAtEos: false, repetitionPenalty: 1.3 });
    for (const [i, prompt] of prompts.entries()) {
      const seq = [...prompt];
      for (let s = 0; s < steps; s++) {
        const r = (await model.forward([seq], { logits: 'last' })).logits;
        applyRepetitionPenalty(r, seq, 1.3);
        seq.push(argmax(r));
      }
      expect(got[i]!.tokens).toEqual(seq.slice(prompt.length));
    }
    // The penalty matters on this model (it repeats itself without one).
    const free = await generateTokens(model, prompts, { maxNewTokens: steps, stopAtEos: false });
    expect(free.map((g) => g.tokens)).not.toEqual(got.map((g) => g.tokens));
  });

  it('continuous batching (concurrency) and prefill groups (prefillTokens) generate what all at once generates', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    const tok = model.requireTokenizer();
    const prompts = [[1, 30, 40, 50, 60, 70, 80], [1], [1, 461, 461], [1, 9, 8, 7, 6], [1, 200, 201], [1, 5], [1, 77, 78, 79]];
    const iv = await resolveIntervention(model, 'scale:1.5:neurons=all:layers=1-2:positions=prompt');
    const ivGen = await resolveIntervention(model, 'scale:0.5:neurons=all:positions=generated');
    // A stop string that some outputs reach and others do not, so that sequences end at different steps.
    const free = await generateTokens(model, prompts, { maxNewTokens: 16, stopAtEos: false });
    const stop = tok.decode(free[3]!.tokens.slice(4, 6), { skipSpecialTokens: true });
    // Greedy runs only: a forward row's floats depend on the batch's shape in their last bits (the CPU's GEMV path
    // for up to 8 rows sums in another order than its GEMM), which can move a sampled draw but not these argmaxes.
    const runs: Parameters<typeof generateTokens>[2][] = [
      { maxNewTokens: 12, stopAtEos: false, repetitionPenalty: 1.3 },
      { maxNewTokens: 12, stopAtEos: false, intervene: iv },
      { maxNewTokens: 12, intervene: ivGen },
      { maxNewTokens: 16, stop: [stop] },
    ];
    let ended = 0;
    for (const o of runs) {
      const whole = await generateTokens(model, prompts, o);
      const reasons = new Set(whole.map((g) => g.finishReason));
      ended += reasons.size > 1 ? 1 : 0;
      // concurrency 1: one sequence at a time; 2 and 3: slots handed on as sequences end. prefillTokens 1: every
      // prompt alone; 8: groups of 2 or 3; 7: the longest prompt exactly fills a group.
      for (const extra of [{ concurrency: 1 }, { concurrency: 2 }, { concurrency: 3, prefillTokens: 8 }, { prefillTokens: 1 }, { prefillTokens: 7 }]) {
        const order: number[] = [];
        const got = await generateTokens(model, prompts, { ...o, ...extra, onGeneration: (i, g) => { order.push(i); expect(g).toEqual(whole[i]); } });
        expect(got, JSON.stringify(extra)).toEqual(whole);
        expect([...order].sort((a, b) => a - b)).toEqual(prompts.map((_, i) => i));
      }
    }
    expect(ended).toBeGreaterThanOrEqual(1); // some run ends its sequences for different reasons
    // Sampling: the same run twice draws the same, also continuously batched.
    const sampled = { maxNewTokens: 12, stopAtEos: false, temperature: 0.9, topK: 40, seed: 4, concurrency: 3 };
    expect(await generateTokens(model, prompts, sampled)).toEqual(await generateTokens(model, prompts, sampled));
    await expect(generateTokens(model, prompts, { prefillTokens: 0 })).rejects.toThrow(/prefillTokens must be an integer >= 1, got 0/);
    await expect(generateTokens(model, prompts, { concurrency: 0 })).rejects.toThrow(/concurrency must be an integer >= 1, got 0/);
  });

  it('frees its KV cache when it ends (not at garbage collection); a disposed cache is refused', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1 });
    await generateTokens(model, [[1, 5], [1, 9, 9]], { maxNewTokens: 6, concurrency: 1 });
    expect(model.info().memory.kvCache).toBe(0);
    await expect(generateTokens(model, [[1, 5]], { maxNewTokens: 4, intervene: await resolveIntervention(model, 'scale:1e30:neurons=all') })).rejects.toThrow(/non-finite/);
    expect(model.info().memory.kvCache).toBe(0); // also when generation fails
    const cache = model.createCache(2, 16);
    expect(model.info().memory.kvCache).toBe(cache.bytes);
    cache.dispose();
    cache.dispose(); // idempotent
    expect(model.info().memory.kvCache).toBe(0);
    expect(() => cache.length(0)).toThrow(/KvCache.length: the cache was disposed/);
    await expect(model.forward([[1, 2]], { logits: 'last', cache, cacheSlots: [0] })).rejects.toThrow(/disposed/);
  });

  it('refuses a penalty without greedy, a bad factor, mismatched lists and ids outside the vocabulary', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1 });
    await expect(model.forward([[1, 2]], { logits: 'last', repetitionPenalty: 1.2, penaltyTokens: [[1]] })).rejects.toThrow(/need logits 'greedy', got 'last'/);
    await expect(model.forward([[1, 2]], { logits: 'greedy', repetitionPenalty: 0 })).rejects.toThrow(/repetitionPenalty must be a finite number > 0, got 0/);
    await expect(model.forward([[1, 2]], { logits: 'greedy', repetitionPenalty: 1.2, penaltyTokens: [[1], [2]] })).rejects.toThrow(/penaltyTokens has 2 sequences, the batch 1/);
    await expect(model.forward([[1, 2]], { logits: 'greedy', repetitionPenalty: 1.2, penaltyTokens: [[512]] })).rejects.toThrow(/penalty token 512 of sequence 0 is outside the vocabulary \[0, 512\)/);
  });

  it('a non-finite row fails the forward, as with returned logits', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 1 });
    const iv = await resolveIntervention(model, 'scale:1e30:neurons=all');
    const message = async (logits: 'last' | 'greedy') => (await model.forward([[1, 2, 3]], { logits, intervene: iv }).then(() => null, (e: Error) => e.message));
    const fromLogits = await message('last');
    expect(fromLogits).toMatch(/non-finite result .*likely cause: the intervention's values are too large/);
    expect(await message('greedy')).toBe(fromLogits);
  });
});
