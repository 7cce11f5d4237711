// Language Steering Shift (Rahmanisa et al.; METHODS.md §4), exactly as defined there:
//   prompt_b(f) = template with [X] ← sub_b and " [Y]" removed (base language b);
//   ℓ(o)        = summed log-probability of the continuation " " + o after the prompt;
//   D0 = ℓ(obj_t) − ℓ(obj_b) without intervention, D1 the same with target language t's neurons amplified;
//   LSS(b→t)    = fraction of facts with D1 − D0 > 0.
// Amplification settings are compared by LSS (mean over the language pairs) and the best one is named.
// Facts: the MLAMA-dod layout, one row per fact with `template` (or `template_<b>`), `sub_<lang>`, `obj_<lang>`;
// a folder of JSONL / Parquet files (one per relation) or one such file. The measure sees only a
// `logLikelihood(pairs, intervention | null)` callback, so it runs with a fake one in the tests.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';

import { LangneuronsError, describeError } from '../errors.js';
import { readLines } from '../corpus/lines.js';
import { parquetCompressors, unreadableCodec } from '../io/parquet.js';
import { checkedStringParsers, Utf8Check } from '../io/text.js';

export const LSS_FORMAT = 'langneurons-lss/1';

/** One fact row as read: every string column, plus where it came from. */
export interface Fact {
  file: string;
  /** Row (0-based) in its file. */
  row: number;
  fields: Record<string, string | null>;
}

export interface FactSet {
  facts: Fact[];
  files: string[];
  /** Column names per file. */
  columns: Map<string, Set<string>>;
  /** Languages with both sub_<lang> and obj_<lang> in every file. */
  languages: string[];
}

function factError(file: string, message: string, field?: string): never {
  throw new LangneuronsError('E_FACTS', `${file}: ${message}`, { file, ...(field ? { field } : {}) });
}

async function readJsonlFacts(file: string): Promise<{ rows: Record<string, unknown>[]; columns: Set<string> }> {
  const rows: Record<string, unknown>[] = [];
  const columns = new Set<string>();
  for await (const { text, lineNumber } of readLines(file)) {
    if (!text.trim()) continue;
    let row: unknown;
    try { row = JSON.parse(text); } catch (e) { factError(file, `line ${lineNumber} is not valid JSON (${describeError(e)})`); }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) factError(file, `line ${lineNumber} is not a JSON object`);
    for (const k of Object.keys(row)) columns.add(k);
    rows.push(row as Record<string, unknown>);
  }
  return { rows, columns };
}

async function readParquetFacts(file: string): Promise<{ rows: Record<string, unknown>[]; columns: Set<string> }> {
  const utf8 = new Utf8Check(); // the strings hyparquet decodes: checked as text files are
  try {
    const buffer = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buffer);
    const columns = new Set(parquetSchema(metadata).children.map((c) => c.element.name));
    // Every column is read: a codec no decoder reads is named from the footer (facts are read before any model runs).
    const codec = unreadableCodec(metadata);
    if (codec !== null) factError(file, codec);
    const rows = await parquetReadObjects({ file: buffer, metadata, parsers: checkedStringParsers(utf8), compressors: await parquetCompressors(metadata) });
    utf8.refuseBinary(file, true, 'string columns');
    utf8.warnReplaced(file, 'string columns');
    return { rows, columns };
  } catch (e) {
    if (e instanceof LangneuronsError) throw e;
    factError(file, `cannot read the Parquet file: ${describeError(e)}`);
  }
}

const FACT_EXT = new Set(['.jsonl', '.parquet']);

/** Reads a fact folder (every *.jsonl / *.parquet, sorted) or one fact file. */
export async function readFacts(source: string): Promise<FactSet> {
  let stat;
  try { stat = await fsp.stat(source); } catch (e) { factError(source, `cannot read the facts: ${describeError(e)}`); }
  let files: string[];
  if (stat.isDirectory()) {
    files = (await fsp.readdir(source)).filter((n) => !n.startsWith('.') && FACT_EXT.has(path.extname(n).toLowerCase())).sort().map((n) => path.join(source, n));
    if (files.length === 0) factError(source, 'no fact files (*.jsonl or *.parquet, one per relation) in the folder');
  } else {
    if (!FACT_EXT.has(path.extname(source).toLowerCase())) factError(source, 'facts must be a .jsonl or .parquet file, or a folder of them');
    files = [source];
  }
  const facts: Fact[] = [];
  const columns = new Map<string, Set<string>>();
  for (const file of files) {
    const { rows, columns: cols } = path.extname(file).toLowerCase() === '.parquet' ? await readParquetFacts(file) : await readJsonlFacts(file);
    if (rows.length === 0) factError(file, 'the fact file has no rows');
    const hasTemplate = cols.has('template') || [...cols].some((c) => c.startsWith('template_'));
    if (!hasTemplate) factError(file, `no "template" column (columns: ${[...cols].join(', ') || 'none'}); MLAMA-dod facts need template, sub_<lang>, obj_<lang>`, 'template');
    columns.set(file, cols);
    rows.forEach((r, i) => {
      const fields: Record<string, string | null> = {};
      for (const [k, v] of Object.entries(r)) {
        if (v === null || v === undefined) fields[k] = null;
        else if (typeof v === 'string') fields[k] = v;
        else if (typeof v === 'number' || typeof v === 'bigint') fields[k] = String(v);
      }
      facts.push({ file, row: i, fields });
    });
  }
  const langsOf = (cols: Set<string>) => [...cols].filter((c) => c.startsWith('sub_') && cols.has(`obj_${c.slice(4)}`)).map((c) => c.slice(4));
  const languages = langsOf(columns.get(files[0]!)!).filter((l) => files.every((f) => columns.get(f)!.has(`sub_${l}`) && columns.get(f)!.has(`obj_${l}`))).sort();
  return { facts, files, columns, languages };
}

