// The engine side of the steering measures: the real scorer / log-likelihood / generator callbacks (the model
// with an intervention), the held-out texts of the perplexity matrix, and the interventions the measures ask for
// (deactivate a mask language, amplify one with a setting) turned into the intervention engine's specs.
// Requests are canonical specs of the intervention engine (src/intervene/spec.ts), resolved against the model by
// `resolveIntervention` and passed as `{ intervene }` to scoreTokens, logLikelihood and generate.
import path from 'node:path';
import { existsSync, statSync } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import type { LanguageModel } from '../engine/model.js';
import { logLikelihood, logLikelihoodTokens } from '../engine/score.js';
import { generate, type GenerateOptions } from '../generate/generate.js';
import { openCorpus, openCorpusSpec, formatOf, type Corpus, type CorpusManifest } from '../corpus/index.js';
import type { NeuronMask } from '../identify/masks.js';
import { maskLanguage } from '../identify/masks.js';
import type { LogLikelihoodFn } from './lss.js';
import type { MatrixScorer, NllSum } from './ppl-matrix.js';
import type { GenerateFn } from './forcing.js';
import type { AmplifySetting } from './settings.js';
import { resolveIntervention, validateSpec, type Intervention, type InterventionSite, type InterventionSpec, type Operation, type ResolveOptions } from '../intervene/index.js';
import { NEURON_SITES } from '../profile/stats.js';

// ---------------------------------------------------------------------------------------------------------------
// Interventions the measures ask for, as the engine's canonical specs (src/intervene/spec.ts)

/** A request of the measures: engine specs applied in order (e.g. deactivate the source, then amplify the target). */
export interface SteerRequest { specs: InterventionSpec[]; label: string }

const neuronsOf = (maskFile: string, language: string) => ({ mask: maskFile, languages: [language] });

/**
 * Where the measures intervene on a mask's units: FFN masks (whatever FFN site they were identified at) at the
 * default site act, as Tang deactivates; a projection's mask (Kojima: q, k, v, o, down) at that projection's
 * outputs, the only units it names. Undefined: the default. (A resid mask is refused when resolved.)
 */
export function maskInterventionSite(mask: Pick<NeuronMask, 'site'>): InterventionSite | undefined {
  return (NEURON_SITES as readonly string[]).includes(mask.site) || mask.site === 'resid' ? undefined : mask.site as InterventionSite;
}

/** Deactivation of a mask language, or of the union of several languages' neurons (Tang: set to 0; Language
 *  Arithmetics also -1, -1.5); `site`: see maskInterventionSite. */
export function deactivation(maskFile: string, language: string | string[], value = 0, site?: InterventionSite): SteerRequest {
  const languages = typeof language === 'string' ? [language] : language;
  const at = site === undefined ? '' : `:site=${site}`;
  const lang = languages.join('+');
  const spec: InterventionSpec = { neurons: { mask: maskFile, languages }, operation: { op: 'set', value }, ...(site === undefined ? {} : { site }),
    source: value === 0 ? `deactivate:${maskFile}:${lang}${at}` : `set:${value}:mask=${maskFile}:lang=${lang}${at}` };
  // Checked now (a value beyond float32, say), not when the measure first resolves it after its baseline; kept as
  // it is (without validateSpec's defaults): the request addresses the units of a resumable run.
  validateSpec(spec);
  return { specs: [spec], label: `deactivate ${lang}${value ? ` (set ${value})` : ''}` };
}

/** The engine operation of an amplification setting for a target language. */
export function settingOperation(setting: AmplifySetting, language: string): Operation {
  switch (setting.kind) {
    case 'neuron-stat': return { op: 'set', value: { statistic: setting.stat, language } };
    case 'add-mean': return { op: 'add', alpha: setting.alpha, value: { statistic: 'mean', language } };
    case 'diffmean': return { op: 'diffmean', language, alpha: setting.alpha };
    case 'scale': return { op: 'scale', factor: setting.factor };
    default:
      if ('value' in setting) return setting.kind === 'mul' ? { op: 'scale', factor: setting.value } : { op: setting.kind, value: setting.value };
      return { op: 'testtime', combine: setting.kind === 'set' ? '=' : setting.kind === 'add' ? '+' : '*', statistic: setting.rowStat, factor: setting.factor };
  }
}

