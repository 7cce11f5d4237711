// The library API as a script uses it: every request the engine refuses arrives as a LangneuronsError (so that
// `instanceof` tells bad input from a bug), targets and logits modes are checked before the engine runs, a cache
// disposed while a forward using it waits in the queue is freed after that forward, and 'lastHidden' output gets
// the non-finite check the logits get.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  LangneuronsError, estimateMemory, finetune, generate, loadModel, logLikelihoodTokens, maskFromTang, modelIdentity, openCheckpoint, resolveIntervention, scoreText,
  statsFromTang, writeSafetensors, type LanguageModel, type ModelConfig,
} from '../src/index.js';
import { errorOf } from './helpers/consumer.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

let model: LanguageModel;
beforeAll(async () => { model = await loadModel('models/udhr20', { device: 'cpu', threads: 1 }); });
afterAll(async () => { await model.dispose(); });


describe('the engine\'s refusals are LangneuronsErrors', () => {
  it.each([
    ['a sequence past the context', () => model.forward([Array(200).fill(5)]), 'E_INPUT', /exceeds the model's context of 128/],
    ['a cache slot over its capacity', () => model.forward([[1, 2, 3]], { cache: model.createCache(1, 2) }), 'E_INPUT', /exceed its capacity of 2/],
    ['a cache of 0 slots', () => model.createCache(0, 8), 'E_OPTIONS', /nSlots must be an integer/],
    ['a target outside the vocabulary', () => model.forward([[1, 2]], { targets: [[2, 99999]] }), 'E_INPUT', /target 99999 at position 1 of sequence 0/],
    ['a target that is not an integer (was truncated to 2)', () => model.forward([[1, 2]], { logits: 'none', targets: [[2.9, -1]] }), 'E_INPUT', /target 2\.9/],
    ['an unknown logits mode', () => model.forward([[1, 2]], { logits: 'foo' as 'none' }), 'E_OPTIONS', /logits must be one of none, last, all, lastHidden, greedy, got 'foo'/],
    ['a negative temperature', () => generate(model, 'x', { temperature: -1 }), 'E_OPTIONS', /temperature must be/],
    // thrown by the engine at once rather than when the work ends (they came out as RangeError)
    ['an unknown capture site', () => model.forward([[0, 5]], { capture: { site: 'bogus' as 'act', layer: 0 } }), 'E_INPUT', /capture.*'bogus'/],
    ['a capture layer past the last (printed as 4, not 4.000000)', () => model.forward([[0, 5]], { capture: { site: 'act', layer: 4 } }), 'E_INPUT', /must be an integer in \[0, 3\], got 4$/],
    ['fewer cache slots than sequences', () => model.forward([[1], [2]], { cache: model.createCache(3, 16), cacheSlots: [1] }), 'E_INPUT', /cacheSlots needs one slot per sequence \(2\), got 1/],
    ['a cache slot past the last', () => model.forward([[1]], { cache: model.createCache(3, 16), cacheSlots: [3] }), 'E_INPUT', /cacheSlots\[0\] is 3; the cache has 3 slots/],
    ['more sequences than cache slots', () => model.forward([[1], [2], [3], [4]], { cache: model.createCache(3, 16) }), 'E_INPUT', /sequence 3 would use slot 3; the cache has 3 slots/],
    ['a cache length past a slot', () => model.createCache(2, 16).reset(0, 20), 'E_INPUT', /^KvCache\.reset: /],
    ['a cache slot out of range', () => model.createCache(2, 16).length(5), 'E_INPUT', /^KvCache\.length: slot must be an integer in \[0, 2\)/],
    ['a disposed cache', () => { const c = model.createCache(1, 8); c.dispose(); return c.length(0); }, 'E_INPUT', /^KvCache\.length: the cache was disposed/],
    ['generatedFrom of the wrong length, with an intervention without positions', async () =>
      model.forward([[1, 2, 3]], { intervene: await resolveIntervention(model, 'scale:2:neurons=all'), generatedFrom: [999, 3, 4] }), 'E_INPUT', /generatedFrom has 3 entries, the batch 1/],
    ['non-finite statistics thresholds', () => model.createStats({ thresholds: { act: new Float32Array(4 * 512).fill(Number.NaN) } }), 'E_OPTIONS', /thresholds\.act\[0\] is NaN/],
    ['a NaN token budget (every batch was empty)', () => scoreText(model, 'All human beings are born free', { batchTokens: Number.NaN }), 'E_OPTIONS', /batchTokens must be an integer >= 1, got NaN/],
    ['a negative token budget', () => logLikelihoodTokens(model, [{ context: [1, 2], continuation: [3] }], -5), 'E_OPTIONS', /batchTokens must be an integer >= 1, got -5/],
    ['a number as text', () => model.tokenizer!.encode(42 as unknown as string), 'E_INPUT', /encode: the text must be a string, got number/],
    ['a stop string not in a list', () => generate(model, 'x', { stop: ',' as unknown as string[] }), 'E_OPTIONS', /stop must be a list of strings/],
    ['a flat list of ids as the batch', () => model.forward([1, 2, 3] as unknown as number[][]), 'E_INPUT', /sequence 0 is not a list of token ids \(a batch is a list of sequences/],
    ['threads as a string', () => loadModel('models/udhr20', { threads: '2' as unknown as number }), 'E_OPTIONS', /got the string '2'/],
    ['a checkpoint given to estimateMemory', async () => estimateMemory((await openCheckpoint('models/udhr20')) as unknown as ModelConfig), 'E_OPTIONS', /estimateMemory takes a ModelConfig/],
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

describe('scoring a forward whose final norm overflowed', () => {
  it('is refused, not scored as uniform predictions (perplexity = vocabulary size, exit 0)', async () => {
    const overflow = await resolveIntervention(model, 'scale:1e30:neurons=all');
    for (const call of [
      () => scoreText(model, 'All human beings are born free', { intervene: overflow }),
      () => logLikelihoodTokens(model, [{ context: [0, 5, 6], continuation: [7, 8] }], 4096, { intervene: overflow }),
    ]) {
      const e = await errorOf(call);
      expect(e).toBeInstanceOf(LangneuronsError);
      expect((e as LangneuronsError).code).toBe('E_NONFINITE');
      expect((e as Error).message).toMatch(/the log-probability of target \d+ is NaN: .*every logit is exactly 0/);
    }
    const fine = await scoreText(model, 'All human beings are born free');
    expect(Number.isFinite(fine.meanNll)).toBe(true);
  });

  it('a non-finite forward leaves its KV cache as it was, as a refused one does', async () => {
    const overflow = await resolveIntervention(model, 'scale:1e30:neurons=all');
    const cache = model.createCache(2, 16);
    await model.forward([[1, 2]], { cache, cacheSlots: [1] });
    const e = await errorOf(() => model.forward([[3, 4], [5]], { cache, intervene: overflow }));
    expect((e as LangneuronsError).code).toBe('E_NONFINITE');
    expect([cache.length(0), cache.length(1)]).toEqual([0, 2]);
    cache.dispose();
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

describe('after dispose', () => {
  it('null options are no options (untyped callers)', async () => {
    const m = await loadModel('models/udhr20', null);
    expect((await m.forward([[1, 2]], null)).logits.length).toBe(m.vocabSize);
    await m.dispose();
  });

  it('info and createStats are refused as forward and createCache are; a model loaded without its tokenizer says so', async () => {
    const m = await loadModel('models/udhr20', { device: 'cpu', threads: 1, tokenizer: false });
    const e0 = await errorOf(() => generate(m, 'x'));
    expect((e0 as Error).message).toMatch(/was loaded with \{ tokenizer: false \}/);
    await m.dispose();
    for (const call of [() => m.info(), () => m.createStats(), () => m.createCache(1, 8)]) {
      const e = await errorOf(call);
      expect(e).toBeInstanceOf(LangneuronsError);
      expect((e as Error).message).toMatch(/was disposed/);
    }
  });
});

describe('library inputs refused before anything is written', () => {
  it("finetune's default chunk follows a short context; a --chunk beyond it is refused naming it (it failed at the first step as a plain Error)", async () => {
    const tmp = await makeTempDir('api-finetune-chunk');
    try {
      const train = path.join(tmp, 'train.txt');
      await fsp.writeFile(train, 'All human beings are born free and equal in dignity and rights. '.repeat(40) + '\n');
      const r = await finetune('models/udhr20', { method: 'mlp', train, steps: 1, device: 'cpu', threads: 1 }, path.join(tmp, 'run'));
      expect(r.steps).toBe(1);
      expect(JSON.parse(await fsp.readFile(path.join(tmp, 'run', 'run.json'), 'utf8')).options.chunk).toBe(128);
      const e = await errorOf(() => finetune('models/udhr20', { method: 'mlp', train, steps: 1, chunk: 512, device: 'cpu', threads: 1 }, path.join(tmp, 'run2')));
      expect(e).toBeInstanceOf(LangneuronsError);
      expect((e as Error).message).toMatch(/--chunk 512 is longer than the context of models\/udhr20 \(128 tokens\)/);
      expect(existsSync(path.join(tmp, 'run2'))).toBe(false);
    } finally { await removeDir(tmp); }
  }, 60_000);

  it('Tang imports check their language ids and window length; safetensors metadata must be strings', async () => {
    const id = modelIdentity(await openCheckpoint('models/udhr20'));
    expect(() => maskFromTang([], ['../etc'], id, 'm.pt')).toThrow(/language id "\.\.\/etc" is not a plain name/);
    for (const maxLen of [Number.NaN, -3])
      expect(() => statsFromTang(new Map(), { language: 'en', model: id, maxLen, sha256: 'a'.repeat(64) }, 's.pt')).toThrow(/maxLen \(--max-len\) must be an integer >= 1/);
    const tmp = await makeTempDir('api-safetensors');
    try {
      const f = path.join(tmp, 'x.safetensors');
      const e = await errorOf(() => writeSafetensors(f, { t: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, { n: 5 } as unknown as Record<string, string>));
      expect((e as Error).message).toMatch(/metadata value for "n" must be a string, got number/);
      expect(existsSync(f)).toBe(false);
    } finally { await removeDir(tmp); }
  });
});