/** Refuses a (base, target) pair some file lacks the columns of, naming the file and the column. */
export function checkFactColumns(set: FactSet, base: string, target: string): void {
  for (const file of set.files) {
    const cols = set.columns.get(file)!;
    for (const c of [`sub_${base}`, `obj_${base}`, `obj_${target}`])
      if (!cols.has(c)) factError(file, `no column "${c}" (columns: ${[...cols].join(', ')}); languages with sub_/obj_ columns in all files: ${set.languages.join(', ') || 'none'}`, c);
  }
}

/** The LSS prompt of a template: [X] ← subject, " [Y]" removed (a leading "[Y] " when [Y] starts the template). */
export function lssPrompt(template: string, subject: string, where = 'template'): string {
  if (!template.includes('[X]')) throw new LangneuronsError('E_FACTS', `${where}: the template has no [X]: ${JSON.stringify(template)}`);
  if (!template.includes('[Y]')) throw new LangneuronsError('E_FACTS', `${where}: the template has no [Y]: ${JSON.stringify(template)}`);
  let t = template.includes(' [Y]') ? template.replace(' [Y]', '') : template.replace('[Y] ', '').replace('[Y]', '');
  t = t.replace('[X]', () => subject);
  return t;
}

export interface LssItem { fact: Fact; prompt: string; objBase: string; objTarget: string }

/** The usable facts of a pair: rows with a template, sub_b, obj_b and obj_t all non-empty. */
export function lssItems(set: FactSet, base: string, target: string): { items: LssItem[]; skipped: number } {
  checkFactColumns(set, base, target);
  const items: LssItem[] = [];
  let skipped = 0;
  for (const fact of set.facts) {
    const f = fact.fields;
    const template = f[`template_${base}`] ?? f['template'];
    const sub = f[`sub_${base}`], ob = f[`obj_${base}`], ot = f[`obj_${target}`];
    if (!template || !sub || !ob || !ot) { skipped++; continue; }
    items.push({ fact, prompt: lssPrompt(template, sub, `${fact.file}, row ${fact.row}`), objBase: ob, objTarget: ot });
  }
  return { items, skipped };
}

export interface ContinuationPair { context: string; continuation: string }
/** Summed log-probabilities of each continuation after its context, under an intervention (null: none). */
export type LogLikelihoodFn<I> = (pairs: ContinuationPair[], intervention: I | null) => Promise<number[]>;

