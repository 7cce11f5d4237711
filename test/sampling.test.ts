// Hugging Face sampling semantics on hand-worked examples.
import { describe, expect, it } from 'vitest';

import { applyRepetitionPenalty, argmax, filteredDistribution, orderByLogit, Rng, sampleNext, validateSampling } from '../src/generate/sampling.js';

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

  it('orderByLogit gives the comparator sort\'s order: descending logits, ties by ascending id, -0 tied with +0', () => {
    const comparatorOrder = (l: Float32Array) => Int32Array.from(l.keys()).sort((a, b) => (l[b]! - l[a]!) || (a - b));
    const r = new Rng(5);
    const specials = [0, -0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, -1, 0.5, -0.5];
    for (const n of [1, 2, 7, 2049, 50000]) {
      // values on a coarse grid (many ties), of both signs and a wide range of exponents, and the specials
      const l = Float32Array.from({ length: n }, (_, i) => (i % 97 === 0 ? specials[i % specials.length]!
        : Math.round((r.next() - 0.5) * 64) / 4 * 2 ** Math.floor(r.next() * 40 - 20)));
      expect(orderByLogit(l)).toEqual(comparatorOrder(l));
    }
    // a row of a larger array (a view at a byte offset), as generation passes them
    const big = Float32Array.from({ length: 3000 }, (_, i) => Math.round(Math.sin(i) * 8) / 8);
    const row = big.subarray(1000, 2000);
    expect(orderByLogit(row)).toEqual(comparatorOrder(row));
    expect(Array.from(orderByLogit(logits([0, -0, 2, -0, 0])))).toEqual([2, 0, 1, 3, 4]);
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
