// What the demo needs to know about the model's training data: its languages (UDHR ids), the held-out articles,
// and the low-resource language with the train articles the model saw. The bundled model says so in its
// `recipe.json` (written by src/pretrain); any other model (e.g. a fixture) gets the languages and the
// low-resource language from the options, with every train article of it counted as unseen.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { DEFAULT_HELDOUT_ARTICLES, resolveUdhrLanguage, udhrArticles } from '../corpus/udhr.js';
import { LangneuronsError, describeError } from '../errors.js';

export interface DemoRecipe {
  /** Where it came from: the recipe file, or "options". */
  source: string;
  /** UDHR language ids, in the recipe's order. */
  languages: string[];
  heldoutArticles: number[];
  /** The low-resource language: train articles the model saw, and the train articles it never saw. */
  lowResource: { language: string; seenArticles: number[]; unseenArticles: number[] } | null;
}

/** Languages of a model without recipe: ten languages in six scripts (Latin, Cyrillic, Greek, Arabic, Devanagari, Han). */
export const FALLBACK_LANGUAGES: readonly string[] = ['en', 'de', 'fr', 'es', 'mt', 'ru', 'el', 'ar', 'hi', 'zh'];
export const FALLBACK_LOW_RESOURCE = 'mt';

type Json = Record<string, unknown>;
const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);
const numbers = (x: unknown): number[] | null => (Array.isArray(x) && x.every((n) => Number.isInteger(n)) ? (x as number[]) : null);

function recipeError(file: string, message: string): LangneuronsError {
  return new LangneuronsError('E_RECIPE', `${file}: ${message}`, { file });
}

/** Train-split article numbers of a language (every article but the held-out ones), ascending. */
export function trainArticleNumbers(language: string, heldout: readonly number[]): number[] {
  const held = new Set(heldout);
  return udhrArticles(language).map((a) => a.number).filter((n) => !held.has(n));
}

/** Reads `<modelDir>/recipe.json`, or null when there is none. */
export function readRecipe(modelDir: string): DemoRecipe | null {
  const file = path.join(modelDir, 'recipe.json');
  if (!existsSync(file)) return null;
  let doc: Json;
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (!isObject(parsed)) throw new Error('not a JSON object');
    doc = parsed;
  } catch (e) {
    throw recipeError(file, `cannot read the model's recipe: ${describeError(e)}`);
  }
  // The layout src/pretrain writes: languages = [{ id, trainArticles, unseenArticles, ... }] (plain ids are read too),
  // split = { heldoutArticles, lowResource: { lang, articles } | null }.
  const split = isObject(doc['split']) ? doc['split'] : {};
  const rawLangs = doc['languages'];
  if (!Array.isArray(rawLangs) || rawLangs.length === 0) throw recipeError(file, 'no "languages" list');
  const entries: Json[] = rawLangs.map((l, i) => {
    const e = typeof l === 'string' ? { id: l } : l;
    if (!isObject(e) || typeof e['id'] !== 'string') throw recipeError(file, `languages[${i}] names no language id`);
    return e;
  });
  const languages = entries.map((e) => e['id'] as string);
  for (const id of languages) checkLanguage(id, file);
  const heldoutArticles = numbers(split['heldoutArticles']) ?? [...DEFAULT_HELDOUT_ARTICLES];

  const low = split['lowResource'];
  if (low === undefined || low === null) return { source: file, languages, heldoutArticles, lowResource: null };
  if (!isObject(low) || typeof low['lang'] !== 'string') throw recipeError(file, 'split.lowResource names no language ("lang")');
  const lang = low['lang'], entry = entries[languages.indexOf(lang)];
  if (!entry) throw recipeError(file, `the low-resource language "${lang}" is not one of the recipe's languages`);
  const train = trainArticleNumbers(lang, heldoutArticles);
  const seen = numbers(entry['trainArticles']) ?? (Number.isInteger(low['articles']) ? train.slice(0, low['articles'] as number) : null);
  if (seen === null) throw recipeError(file, `which train articles of "${lang}" the model saw is not recorded (languages[].trainArticles or split.lowResource.articles)`);
  const unseen = numbers(entry['unseenArticles']) ?? train.filter((n) => !seen.includes(n));
  return { source: file, languages, heldoutArticles, lowResource: { language: lang, seenArticles: seen, unseenArticles: unseen } };
}

function checkLanguage(id: string, where: string): void {
  try {
    resolveUdhrLanguage(id);
  } catch (e) {
    throw new LangneuronsError('E_OPTIONS', `${where}: ${describeError(e)}`, { field: 'languages' });
  }
}

/** The recipe of the model, or one made from the options (languages, low-resource language) for other models. */
export function demoRecipe(modelDir: string, o: { languages?: readonly string[]; lowResource?: string } = {}): DemoRecipe {
  const fromFile = readRecipe(modelDir);
  const languages = o.languages ? [...o.languages] : fromFile?.languages ?? [...FALLBACK_LANGUAGES];
  for (const id of languages) checkLanguage(id, 'languages');
  if (new Set(languages).size !== languages.length) throw new LangneuronsError('E_OPTIONS', `languages: a language is repeated (${languages.join(', ')})`, { field: 'languages' });
  if (languages.length < 2) throw new LangneuronsError('E_OPTIONS', 'the demo needs at least two languages', { field: 'languages' });
  if (fromFile) {
    const missing = languages.filter((l) => !fromFile.languages.includes(l));
    if (missing.length) throw new LangneuronsError('E_OPTIONS', `languages ${missing.join(', ')} are not languages of the model (${fromFile.source}: ${fromFile.languages.join(', ')})`, { field: 'languages' });
  }
  const heldoutArticles = fromFile?.heldoutArticles ?? [...DEFAULT_HELDOUT_ARTICLES];
  const lowLang = o.lowResource ?? fromFile?.lowResource?.language ?? (languages.includes(FALLBACK_LOW_RESOURCE) ? FALLBACK_LOW_RESOURCE : languages[languages.length - 1]!);
  if (!languages.includes(lowLang)) throw new LangneuronsError('E_OPTIONS', `the language to fine-tune, "${lowLang}", is not one of the demo's languages (${languages.join(', ')})`, { field: 'lowResource' });
  const recorded = fromFile?.lowResource?.language === lowLang ? fromFile.lowResource : null;
  const lowResource = recorded ?? { language: lowLang, seenArticles: [], unseenArticles: trainArticleNumbers(lowLang, heldoutArticles) };
  if (lowResource.unseenArticles.length === 0)
    throw new LangneuronsError('E_OPTIONS', `"${lowLang}" has no train article the model did not see: nothing to fine-tune on`, { field: 'lowResource' });
  return { source: fromFile?.source ?? 'options', languages, heldoutArticles, lowResource };
}
