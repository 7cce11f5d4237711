// `results pivot`: evaluation result files (found recursively) laid out as one metric in a rows × columns table
// (default languages × variants), with the difference to a baseline column, the mean over the rows and over a
// low-resource subset. Records are read tolerantly: any `langneurons.eval/*` schema, unknown fields ignored, the
// variant as a name or an object with one, so result files from older and newer versions pivot together.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { canonicalLang } from '../eval/prompts.js';
import { RESULT_KEYS, resultKeyValues, type ResultKeyName } from '../eval/results.js';

/** What evaluated (task, lang, variant, prompt, model) and the settings that give a result of its own (data, split,
 *  limit, tokenize, max-gen-toks, compute, device): src/eval/results.ts. */
export const PIVOT_KEYS = RESULT_KEYS;
export type PivotKey = ResultKeyName;

export interface ResultRecord { file: string; keys: Record<PivotKey, string>; items: number | null; metrics: Record<string, number> }

/** Metrics tried, in order, when none is named: the first one every selected result has. */
export const PREFERRED_METRICS = ['acc', 'accuracy', 'acc_norm', 'chrf', 'chrf++', 'bleu', 'f1', 'em', 'exact_match', 'ppl', 'perplexity', 'nll'];

async function walk(dir: string, out: string[]): Promise<void> {
  let entries;
  try { entries = await fsp.readdir(dir, { withFileTypes: true }); } catch (e) {
    throw new LangneuronsError('E_IO', `${dir}: cannot read the results folder: ${describeError(e)}`, { file: dir });
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile() && e.name.endsWith('.json')) out.push(p);
  }
}

/** The record a result file holds, or null when the JSON is not an evaluation result (figures, configs...). */
export function resultRecord(file: string, v: unknown): ResultRecord | null {
  const r = v as Record<string, unknown> | null;
  if (!r || typeof r !== 'object' || typeof r['schema'] !== 'string' || !r['schema'].startsWith('langneurons.eval/')) return null;
  const keys = resultKeyValues(r);
  if ('missing' in keys) throw new LangneuronsError('E_DATA', `${file}: field '${keys.missing}' must be ${keys.want}`, { file, field: keys.missing });
  const m = r['metrics'];
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new LangneuronsError('E_DATA', `${file}: field 'metrics' must be an object of metric values`, { file, field: 'metrics' });
  const metrics: Record<string, number> = {};
  for (const [k, x] of Object.entries(m)) if (typeof x === 'number' && Number.isFinite(x)) metrics[k] = x;
  return { file, items: typeof r['items'] === 'number' ? r['items'] : null, metrics, keys };
}

/** Every evaluation result under `dir`, recursively, in path order. */
export async function readResultsRecursive(dir: string): Promise<ResultRecord[]> {
  const files: string[] = [];
  await walk(dir, files);
  const out: ResultRecord[] = [];
  for (const file of files) {
    let v: unknown;
    try { v = JSON.parse(await fsp.readFile(file, 'utf8')); } catch (e) {
      throw new LangneuronsError('E_DATA', `${file}: not a JSON file: ${describeError(e)}`, { file });
    }
    const rec = resultRecord(file, v);
    if (rec) out.push(rec);
  }
  return out;
}

export interface PivotOptions {
  rows: PivotKey;
  cols: PivotKey;
  /** Metric to show; default: the first of PREFERRED_METRICS every selected result has. */
  metric?: string;
  /** Column value the others are compared with (Δ = column − baseline, per row). */
  baseline?: string;
  /** Keep only results whose keys have these values. */
  where?: Partial<Record<PivotKey, string>>;
  /** Row values marked as low-resource (their own mean row). */
  lowResource?: string[];
}

export interface Pivot {
  metric: string;
  rowKey: PivotKey;
  colKey: PivotKey;
  rows: string[];
  cols: string[];
  /** [row][col] metric value, null where no result. */
  values: (number | null)[][];
  baseline: string | null;
  /** [row][col] value − baseline value of the row (null where either is missing); null without a baseline. */
  delta: (number | null)[][] | null;
  lowResource: string[];
  /** Per column: mean over the rows that have a value (and how many), over all rows and over the low-resource rows. */
  mean: { all: (number | null)[]; lowResource: (number | null)[] | null; deltaAll: (number | null)[] | null; deltaLowResource: (number | null)[] | null };
  /** The fixed keys of the results used (e.g. task, model), where all agree. */
  fixed: Partial<Record<PivotKey, string>>;
  results: number;
}

const mean = (xs: (number | null)[]): number | null => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};

