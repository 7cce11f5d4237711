// Step 4: steering generation toward a target language (Language Arithmetics' forcing). Prompts are the first
// tokens of held-out articles of every other language; the model continues them greedily without intervention
// and with the prompt language's neurons deactivated and the target's amplified (one run per amplification
// setting). The language of each continuation is identified by a character n-gram model of the model's own
// training text (src/demo/ngram-langid.ts); the target's share of the continuations is compared with and
// without intervention.
import { udhrArticles } from '../corpus/udhr.js';
import { LangneuronsError } from '../errors.js';
import { generateTokens } from '../generate/generate.js';
import { warnOnce } from '../intervene/index.js';
import { amplification, compose, deactivation, interventionResolver, parseSetting, type SteerRequest } from '../steer/index.js';
import type { DemoContext } from './context.js';
import type { IdentifyResult, ProfileResult } from './neurons-step.js';
import { identifierAccuracy, NgramIdentifier, type IdentifierAccuracy } from './ngram-langid.js';

export interface SteeringPrompt { language: string; article: number; ids: number[]; text: string }

export interface SteeringRun {
  /** Generations identified as the target / all generations (prompts of other languages). */
  share: number;
  target: number;
  generations: number;
  detected: Record<string, number>;
  examples: { prompt: string; source: string; text: string; detected: string | null }[];
}

export interface SteeringResult {
  identifier: { name: string; trainedOn: string; accuracy: IdentifierAccuracy };
  targets: string[];
  settings: string[];
  deactivateSource: boolean;
  maxNewTokens: number;
  repetitionPenalty: number;
  promptsPerLanguage: number;
  promptTokens: number;
  /** Without intervention: the share of continuations identified as their prompt's language. */
  baselineKeepsPromptLanguage: number;
  /** Per target: the run without intervention, and one run per setting. */
  runs: { target: string; baseline: SteeringRun; settings: Record<string, SteeringRun> }[];
}

const SCRIPTS = ['Latin', 'Cyrillic', 'Greek', 'Arabic', 'Hebrew', 'Devanagari', 'Bengali', 'Tamil', 'Thai', 'Georgian', 'Armenian', 'Ethiopic', 'Hangul', 'Hiragana', 'Han'];

/** The script most of a text's letters are written in. */
export function dominantScript(text: string): string {
  let best = 'Other', most = 0;
  for (const s of SCRIPTS) {
    const n = text.match(new RegExp(`\\p{Script=${s}}`, 'gu'))?.length ?? 0;
    if (n > most) { most = n; best = s; }
  }
  return best;
}

/**
 * Up to three targets in different scripts (the scripts in the order the languages list them), for each script the
 * language with the most neurons in the mask (steering amplifies them: a language without neurons cannot be a
 * target), leaving out the language to fine-tune.
 */
export function defaultTargets(languages: readonly string[], skip: string | null, neurons: (l: string) => number = () => 1): string[] {
  const best = new Map<string, string>();
  for (const l of languages) {
    if (l === skip || !(neurons(l) > 0)) continue;
    const script = dominantScript(udhrArticles(l)[1]?.text ?? '');
    const cur = best.get(script);
    if (cur === undefined || neurons(l) > neurons(cur)) best.set(script, l);
  }
  return [...best.values()].slice(0, 3);
}

function textsOf(langs: readonly string[], keep: (n: number) => boolean): Map<string, string[]> {
  return new Map(langs.map((l) => [l, udhrArticles(l).filter((a) => keep(a.number)).map((a) => a.text)]));
}

function summarise(prompts: SteeringPrompt[], texts: string[], target: string, id: NgramIdentifier): SteeringRun {
  const detected: Record<string, number> = {};
  const examples: SteeringRun['examples'] = [];
  // examples: the first prompt of four source languages spread over the list
  const sources = [...new Set(prompts.map((p) => p.language))];
  const shown = new Set(sources.filter((_, k) => k % Math.max(1, Math.ceil(sources.length / 4)) === 0));
  let hits = 0;
  texts.forEach((text, i) => {
    const label = id.identify(text).language;
    detected[label ?? 'none'] = (detected[label ?? 'none'] ?? 0) + 1;
    if (label === target) hits++;
    if (shown.delete(prompts[i]!.language)) examples.push({ prompt: prompts[i]!.text, source: prompts[i]!.language, text, detected: label });
  });
  return { share: texts.length ? hits / texts.length : 0, target: hits, generations: texts.length, detected, examples };
}