export interface LssOptions<I, S extends { name: string }> {
  facts: FactSet;
  pairs: readonly { base: string; target: string }[];
  settings: readonly S[];
  /** The intervention amplifying the target language's neurons with a setting. */
  amplify: (target: string, setting: S) => I;
  logLikelihood: LogLikelihoodFn<I>;
  /** Called once with every (target, setting) intervention before the first log-likelihood: a caller that resolves
   *  them against a model (reading masks and statistics) does it here, so that a bad one fails before any engine work
   *  rather than after the scores without intervention and the settings before it. */
  prepare?: (interventions: I[]) => Promise<void>;
  /** Keep D0 and D1 per fact in the result. */
  details?: boolean;
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface LssPairResult {
  base: string;
  target: string;
  facts: number;
  /** Rows lacking one of the pair's values. */
  skipped: number;
  /** Facts with D1 − D0 > 0. */
  shifted: number;
  lss: number;
  /** Mean of D1 − D0 (nats). */
  meanShift: number;
  /** Mean D0: how much more likely the base object is than the target one without intervention. */
  meanD0: number;
  details?: { file: string; row: number; d0: number; d1: number }[];
}

export interface LssSettingResult { setting: string; meanLss: number; pairs: LssPairResult[] }

export interface LssResult {
  format: typeof LSS_FORMAT;
  settings: LssSettingResult[];
  /** The setting with the highest mean LSS over the pairs (the first one given on a tie). */
  best: { setting: string; meanLss: number };
}

/** Scores the pairs once per (intervention, distinct context/continuation). */
async function scoreUnique<I>(fn: LogLikelihoodFn<I>, pairs: ContinuationPair[], intervention: I | null): Promise<Map<string, number>> {
  const key = (p: ContinuationPair) => JSON.stringify([p.context, p.continuation]);
  const unique = new Map<string, ContinuationPair>();
  for (const p of pairs) if (!unique.has(key(p))) unique.set(key(p), p);
  const list = [...unique.values()];
  const lps = await fn(list, intervention);
  if (lps.length !== list.length) throw new LangneuronsError('E_INPUT', `lss: the log-likelihood function returned ${lps.length} values for ${list.length} pairs`);
  return new Map(list.map((p, i) => [key(p), lps[i]!]));
}

const lookup = (m: Map<string, number>, context: string, continuation: string) => m.get(JSON.stringify([context, continuation]))!;

export async function computeLss<I, S extends { name: string }>(opts: LssOptions<I, S>): Promise<LssResult> {
  if (opts.settings.length === 0) throw new LangneuronsError('E_OPTIONS', 'lss: no amplification settings', { field: '--settings' });
  if (opts.pairs.length === 0) throw new LangneuronsError('E_OPTIONS', 'lss: no (base, target) language pairs');
  // A pair given twice would count twice in the mean LSS that picks the best setting.
  const seen = new Set<string>();
  for (const { base, target } of opts.pairs) {
    const key = JSON.stringify([base, target]);
    if (seen.has(key)) throw new LangneuronsError('E_OPTIONS', `lss: the pair ${base}→${target} is given twice`);
    seen.add(key);
  }
  const prepared = opts.pairs.map(({ base, target }) => {
    if (base === target) throw new LangneuronsError('E_OPTIONS', `lss: base and target are both "${base}"`);
    const { items, skipped } = lssItems(opts.facts, base, target);
    if (items.length === 0) throw new LangneuronsError('E_FACTS', `lss: no fact has ${base} and ${target} values (${opts.facts.files.join(', ')})`);
    return { base, target, items, skipped };
  });
  const asks = (items: LssItem[]) => items.flatMap((it) => [
    { context: it.prompt, continuation: ` ${it.objTarget}` }, { context: it.prompt, continuation: ` ${it.objBase}` }]);
  // One call per target language (every base with that target shares the intervention), and the scores without
  // intervention in the same calls: D1 - D0 then compares two forwards of the same batches, so a setting that changes
  // nothing (scale:1, add:0) gives exactly 0, not the float noise of another batching (counted as shifts before).
  const byTarget = new Map<string, number[]>();
  prepared.forEach((p, k) => { const g = byTarget.get(p.target); if (g) g.push(k); else byTarget.set(p.target, [k]); });
  const amplified = opts.settings.map((setting) => new Map([...byTarget.keys()].map((t) => [t, opts.amplify(t, setting)])));
  await opts.prepare?.(amplified.flatMap((m) => [...m.values()]));
  const total = byTarget.size * (1 + opts.settings.length);
  let done = 0;
  const base0 = new Map<number, Map<string, number>>();
  for (const [target, ks] of byTarget) {
    const m = await scoreUnique(opts.logLikelihood, ks.flatMap((k) => asks(prepared[k]!.items)), null);
    for (const k of ks) base0.set(k, m);
    opts.onProgress?.(++done, total, `no intervention → ${target}`);
  }
  const d0 = prepared.map((p, k) => p.items.map((it) => lookup(base0.get(k)!, it.prompt, ` ${it.objTarget}`) - lookup(base0.get(k)!, it.prompt, ` ${it.objBase}`)));
  const results: LssSettingResult[] = [];
  for (const [si, setting] of opts.settings.entries()) {
    const pairResults: LssPairResult[] = [];
    const scored = new Map<number, Map<string, number>>();
    for (const [target, ks] of byTarget) {
      const m = await scoreUnique(opts.logLikelihood, ks.flatMap((k) => asks(prepared[k]!.items)), amplified[si]!.get(target)!);
      for (const k of ks) scored.set(k, m);
      opts.onProgress?.(++done, total, `${setting.name} → ${target}`);
    }
    prepared.forEach((p, k) => {
      const m = scored.get(k)!;
      const d1 = p.items.map((it) => lookup(m, it.prompt, ` ${it.objTarget}`) - lookup(m, it.prompt, ` ${it.objBase}`));
      const shifts = d1.map((v, i) => v - d0[k]![i]!);
      const shifted = shifts.filter((s) => s > 0).length;
      pairResults.push({
        base: p.base, target: p.target, facts: p.items.length, skipped: p.skipped, shifted, lss: shifted / p.items.length,
        meanShift: shifts.reduce((a, b) => a + b, 0) / shifts.length, meanD0: d0[k]!.reduce((a, b) => a + b, 0) / d0[k]!.length,
        ...(opts.details ? { details: p.items.map((it, i) => ({ file: it.fact.file, row: it.fact.row, d0: d0[k]![i]!, d1: d1[i]! })) } : {}),
      });
    });
    results.push({ setting: setting.name, meanLss: pairResults.reduce((a, r) => a + r.lss, 0) / pairResults.length, pairs: pairResults });
  }
  let best = results[0]!;
  for (const r of results) if (r.meanLss > best.meanLss) best = r;
  return { format: LSS_FORMAT, settings: results, best: { setting: best.setting, meanLss: best.meanLss } };
}