/** Whether a setting needs the target language's profiling statistics. */
export const needsStats = (s: AmplifySetting): boolean => s.kind === 'neuron-stat' || s.kind === 'add-mean' || s.kind === 'diffmean';

/** Amplification of a mask language with a setting; `stats`: the profiling statistics the setting may need (at
 *  `site`, see maskInterventionSite). */
export function amplification(maskFile: string, language: string, setting: AmplifySetting, stats?: string, site?: InterventionSite): SteerRequest {
  if (needsStats(setting) && stats === undefined)
    throw new LangneuronsError('E_OPTIONS', `amplification setting "${setting.name}" needs the profiling statistics of the languages (--stats <folder of <lang>.safetensors>)`, { field: '--stats' });
  const spec: InterventionSpec = {
    neurons: neuronsOf(maskFile, language), operation: settingOperation(setting, language),
    source: `amplify ${language} with ${setting.name}${site === undefined ? '' : ` at site ${site}`}`,
    ...(stats === undefined ? {} : { stats }), ...(site === undefined ? {} : { site }),
  };
  return { specs: [validateSpec(spec)], label: `amplify ${language} (${setting.name})` };
}

export function compose(...requests: SteerRequest[]): SteerRequest {
  return { specs: requests.flatMap((r) => r.specs), label: requests.map((r) => r.label).join(' + ') };
}

/** Resolves requests against a model, once per distinct request (masks and statistics are read once). What resolves
 *  but departs from a method's definition (p_max of window means, ...) is told to `onWarning`, as resolveIntervention
 *  tells it; default: nothing (the steer commands pass warnOnce: a warning on stderr). */
