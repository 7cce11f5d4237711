// The library API as a script uses it: every request the engine refuses arrives as a LangneuronsError (so that
// `instanceof` tells bad input from a bug), targets and logits modes are checked before the engine runs, a cache
// disposed while a forward using it waits in the queue is freed after that forward, and 'lastHidden' output gets
// the non-finite check the logits get.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LangneuronsError, generate, loadModel, resolveIntervention, type LanguageModel } from '../src/index.js';

let model: LanguageModel;
beforeAll(async () => { model = await loadModel('models/udhr20', { device: 'cpu', threads: 1 }); });
afterAll(async () => { await model.dispose(); });

/** The error a call throws or rejects with. */
async function errorOf(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('no error');
}

describe('the engine\'s refusals are LangneuronsErrors', () => {
  it.each([
    ['a sequence past the context', () => model.forward([Array(200).fill(5)]), 'E_INPUT', /exceeds the model's context of 128/],
    ['a cache slot over its capacity', () => model.forward([[1, 2, 3]], { cache: model.createCache(1, 2) }), 'E_INPUT', /exceed its capacity of 2/],
    ['a cache of 0 slots', () => model.createCache(0, 8), 'E_OPTIONS', /nSlots must be an integer/],
    ['a target outside the vocabulary', () => model.forward([[1, 2]], { targets: [[2, 99999]] }), 'E_INPUT', /target 99999 at position 1 of sequence 0/],
    ['a target that is not an integer (was truncated to 2)', () => model.forward([[1, 2]], { logits: 'none', targets: [[2.9, -1]] }), 'E_INPUT', /target 2\.9/],
    ['an unknown logits mode', () => model.forward([[1, 2]], { logits: 'foo' as 'none' }), 'E_OPTIONS', /logits must be one of none, last, all, lastHidden, greedy, got 'foo'/],
    ['a negative temperature', () => generate(model, 'x', { temperature: -1 }), 'E_OPTIONS', /temperature must be/],
  ])('%s', async (_, call, code, message) => {
    const e = await errorOf(call);
    expect(e).toBeInstanceOf(LangneuronsError);
    expect((e as LangneuronsError).code).toBe(code);
    expect((e as Error).message).toMatch(message);
  });
});

describe('a cache disposed while a forward using it is queued', () => {
  it('the forward runs and equals one without the dispose; later forwards with the cache are refused', async () => {
    const reference = await model.forward([[1, 2, 3]], { cache: model.createCache(1, 16) });
    const cache = model.createCache(1, 16);
    const pending = model.forward([[1, 2, 3]], { cache });
    cache.dispose();
    expect(cache.isDisposed).toBe(true);
    expect(Array.from((await pending).logits)).toEqual(Array.from(reference.logits));
    const e = await errorOf(() => model.forward([[4]], { cache }));
    expect(e).toBeInstanceOf(LangneuronsError);
    expect((e as Error).message).toMatch(/the cache was disposed/);
  });
});

describe("logits 'lastHidden'", () => {
  it('is checked for non-finite values as the logits are (it fed classification heads NaN without a word)', async () => {
    const overflow = await resolveIntervention(model, 'set:3e38:neurons=all');
    const e = await errorOf(() => model.forward([[1, 2, 3]], { intervene: overflow, logits: 'lastHidden' }));
    expect(e).toBeInstanceOf(LangneuronsError);
    expect((e as LangneuronsError).code).toBe('E_NONFINITE');
    expect((e as Error).message).toMatch(/hidden value \d+ of sequence 0 is NaN|every hidden value of sequence 0 is exactly 0/);
    const ok = await model.forward([[1, 2, 3]], { logits: 'lastHidden' });
    expect(ok.logits.length).toBe(model.config.hiddenSize);
  });
});
