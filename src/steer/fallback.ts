// Language fallback (Language Arithmetics, their src/fallbacks.py): deactivate the neurons of a growing set of
// languages (en; en+fr; en+fr+es; ...: the union of their masks) and see which language the model answers neutral
// prompts in. For each step: the distribution of the identified output languages and the most common one. Like
// forcing, the measure sees a `generate(prompts, intervention | null)` callback and a language identifier.
import { LangneuronsError } from '../errors.js';
import type { ForcingPrompt, GenerateFn } from './forcing.js';
import { identifyAll, type LanguageIdentifier } from './langid.js';

export const FALLBACK_FORMAT = 'langneurons-fallback/1';

export interface FallbackGeneration { prompt: string; text: string; detected: string | null; code: string | null; probability?: number }

export interface FallbackStep {
  /** The languages whose neurons are deactivated (their union); empty: the baseline without intervention. */
  deactivated: string[];
  /** Generations per identified language ("none": no language found, e.g. an empty output), in order of first appearance. */
  distribution: Record<string, number>;
  /** The most frequent; of equal counts the first to appear (Python's max over a dict, as their code takes it). */
  mostCommon: string | null;
  generations?: FallbackGeneration[];
}

export interface FallbackResult {
  format: typeof FALLBACK_FORMAT;
  identifier: string;
  /** cumulative: the first k languages for k = 1..n (their --progressive_only); each: every language alone. */
  order: 'cumulative' | 'each';
  baseline?: FallbackStep;
  steps: FallbackStep[];
}

export interface FallbackOptions<I> {
  prompts: readonly ForcingPrompt[];
  /** The languages to deactivate, in order. */
  languages: readonly string[];
  order?: 'cumulative' | 'each';
  /** The intervention deactivating the union of these languages' neurons. */
  intervention: (languages: string[]) => I;
  generate: GenerateFn<I>;
  /** Called once with every step's intervention before the first generation: a caller that resolves them against a
   *  model does it here, so that a bad one fails before any engine work rather than after the baseline. */
  prepare?: (interventions: I[]) => Promise<void>;
  identifier: LanguageIdentifier;
  baseline?: boolean;
  keepGenerations?: boolean;
  onProgress?: (done: number, total: number, what: string) => void;
}

/** The sets of languages deactivated at each step. */
export function fallbackSets(languages: readonly string[], order: 'cumulative' | 'each'): string[][] {
  return order === 'each' ? languages.map((l) => [l]) : languages.map((_, k) => languages.slice(0, k + 1));
}

async function step(prompts: readonly ForcingPrompt[], texts: string[], deactivated: string[], identifier: LanguageIdentifier, keep: boolean): Promise<FallbackStep> {
  if (texts.length !== prompts.length) throw new LangneuronsError('E_INPUT', `fallback: the generator returned ${texts.length} texts for ${prompts.length} prompts`);
  const { ids, counts: distribution } = await identifyAll(identifier, texts);
  const generations: FallbackGeneration[] = keep ? texts.map((text, i) => {
    const id = ids[i]!;
    return { prompt: prompts[i]!.text, text, detected: id.language, code: id.code, ...(id.probability === undefined ? {} : { probability: id.probability }) };
  }) : [];
  let mostCommon: string | null = null;
  for (const [k, n] of Object.entries(distribution)) if (mostCommon === null || n > distribution[mostCommon]!) mostCommon = k;
  return { deactivated, distribution, mostCommon, ...(keep ? { generations } : {}) };
}

/** Refuses no language or one named twice. */
export function checkFallbackLanguages(languages: readonly string[]): void {
  if (languages.length === 0) throw new LangneuronsError('E_OPTIONS', 'fallback: no language to deactivate', { field: '--deactivate' });
  const repeated = languages.find((l, i) => languages.indexOf(l) !== i);
  if (repeated !== undefined) throw new LangneuronsError('E_OPTIONS', `fallback: --deactivate names ${repeated} twice`, { field: '--deactivate' });
}

export async function computeFallback<I>(opts: FallbackOptions<I>): Promise<FallbackResult> {
  if (opts.prompts.length === 0) throw new LangneuronsError('E_PROMPTS', 'fallback: no prompts');
  checkFallbackLanguages(opts.languages);
  const order = opts.order ?? 'cumulative';
  const keep = opts.keepGenerations ?? true;
  const texts = opts.prompts.map((p) => p.text);
  const sets = fallbackSets(opts.languages, order);
  const interventions = sets.map((set) => opts.intervention(set));
  await opts.prepare?.(interventions);
  const total = sets.length + (opts.baseline === false ? 0 : 1);
  let done = 0;
  let baseline: FallbackStep | undefined;
  if (opts.baseline !== false) {
    baseline = await step(opts.prompts, await opts.generate(texts, null), [], opts.identifier, keep);
    opts.onProgress?.(++done, total, 'no intervention');
  }
  const steps: FallbackStep[] = [];
  for (const [k, set] of sets.entries()) {
    steps.push(await step(opts.prompts, await opts.generate(texts, interventions[k]!), set, opts.identifier, keep));
    opts.onProgress?.(++done, total, `deactivated ${set.join('+')}`);
  }
  // (Object keys in insertion order: every language id here is a string that is not an array index.)
  return { format: FALLBACK_FORMAT, identifier: opts.identifier.name, order, ...(baseline ? { baseline } : {}), steps };
}
