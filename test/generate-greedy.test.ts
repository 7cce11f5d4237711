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

  it('prompts prefilled in groups of at most prefillTokens tokens generate what one packed prefill generates', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    const prompts = [[1, 30, 40, 50, 60, 70, 80], [1], [1, 461, 461], [1, 9, 8, 7, 6], [1, 200, 201]];
    const iv = await resolveIntervention(model, 'scale:1.5:neurons=all:layers=1-2:positions=prompt');
    const runs = [
      { maxNewTokens: 12, stopAtEos: false, repetitionPenalty: 1.3 },
      { maxNewTokens: 12, stopAtEos: false, temperature: 0.9, topK: 40, seed: 4 },
      { maxNewTokens: 12, stopAtEos: false, intervene: iv },
    ];
    for (const o of runs) {
      const whole = await generateTokens(model, prompts, o);
      // 1: every prompt alone; 8: groups of 2 or 3 prompts; 7: the longest prompt exactly fills a group.
      for (const prefillTokens of [1, 8, 7]) expect((await generateTokens(model, prompts, { ...o, prefillTokens })).map((g) => g.tokens)).toEqual(whole.map((g) => g.tokens));
    }
    await expect(generateTokens(model, prompts, { prefillTokens: 0 })).rejects.toThrow(/prefillTokens must be an integer >= 1, got 0/);
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
