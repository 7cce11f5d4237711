// Language forcing (Language Arithmetics; METHODS.md §4): generate from short prompts under an intervention
// (the prompt's language deactivated, the target language amplified), identify the output's language, and
// count a success when the identifier's top label is the target language. Also the same prompts without
// intervention, as the baseline rate. The measure sees a `generate(prompts, intervention | null)` callback and
// a language identifier, so it runs with a fake generator in the tests.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { readLines } from '../corpus/lines.js';
import { writeJsonWithSidecars } from '../io/outdir.js';
import type { LanguageIdentifier } from './langid.js';
import { identifyAll, normaliseLanguageCode } from './langid.js';
import { heatmapSvg } from './svg.js';

export const FORCING_FORMAT = 'langneurons-forcing/1';

export interface ForcingPrompt {
  text: string;
  /** The prompt's language (the source to deactivate), when known: the stem of its file. */
  language: string | null;
  file: string;
  line: number;
}

function promptError(file: string, message: string): never {
  throw new LangneuronsError('E_PROMPTS', `${file}: ${message}`, { file });
}

async function promptsOfFile(file: string, language: string | null): Promise<ForcingPrompt[]> {
  const out: ForcingPrompt[] = [];
  const jsonl = path.extname(file).toLowerCase() === '.jsonl';
  for await (const { text, lineNumber } of readLines(file)) {
    if (!text.trim()) continue;
    if (!jsonl) { out.push({ text, language, file, line: lineNumber }); continue; }
    let row: unknown;
    try { row = JSON.parse(text); } catch (e) { promptError(file, `line ${lineNumber} is not valid JSON (${describeError(e)})`); }
    const r = row as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || typeof r['prompt'] !== 'string')
      promptError(file, `line ${lineNumber}: expected {"prompt": "...", "language"?: "..."}`);
    const lang = typeof r['language'] === 'string' ? r['language'] : language;
    if ((r['prompt'] as string).trim()) out.push({ text: r['prompt'] as string, language: lang, file, line: lineNumber });
  }
  return out;
}

/**
 * Prompts from a folder of `<lang>.txt` (one prompt per line; the stem is the prompt's language) or
 * `<lang>.jsonl` ({"prompt": ..., "language"?: ...} per line) files, or from one such file.
 */
export async function readPrompts(source: string): Promise<ForcingPrompt[]> {
  let stat;
  try { stat = await fsp.stat(source); } catch (e) { promptError(source, `cannot read the prompts: ${describeError(e)}`); }
  const ok = (n: string) => ['.txt', '.jsonl'].includes(path.extname(n).toLowerCase());
  const files = stat.isDirectory()
    ? (await fsp.readdir(source)).filter((n) => !n.startsWith('.') && ok(n)).sort().map((n) => path.join(source, n))
    : [source];
  if (files.length === 0) promptError(source, 'the prompts folder has no <lang>.txt or <lang>.jsonl files');
  const out: ForcingPrompt[] = [];
  for (const file of files) {
    if (!ok(file)) promptError(file, 'prompts must be a .txt (one prompt per line) or .jsonl file');
    const stem = path.basename(file, path.extname(file));
    const got = await promptsOfFile(file, stat.isDirectory() ? stem : null);
    if (got.length === 0) promptError(file, 'the prompt file has no prompts (every line is empty)');
    for (const p of got) out.push(p); // (a spread overflows the stack past ~100k prompts)
  }
  return out;
}

/** Generates a continuation of each prompt under an intervention (null: none). */
export type GenerateFn<I> = (prompts: string[], intervention: I | null) => Promise<string[]>;

