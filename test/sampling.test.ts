// Hugging Face sampling semantics on hand-worked examples.
import { describe, expect, it } from 'vitest';

import { applyRepetitionPenalty, argmax, filteredDistribution, Rng, sampleNext, validateSampling } from '../src/generate/sampling.js';

const logits = (xs: number[]) => Float32Array.from(xs);

describe('sampling', () => {
  it('repetition penalty divides positive and multiplies negative logits, once per distinct token', () => {
    const l = logits([2, -2, 1, 5]);
    applyRepetitionPenalty(l, [0, 1, 0, 0], 2);
    expect(Array.from(l)).toEqual([1, -4, 1, 5]);
  });

  it('argmax takes the first of tied maxima (torch.argmax)', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });

  it('top-k keeps the k largest and every token tied with the k-th', () => {
    const d = filteredDistribution(logits([1, 3, 3, 2, 3]), { topK: 2 });
    expect(Array.from(d.ids).sort()).toEqual([1, 2, 4]);
    const d2 = filteredDistribution(logits([1, 2, 3, 0]), { topK: 2 });
    expect(Array.from(d2.ids)).toEqual([2, 1]);
    // softmax over {3, 2}: e / (e + 1)
    expect(d2.probs[0]).toBeCloseTo(Math.E / (Math.E + 1), 12);
  });

  it('top-p drops the tail whose ascending cumulative mass is <= 1 - p', () => {
    const l = logits([0.5, 0.3, 0.15, 0.05].map(Math.log));
    // ascending cumulative: 0.05, 0.20, 0.50, 1.0. p = 0.8 → drop ≤ 0.2: tokens 3 and 2.
    const d = filteredDistribution(l, { topP: 0.8 });
    expect(Array.from(d.ids)).toEqual([0, 1]);
    expect(d.probs[0]).toBeCloseTo(0.5 / 0.8, 6);
    // p = 0.81 → drop ≤ 0.19: only token 3.
    expect(Array.from(filteredDistribution(l, { topP: 0.81 }).ids)).toEqual([0, 1, 2]);
    // the most likely token always survives
    expect(Array.from(filteredDistribution(l, { topP: 0.01 }).ids)).toEqual([0]);
  });

  it('temperature rescales logits before the softmax', () => {
    const d = filteredDistribution(logits([0, Math.log(3)]), { temperature: 0.5 });
    // exp(2·ln 3) = 9: probabilities 9/10 and 1/10
    expect(d.probs[0]).toBeCloseTo(0.9, 6);
    expect(d.probs[1]).toBeCloseTo(0.1, 6);
  });

  it('greedy when temperature is 0; seeded sampling repeats and follows the distribution', () => {
    expect(sampleNext(logits([0, 5, 1]), [], {}, new Rng(1))).toBe(1);
    const l = [0, Math.log(3)];
    const draw = (seed: number, n: number) => { const r = new Rng(seed); return Array.from({ length: n }, () => sampleNext(logits(l), [], { temperature: 1 }, r)); };
    expect(draw(7, 50)).toEqual(draw(7, 50));
    expect(draw(7, 50)).not.toEqual(draw(8, 50));
    const many = draw(3, 20000);
    const share = many.filter((x) => x === 1).length / many.length;
    expect(Math.abs(share - 0.75)).toBeLessThan(0.02); // 0.75 ± ~6.5 standard deviations
  });

  it('Rng gives uniform doubles in [0, 1)', () => {
    const r = new Rng(42);
    let sum = 0, min = 1, max = 0;
    for (let i = 0; i < 100000; i++) { const x = r.next(); sum += x; min = Math.min(min, x); max = Math.max(max, x); }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(Math.abs(sum / 100000 - 0.5)).toBeLessThan(0.005);
  });

  it('rejects bad options with the option named', () => {
    expect(() => validateSampling({ topP: 0 })).toThrow(/topP/);
    expect(() => validateSampling({ temperature: -1 })).toThrow(/temperature/);
    expect(() => validateSampling({ topK: 1.5 })).toThrow(/topK/);
    expect(() => validateSampling({ repetitionPenalty: 0 })).toThrow(/repetitionPenalty/);
  });
});
