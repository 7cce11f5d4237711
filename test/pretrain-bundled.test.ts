// The bundled model models/udhr20/ (made by scripts/train-bundled-model.sh): it loads, stays small, and predicts
// every language's held-out UDHR articles (25-30, never trained on) far better than a uniform guess.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { buildPretrainCorpus } from '../src/pretrain/corpus.js';
import { languageLosses, type LanguageLoss } from '../src/pretrain/evaluate.js';
import { repoRoot } from './helpers/fixtures.js';

const DIR = path.join(repoRoot, 'models', 'udhr20');

interface Recipe {
  seed: number;
  languages: { id: string }[];
  split: { heldoutArticles: number[]; lowResource: { lang: string; articles: number } | null };
  model: { vocab: number; context: number };
  loss: { lnVocab: number; heldout: Record<string, LanguageLoss> };
}

describe('bundled model models/udhr20', () => {
  let recipe: Recipe;
  let model: LanguageModel;
  let heldout: LanguageLoss[];
  beforeAll(async () => {
    recipe = JSON.parse(await fsp.readFile(path.join(DIR, 'recipe.json'), 'utf8')) as Recipe;
    model = await loadModel(DIR, { threads: 2 });
    const corpus = buildPretrainCorpus({
      langs: recipe.languages.map((l) => l.id), lowResource: recipe.split.lowResource, heldoutArticles: recipe.split.heldoutArticles, seed: recipe.seed,
    });
    heldout = await languageLosses(model, corpus.heldout, recipe.model.context);
  });

  it('is a small Llama checkpoint with its tokenizer (<= 6 MB)', async () => {
    let bytes = 0;
    for (const f of await fsp.readdir(DIR)) bytes += (await fsp.stat(path.join(DIR, f))).size;
    expect(bytes).toBeLessThanOrEqual(6_000_000);
    expect(model.config.modelType).toBe('llama');
    expect(model.vocabSize).toBe(recipe.model.vocab);
    expect(model.requireTokenizer().vocabSize).toBe(recipe.model.vocab);
    expect(recipe.languages.length).toBeGreaterThanOrEqual(20);
  });

  it('held-out NLL per language is far below ln(vocab), and matches recipe.json', () => {
    const ln = Math.log(recipe.model.vocab);
    const mean = heldout.reduce((s, l) => s + l.meanNll, 0) / heldout.length;
    const bitsPerByte = heldout.reduce((s, l) => s + l.meanNll * l.tokens, 0) / heldout.reduce((s, l) => s + l.bytes, 0) / Math.LN2;
    console.log(`ln(vocab) = ${ln.toFixed(3)}; held-out mean NLL ${mean.toFixed(3)} = ${(mean / ln).toFixed(3)} ln V ` +
      `(bar 0.5 ln V = ${(ln / 2).toFixed(3)}, margin ${(ln / 2 - mean).toFixed(3)} nats); ${bitsPerByte.toFixed(3)} bits/byte pooled; per language: ` +
      heldout.map((l) => `${l.lang} ${l.meanNll.toFixed(2)} (${(l.meanNll / ln).toFixed(2)} ln V)`).join(', '));
    // The bar: mean NLL below half of a uniform guess (perplexity below sqrt(V)); every language, the low-resource one
    // included, below 0.7 of it. Bits per byte too, since NLL / ln V alone rewards a smaller vocabulary.
    expect(mean).toBeLessThan(0.5 * ln);
    for (const l of heldout) expect(l.meanNll, l.lang).toBeLessThan(0.7 * ln);
    expect(bitsPerByte).toBeLessThan(2.5);
    for (const l of heldout) expect(l.meanNll, l.lang).toBeCloseTo(recipe.loss.heldout[l.lang]!.meanNll, 2);
  });

  it('the low-resource language is the worst-predicted Latin-script language (bits per byte: tokenizations differ)', () => {
    const low = recipe.split.lowResource!.lang;
    const latin = ['en', 'de', 'fr', 'es', 'pt', 'it', 'nl', 'pl', 'tr', 'sw', 'fi', 'vi'].filter((id) => heldout.some((l) => l.lang === id));
    const lowBits = heldout.find((l) => l.lang === low)!.bitsPerByte;
    for (const id of latin) expect(lowBits, id).toBeGreaterThan(heldout.find((l) => l.lang === id)!.bitsPerByte);
  });
});