export interface ForcingOptions<I> {
  prompts: readonly ForcingPrompt[];
  targets: readonly string[];
  /** The intervention forcing `target` on prompts of language `source` (null when unknown or the target itself). */
  intervention: (target: string, source: string | null) => I;
  generate: GenerateFn<I>;
  /** Called once with every (target, source) intervention before the first generation: a caller that resolves them
   *  against a model (reading masks and statistics) does it here, so that a bad one fails before any engine work
   *  rather than after the generations without intervention and the targets before it. */
  prepare?: (interventions: I[]) => Promise<void>;
  identifier: LanguageIdentifier;
  /** Also generate without intervention (default true). */
  baseline?: boolean;
  /** Keep every generation and its label in the result (default true). */
  keepGenerations?: boolean;
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface ForcingGeneration { prompt: string; source: string | null; text: string; detected: string | null; code: string | null; reliable: boolean; success: boolean }

export interface ForcingRun {
  prompts: number;
  successes: number;
  rate: number;
  /** The same per prompt language ("unknown": prompts of no known language): Language Arithmetics' matrix rows. */
  bySource: Record<string, { prompts: number; successes: number; rate: number }>;
  /** Count of each detected language (null: none found as "none"). */
  detected: Record<string, number>;
  generations?: ForcingGeneration[];
}

export interface ForcingTargetResult {
  target: string;
  /** Whether the identifier knows the target at all (a rate of 0 is then meaningless). */
  identifiable: boolean;
  forced: ForcingRun;
  baseline?: ForcingRun;
}

export interface ForcingResult {
  format: typeof FORCING_FORMAT;
  identifier: string;
  targets: ForcingTargetResult[];
  /** Mean success rate over the targets. */
  meanRate: number;
}

async function run(prompts: readonly ForcingPrompt[], texts: string[], target: string, identifier: LanguageIdentifier, keep: boolean): Promise<ForcingRun> {
  if (texts.length !== prompts.length) throw new LangneuronsError('E_INPUT', `forcing: the generator returned ${texts.length} texts for ${prompts.length} prompts`);
  const want = normaliseLanguageCode(target);
  const { ids, counts: detected } = await identifyAll(identifier, texts);
  const generations: ForcingGeneration[] = [];
  const bySource: ForcingRun['bySource'] = {};
  let successes = 0;
  for (const [i, text] of texts.entries()) {
    const id = ids[i]!;
    const success = id.language === want;
    if (success) successes++;
    const src = bySource[prompts[i]!.language ?? 'unknown'] ??= { prompts: 0, successes: 0, rate: 0 };
    src.prompts++;
    if (success) src.successes++;
    if (keep) generations.push({ prompt: prompts[i]!.text, source: prompts[i]!.language, text, detected: id.language, code: id.code, reliable: id.reliable, success });
  }
  for (const src of Object.values(bySource)) src.rate = src.successes / src.prompts;
  return { prompts: texts.length, successes, rate: texts.length ? successes / texts.length : 0, bySource, detected, ...(keep ? { generations } : {}) };
}

/** Forcing rates as a matrix: rows the prompt languages (sorted), columns the targets; NaN where a row has no prompts. */
export function forcingMatrix(r: ForcingResult): { rows: string[]; columns: string[]; rates: number[][]; baseline: number[][] | null } {
  const rows = [...new Set(r.targets.flatMap((t) => Object.keys(t.forced.bySource)))].sort();
  const columns = r.targets.map((t) => t.target);
  const of = (run: ForcingRun | undefined, src: string) => run?.bySource[src]?.rate ?? NaN;
  return { rows, columns, rates: rows.map((s) => r.targets.map((t) => of(t.forced, s))),
    baseline: r.targets.every((t) => t.baseline) ? rows.map((s) => r.targets.map((t) => of(t.baseline, s))) : null };
}

export function forcingCsv(r: ForcingResult): string {
  const m = forcingMatrix(r);
  const lines = ['prompt_language,target,prompts,successes,rate,baseline_rate'];
  m.rows.forEach((s, i) => r.targets.forEach((t, j) => {
    const x = t.forced.bySource[s];
    if (x) lines.push([s, t.target, x.prompts, x.successes, x.rate, m.baseline ? m.baseline[i]![j] : ''].join(','));
  }));
  return lines.join('\n') + '\n';
}

/** The heatmap of forcing rates (rows: prompt language, columns: target), as their figure draws it. */
export function forcingSvg(r: ForcingResult): string {
  const m = forcingMatrix(r);
  return heatmapSvg({
    title: 'Language forcing: share of outputs in the target language',
    rowLabels: m.rows, columnLabels: m.columns, values: m.rates,
    rowAxis: 'prompt language', columnAxis: 'target (amplified)', legend: 'success rate',
    footer: `identifier ${r.identifier}; mean over targets ${(100 * r.meanRate).toFixed(1)}%` +
      (m.baseline ? '; cell tooltips give the rate without intervention' : ''),
    cellLabel: (i, j) => (Number.isFinite(m.rates[i]![j]!) ? `${(100 * m.rates[i]![j]!).toFixed(0)}%` : ''),
    cellTitle: (i, j) => `${m.rows[i]} prompts → ${m.columns[j]}: ${(100 * m.rates[i]![j]!).toFixed(1)}%` +
      (m.baseline ? ` (without intervention ${(100 * m.baseline[i]![j]!).toFixed(1)}%)` : ''),
  });
}

/** Writes `<out>` (JSON, the result with `extra`), and next to it `<out stem>.csv` and `<out stem>.svg`, each atomically. */
export async function writeForcing(out: string, r: ForcingResult, extra: Record<string, unknown> = {}): Promise<{ json: string; csv: string; svg: string }> {
  return writeJsonWithSidecars(out, { ...r, ...extra }, forcingCsv(r), forcingSvg(r));
}

export async function computeForcing<I>(opts: ForcingOptions<I>): Promise<ForcingResult> {
  if (opts.prompts.length === 0) throw new LangneuronsError('E_PROMPTS', 'forcing: no prompts');
  if (opts.targets.length === 0) throw new LangneuronsError('E_OPTIONS', 'forcing: no target language', { field: '--target' });
  // A target given twice would count twice in the mean rate.
  const repeated = opts.targets.find((t, i) => opts.targets.indexOf(t) !== i);
  if (repeated !== undefined) throw new LangneuronsError('E_OPTIONS', `forcing: the target ${repeated} is given twice`, { field: '--target' });
  const keep = opts.keepGenerations ?? true;
  const texts = opts.prompts.map((p) => p.text);
  // Per target, the prompts grouped by source language (a prompt in the target's own language has none to
  // deactivate): one intervention per (target, source), all made before any generation.
  const plan = opts.targets.map((target) => {
    const groups = new Map<string | null, number[]>();
    opts.prompts.forEach((p, i) => {
      const src = p.language !== null && normaliseLanguageCode(p.language) === normaliseLanguageCode(target) ? null : p.language;
      const group = groups.get(src);
      if (group) group.push(i);
      else groups.set(src, [i]);
    });
    return { target, groups: [...groups].map(([src, idx]) => ({ idx, intervention: opts.intervention(target, src) })) };
  });
  await opts.prepare?.(plan.flatMap((t) => t.groups.map((g) => g.intervention)));
  const total = opts.targets.length * 2 + (opts.baseline === false ? 0 : 1);
  let done = 0;
  let baselineTexts: string[] | null = null;
  if (opts.baseline !== false) {
    baselineTexts = await opts.generate(texts, null);
    if (baselineTexts.length !== texts.length) throw new LangneuronsError('E_INPUT', `forcing: the generator returned ${baselineTexts.length} texts for ${texts.length} prompts`);
    opts.onProgress?.(++done, total, 'no intervention');
  }
  const targets: ForcingTargetResult[] = [];
  for (const { target, groups } of plan) {
    const forcedTexts = new Array<string>(texts.length);
    for (const { idx, intervention } of groups) {
      const out = await opts.generate(idx.map((i) => texts[i]!), intervention);
      if (out.length !== idx.length) throw new LangneuronsError('E_INPUT', `forcing: the generator returned ${out.length} texts for ${idx.length} prompts`);
      idx.forEach((i, k) => { forcedTexts[i] = out[k]!; });
    }
    opts.onProgress?.(++done, total, `forcing ${target}`);
    const forced = await run(opts.prompts, forcedTexts, target, opts.identifier, keep);
    const baseline = baselineTexts ? await run(opts.prompts, baselineTexts, target, opts.identifier, keep && opts.targets.length === 1) : undefined;
    opts.onProgress?.(++done, total, `identified ${target}`);
    targets.push({ target, identifiable: opts.identifier.languages.has(normaliseLanguageCode(target)), forced, ...(baseline ? { baseline } : {}) });
  }
  return { format: FORCING_FORMAT, identifier: opts.identifier.name, targets, meanRate: targets.reduce((a, t) => a + t.forced.rate, 0) / targets.length };
}