export async function steeringStep(ctx: DemoContext, profile: { key: string; result: ProfileResult }, identify: { key: string; result: IdentifyResult }) {
  const o = ctx.options, langs = ctx.recipe.languages;
  const held = new Set(ctx.recipe.heldoutArticles);
  const targets = o.steerTargets ?? defaultTargets(langs, ctx.recipe.lowResource?.language ?? null, (l) => identify.result.total[l] ?? 0);
  for (const t of targets) if (!langs.includes(t)) throw new LangneuronsError('E_OPTIONS', `steering target "${t}" is not one of the demo's languages (${langs.join(', ')})`, { field: 'steerTargets' });
  const settings = o.steerSettings.map(parseSetting);
  const inputs = { step: 'steering', model: ctx.modelDigest, profile: profile.key, identify: identify.key, targets, settings: o.steerSettings,
    promptsPerLanguage: o.promptsPerLanguage, promptTokens: o.promptTokens, maxNewTokens: o.maxNewTokens, repetitionPenalty: o.repetitionPenalty, heldout: [...held] };
  return ctx.runner.run<SteeringResult>('steering', inputs, async () => {
    const identifier = new NgramIdentifier(textsOf(langs, (n) => !held.has(n)));
    const accuracy = identifierAccuracy(identifier, textsOf(langs, (n) => held.has(n)), 80);
    const model = await ctx.model();
    const tok = model.requireTokenizer();
    const prompts: SteeringPrompt[] = langs.flatMap((language) =>
      udhrArticles(language).filter((a) => held.has(a.number)).slice(0, o.promptsPerLanguage).map((a) => {
        const ids = tok.encode(a.text).slice(0, o.promptTokens + (tok.addsBos ? 1 : 0));  // (Qwen's tokenizers know a BOS id but add none)
        return { language, article: a.number, ids, text: tok.decode(ids, { skipSpecialTokens: true }) };
      }));
    const resolve = interventionResolver(model, { onWarning: warnOnce });
    const generate = async (ps: SteeringPrompt[], req: SteerRequest | null) =>
      (await generateTokens(model, ps.map((p) => p.ids), { maxNewTokens: o.maxNewTokens, repetitionPenalty: o.repetitionPenalty, ...(req ? { intervene: await resolve(req) } : {}) })).map((g) => g.text);
    const maskFile = identify.result.maskFile, statsDir = profile.result.statsDir;

    ctx.runner.progress('steering', 'generating without intervention');
    const baselineTexts = await generate(prompts, null);
    const keeps = baselineTexts.filter((t, i) => identifier.identify(t).language === prompts[i]!.language).length / prompts.length;
    const runs: SteeringResult['runs'] = [];
    for (const target of targets) {
      const others = prompts.map((p, i) => [p, i] as const).filter(([p]) => p.language !== target);
      const baseline = summarise(others.map(([p]) => p), others.map(([, i]) => baselineTexts[i]!), target, identifier);
      const bySetting: Record<string, SteeringRun> = {};
      for (const setting of settings) {
        ctx.runner.progress('steering', `toward ${target} with ${setting.name}`);
        const texts = new Array<string>(others.length);
        for (const source of langs.filter((l) => l !== target)) {
          const idx = others.map(([p], k) => (p.language === source ? k : -1)).filter((k) => k >= 0);
          const req = compose(deactivation(maskFile, source), amplification(maskFile, target, setting, statsDir));
          const out = await generate(idx.map((k) => others[k]![0]), req);
          idx.forEach((k, n) => { texts[k] = out[n]!; });
        }
        bySetting[setting.name] = summarise(others.map(([p]) => p), texts, target, identifier);
      }
      runs.push({ target, baseline, settings: bySetting });
    }
    return {
      identifier: { name: 'char-ngram (1-3)', trainedOn: 'UDHR train articles of the model\'s languages', accuracy },
      targets, settings: settings.map((s) => s.name), deactivateSource: true, maxNewTokens: o.maxNewTokens, repetitionPenalty: o.repetitionPenalty,
      promptsPerLanguage: o.promptsPerLanguage, promptTokens: o.promptTokens, baselineKeepsPromptLanguage: keeps, runs,
    };
  });
}