export function pivotResults(all: ResultRecord[], o: PivotOptions): Pivot {
  if (o.rows === o.cols) throw new LangneuronsError('E_OPTIONS', `--rows and --cols are both '${o.rows}'`, { field: 'cols' });
  // (a language given in --where matches it under any of its names, as the results' languages are canonical)
  const sel = all.filter((r) => Object.entries(o.where ?? {}).every(([k, v]) => r.keys[k as PivotKey] === (k === 'lang' ? canonicalLang(v) : v)));
  if (!sel.length) throw new LangneuronsError('E_INPUT', `no evaluation results${o.where && Object.keys(o.where).length ? ` with ${Object.entries(o.where).map(([k, v]) => `${k}=${v}`).join(', ')}` : ''}`);
  const have = () => [...new Set(sel.flatMap((r) => Object.keys(r.metrics)))].sort().join(', ');
  const metric = o.metric ?? PREFERRED_METRICS.find((m) => sel.every((r) => m in r.metrics));
  if (!metric) throw new LangneuronsError('E_OPTIONS', `--metric: no metric common to all results is one of ${PREFERRED_METRICS.join(', ')}; name one (they have: ${have()})`, { field: 'metric' });
  // A metric some results lack leaves their cells empty; one that none has (a typo) would leave the whole table empty.
  if (!sel.some((r) => metric in r.metrics)) throw new LangneuronsError('E_OPTIONS', `--metric: no result has '${metric}' (they have: ${have()})`, { field: 'metric' });
  const cell = new Map<string, ResultRecord>();
  for (const r of sel) {
    const k = `${r.keys[o.rows]}\u0000${r.keys[o.cols]}`;
    const prev = cell.get(k);
    if (prev) {
      const differ = PIVOT_KEYS.filter((x) => x !== o.rows && x !== o.cols && prev.keys[x] !== r.keys[x]);
      const how = differ.map((x) => `${x} ${prev.keys[x] || "''"} / ${r.keys[x] || "''"}`).join(', ');
      const narrow = differ.length ? `narrow with --where (e.g. ${differ[0]}=${r.keys[differ[0]!]}) or make ${differ[0]} the --rows or --cols` : 'they are the same evaluation twice: keep one of the files';
      throw new LangneuronsError('E_INPUT', `${r.file}: a second result for ${o.rows}=${r.keys[o.rows]}, ${o.cols}=${r.keys[o.cols]} (first: ${prev.file}; they differ in ${how || 'nothing'}); ${narrow}`, { file: r.file });
    }
    cell.set(k, r);
  }
  const rows = [...new Set(sel.map((r) => r.keys[o.rows]))].sort();
  let cols = [...new Set(sel.map((r) => r.keys[o.cols]))].sort();
  if (o.baseline !== undefined) {
    if (!cols.includes(o.baseline)) throw new LangneuronsError('E_OPTIONS', `--baseline: no results with ${o.cols}=${o.baseline} (there are: ${cols.join(', ')})`, { field: 'baseline' });
    cols = [o.baseline, ...cols.filter((c) => c !== o.baseline)];
  }
  const values = rows.map((r) => cols.map((c) => cell.get(`${r}\u0000${c}`)?.metrics[metric] ?? null));
  const delta = o.baseline === undefined ? null : values.map((row) => row.map((v) => (v === null || row[0] === null ? null : v - row[0]!)));
  const low = (o.lowResource ?? []).filter((l) => rows.includes(l));
  const lowIdx = rows.map((r, i) => (low.includes(r) ? i : -1)).filter((i) => i >= 0);
  const colMean = (m: (number | null)[][], idx: number[]) => cols.map((_, j) => mean(idx.map((i) => m[i]![j]!)));
  const allIdx = rows.map((_, i) => i);
  const fixed: Partial<Record<PivotKey, string>> = {};
  for (const k of PIVOT_KEYS) {
    if (k === o.rows || k === o.cols) continue;
    const vs = new Set(sel.map((r) => r.keys[k]));
    if (vs.size === 1 && [...vs][0] !== '') fixed[k] = [...vs][0]!; // ('' = not recorded)
  }
  return {
    metric, rowKey: o.rows, colKey: o.cols, rows, cols, values, baseline: o.baseline ?? null, delta, lowResource: low,
    mean: {
      all: colMean(values, allIdx), lowResource: low.length ? colMean(values, lowIdx) : null,
      deltaAll: delta ? colMean(delta, allIdx) : null, deltaLowResource: delta && low.length ? colMean(delta, lowIdx) : null,
    },
    fixed, results: sel.length,
  };
}

export function parsePivotKey(name: string, v: string): PivotKey {
  if (!(PIVOT_KEYS as readonly string[]).includes(v))
    throw new LangneuronsError('E_OPTIONS', `${name}: unknown key '${v}' (keys: ${PIVOT_KEYS.join(', ')})`, { field: name });
  return v as PivotKey;
}

/** `task=xcopa,model=m` → { task: 'xcopa', model: 'm' }. */
export function parseWhere(s: string | undefined): Partial<Record<PivotKey, string>> {
  const out: Partial<Record<PivotKey, string>> = {};
  for (const part of (s ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new LangneuronsError('E_OPTIONS', `--where: expected key=value, got '${part}'`, { field: '--where' });
    out[parsePivotKey('--where', part.slice(0, eq))] = part.slice(eq + 1);
  }
  return out;
}