export function interventionResolver(model: LanguageModel, options: Pick<ResolveOptions, 'onWarning'> = {}): (request: SteerRequest) => Promise<Intervention> {
  const cache = new Map<string, Promise<Intervention>>();
  const onWarning = options.onWarning;
  return (request) => {
    const key = JSON.stringify(request.specs);
    if (!cache.has(key)) cache.set(key, resolveIntervention(model, request.specs, onWarning ? { onWarning } : {}));
    return cache.get(key)!;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Held-out texts (perplexity matrix)

export interface EvalTexts {
  origin: string;
  /** Per language: token ids of each document (each as the tokenizer encodes it, BOS included). */
  documents: Map<string, number[][]>;
  tokens: Map<string, number>;
  fingerprint: string;
}

/**
 * Opens the held-out text named on the command line: a corpus spec (`udhr:heldout`, a folder of <lang>.<ext>
 * files, a manifest .json) or a comma-separated list of files `<lang>.<ext>` / `<lang>=<file>`.
 */
export async function openEvalCorpus(spec: string, languages: readonly string[] | undefined): Promise<Corpus> {
  const isFileList = spec.includes(',') || spec.includes('=') || (existsSync(spec) && statSync(spec).isFile() && formatOf(spec) !== null);
  if (!isFileList) return openCorpusSpec(spec, languages ? { languages } : {});
  const manifest: CorpusManifest = { languages: {} };
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    const file = eq >= 0 ? item.slice(eq + 1) : item;
    const lang = eq >= 0 ? item.slice(0, eq) : path.basename(file, path.extname(file));
    if (!lang) throw new LangneuronsError('E_OPTIONS', `--eval-text: "${item}" names no language (use <lang>=<file>)`, { field: '--eval-text' });
    if (manifest.languages[lang]) throw new LangneuronsError('E_OPTIONS', `--eval-text: two files for language "${lang}"`, { field: '--eval-text' });
    manifest.languages[lang] = { files: [path.resolve(file)] };
  }
  return openCorpus(manifest);
}

/** Tokenises each language's documents, up to `maxTokens` per language (the last document cut). */
export async function loadEvalTexts(model: LanguageModel, corpus: Corpus, languages: readonly string[], maxTokens = Infinity): Promise<EvalTexts> {
  const tok = model.requireTokenizer();
  const documents = new Map<string, number[][]>(), tokens = new Map<string, number>();
  for (const lang of languages) {
    const docs: number[][] = [];
    let n = 0;
    for await (const text of corpus.source(lang).documents()) {
      if (n >= maxTokens) break;
      let ids = tok.encode(text);
      if (n + ids.length > maxTokens) {
        if (maxTokens - n < 2) break;
        ids = ids.slice(0, maxTokens - n);
      }
      if (ids.length < 2) continue;
      docs.push(ids);
      n += ids.length;
    }
    if (docs.length === 0) throw new LangneuronsError('E_CORPUS', `${corpus.origin}: no text to score for language "${lang}" (${corpus.source(lang).files.join(', ')})`);
    documents.set(lang, docs);
    tokens.set(lang, n);
  }
  return { origin: corpus.origin, documents, tokens, fingerprint: await corpus.fingerprint([...languages]) };
}

export interface MatrixScoreOptions {
  /** Tokens per window (default and maximum: the model's context); longer documents are cut into windows. */
  window?: number;
  /** Token budget per forward when packing windows (default 4096). */
  batchTokens?: number;
}

/**
 * The real scorer: each document (from its BOS) cut into windows of at most `window` tokens without overlap, the
 * first token of each window unscored (as scoreTokens does without a stride), windows of all documents packed
 * into forwards; NLL summed over the language's documents.
 */
export function engineMatrixScorer(model: LanguageModel, texts: EvalTexts, opts: MatrixScoreOptions = {}): MatrixScorer<Intervention> {
  const window = opts.window ?? model.contextLength;
  if (!Number.isInteger(window) || window < 2 || window > model.contextLength)
    throw new LangneuronsError('E_OPTIONS', `window must be an integer in [2, ${model.contextLength}] (the model's context), got ${window}`, { field: '--window' });
  const batchTokens = Math.max(opts.batchTokens ?? 4096, window);
  const pairsOf = new Map<string, { context: number[]; continuation: number[] }[]>();
  return async (textId, intervention): Promise<NllSum> => {
    const docs = texts.documents.get(textId);
    if (!docs) throw new LangneuronsError('E_INPUT', `no held-out text for "${textId}"`);
    if (!pairsOf.has(textId)) {
      const pairs: { context: number[]; continuation: number[] }[] = [];
      for (const ids of docs)
        for (let b = 0; b + 1 < ids.length; b += window) {
          const chunk = ids.slice(b, b + window);
          if (chunk.length >= 2) pairs.push({ context: chunk.slice(0, 1), continuation: chunk.slice(1) });
        }
      pairsOf.set(textId, pairs);
    }
    // every scored token of a window is a `generated` position for the engine; the measures' specs apply at all positions
    const scores = await logLikelihoodTokens(model, pairsOf.get(textId)!, batchTokens, intervention ? { intervene: intervention } : {});
    let totalNll = 0, tokens = 0;
    for (const s of scores) { totalNll -= s.logprob; tokens += s.tokens; }
    return { totalNll, tokens };
  };
}

/** The real log-likelihood (lm-evaluation-harness tokenisation, src/engine/score.ts logLikelihood). */
export function engineLogLikelihood(model: LanguageModel): LogLikelihoodFn<Intervention> {
  return async (pairs, intervention) => (await logLikelihood(model, pairs, intervention ? { intervene: intervention } : {})).map((s) => s.logprob);
}

/** The real generator (greedy by default), decoding `concurrency` prompts at a time (all at once without it;
 *  continuous batching): the KV cache holds that many sequences, not every prompt. */
export function engineGenerator(model: LanguageModel, opts: GenerateOptions, concurrency?: number): GenerateFn<Intervention> {
  return async (prompts, intervention) => (await generate(model, prompts, {
    ...opts, ...(concurrency ? { concurrency } : {}), ...(intervention ? { intervene: intervention } : {}),
  })).map((g) => g.text);
}

/**
 * Refuses a prompt longer than the model's context, naming its file and line, before any generation (the generator
 * itself can only name the prompt's index in its call). Prompts are tokenised as the generator tokenises them.
 */
export function checkPromptLengths(model: LanguageModel, prompts: readonly { text: string; file: string; line: number }[]): void {
  const tok = model.requireTokenizer();
  for (const p of prompts) {
    const n = tok.encode(p.text).length;
    if (n > model.contextLength)
      throw new LangneuronsError('E_PROMPTS', `${p.file}:${p.line}: the prompt has ${n} tokens, longer than the model's context of ${model.contextLength}`, { file: p.file });
  }
}

/** Refuses mask languages the mask lacks, naming the mask file. */
export function requireMaskLanguages(mask: NeuronMask, maskFile: string, languages: readonly string[]): void {
  for (const l of languages) maskLanguage(mask, l, maskFile);
}
