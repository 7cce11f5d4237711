// Option objects from plain JavaScript callers: a key the function does not take (a typo) is refused with the key
// and the keys it takes, rather than ignored with the call run on the default in its place (`{ devcie: 'cpu' }` ran
// on 'auto', a GPU where there is one; `{ logit: 'all' }` returned the default 'last' rows).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LangneuronsError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { logLikelihood, logLikelihoodTokens, scoreText, scoreTokens } from '../src/engine/score.js';
import { generate, generateTokens } from '../src/generate/generate.js';
import { profileCorpus } from '../src/profile/profile.js';
import type { Corpus } from '../src/corpus/sources.js';
import { fixturePath } from './helpers/fixtures.js';

async function errorOf(call: () => unknown): Promise<LangneuronsError> {
  try {
    await call();
  } catch (e) {
    expect(e).toBeInstanceOf(LangneuronsError);
    return e as LangneuronsError;
  }
  throw new Error('expected a refusal');
}
const untyped = <T>(o: unknown): T => o as T;
const DIR = fixturePath('stories260k');

describe('loadModel', () => {
  it.each([
    [{ devcie: 'cpu' }, 'devcie'],
    [{ threads: 1, computeMode: 'f32' }, 'computeMode'],
    [{ threads: 1, device: 'cpu', tokeniser: false }, 'tokeniser'],
  ])('%j is refused naming the key and the options', async (options, key) => {
    const e = await errorOf(() => loadModel(DIR, untyped(options)));
    expect(e.code).toBe('E_OPTIONS');
    expect(e.field).toBe(key);
    expect(e.message).toBe(`loadModel: unknown option '${key}' (options: threads, compute, device, tokenizer)`);
  });

  it('the known options still load', async () => {
    const m = await loadModel(DIR, { threads: 1, compute: 'f32', device: 'cpu', tokenizer: false });
    expect([m.device, m.compute, m.threads, m.tokenizer]).toEqual(['cpu', 'f32', 1, null]);
    await m.dispose();
  });
});

describe('the model\'s calls', () => {
  let model: LanguageModel;
  beforeAll(async () => { model = await loadModel(DIR, { threads: 1, device: 'cpu' }); });
  afterAll(async () => { await model.dispose(); });

  it('forward: a typo is refused, and the model runs the next forward as asked', async () => {
    const e = await errorOf(() => model.forward([[1, 2, 3]], untyped({ logit: 'all' })));
    expect(e.code).toBe('E_OPTIONS');
    expect(e.field).toBe('logit');
    expect(e.message).toMatch(/^forward: unknown option 'logit' \(options: logits, repetitionPenalty, penaltyTokens, targets, cache, cacheSlots, stats, countMask, lastLayer, capture, intervene, generatedFrom\)$/);
    const out = await model.forward([[1, 2, 3]], { logits: 'all' });
    expect(out.rows).toBe(3);
  });

  it.each([
    ['generate', () => generate(model, 'Once', untyped({ maxNewToken: 2 })), 'maxNewToken'],
    ['generateTokens', () => generateTokens(model, [[1]], untyped({ temprature: 0.7 })), 'temprature'],
    ['scoreText', () => scoreText(model, 'Once upon a time', untyped({ windw: 8 })), 'windw'],
    ['scoreTokens', () => scoreTokens(model, [1, 2, 3], untyped({ stride: 1, intervention: null })), 'intervention'],
    ['logLikelihood', () => logLikelihood(model, [{ context: 'Once', continuation: ' upon' }], untyped({ intervention: null })), 'intervention'],
    ['logLikelihoodTokens', () => logLikelihoodTokens(model, [{ context: [1], continuation: [2] }], 4096, untyped({ batchTokens: 8 })), 'batchTokens'],
    ['profileCorpus', () => profileCorpus(model, untyped<Corpus>({}), untyped({ languages: ['en'], outDir: '/nonexistent/never', scope: {}, site: ['act'] })), 'site'],
  ])('%s: a typo is refused with the function and the key named', async (fn, call, key) => {
    const e = await errorOf(call);
    expect(e.code).toBe('E_OPTIONS');
    expect(e.field).toBe(key);
    expect(e.message).toMatch(new RegExp(`^${fn}: unknown option '${key}' \\(options: [a-zA-Z, ]+\\)$`));
  });

  it('generate: options that are not an object are refused (they were a TypeError or ran with every default)', async () => {
    const e = await errorOf(() => generate(model, 'Once', untyped('greedy')));
    expect(e.code).toBe('E_OPTIONS');
    expect(e.message).toMatch(/^generate: options must be an object \(\{ temperature, .* \}\), got "greedy"$/);
  });

  it('the known options still run: a greedy generation and a score', async () => {
    const [g] = await generateTokens(model, [[1]], { maxNewTokens: 3, stopAtEos: false, temperature: 0, concurrency: 1, prefillTokens: 64, firstIndex: 0 });
    expect(g!.tokens).toHaveLength(3);
    const s = await scoreTokens(model, [1, 2, 3, 4], { window: 4, stride: 4, batchTokens: 64 });
    expect(s.tokens).toBe(3);
  });
});
