// `results table`: reads the result JSONs of a folder and lays them out by the chosen keys (task, lang, variant,
// prompt, model), one column per metric; text, CSV or JSON. Reads only the files, so a table is reproducible.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { canonicalLang } from './prompts.js';
import { READABLE_SCHEMAS, type EvalResult } from './run.js';

/** What tells results apart: what was evaluated (task, lang, variant, prompt, model), then the settings that give a
 *  result of its own (docs/EVAL.md): the data files, split, --limit, flores' BLEU tokenizer, --max-gen-toks, the
 *  compute mode and the device. `results table` and `results pivot` lay results out and filter them by these. */
export const RESULT_KEYS = ['task', 'lang', 'variant', 'prompt', 'model', 'data', 'split', 'limit', 'tokenize', 'max-gen-toks', 'compute', 'device'] as const;
export type ResultKeyName = typeof RESULT_KEYS[number];
export const TABLE_KEYS = RESULT_KEYS;
export type TableKey = ResultKeyName;

/** The keys' values of a result file's JSON, read tolerantly (fields that older results lack are ''); null when a
 *  required field (task, lang, variant name) is missing or not a string. The language is the canonical one: en,
 *  English, eng_Latn and MMMLU's EN-US are one language. */
export function resultKeyValues(r: Record<string, unknown>): Record<ResultKeyName, string> | { missing: string; want: string } {
  const text = (k: string): string | undefined => (typeof r[k] === 'string' ? r[k] as string : undefined);
  const v = r['variant'];
  const variant = typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { name?: unknown }).name === 'string' ? (v as { name: string }).name : undefined;
  if (variant === undefined) return { missing: 'variant', want: 'a name or an object with a string "name"' };
  for (const k of ['task', 'lang']) if (text(k) === undefined) return { missing: k, want: 'a string' };
  for (const k of ['prompt', 'model']) if (r[k] !== undefined && text(k) === undefined) return { missing: k, want: 'a string' };
  const obj = (k: string): Record<string, unknown> => (r[k] && typeof r[k] === 'object' ? r[k] as Record<string, unknown> : {});
  const data = Array.isArray(r['data']) ? (r['data'] as { path?: unknown }[]).map((d) => (typeof d?.path === 'string' ? d.path : '')).join(' ') : '';
  const limit = r['limit'] === null ? 'all' : typeof r['limit'] === 'number' ? String(r['limit']) : '';
  const signature = obj('metrics')['bleu_signature'];
  const tokenize = typeof signature === 'string' ? /(?:^|\|)tok:([^|]*)/.exec(signature)?.[1] ?? '' : '';
  const maxNew = obj('generation')['maxNewTokens'];
  const compute = obj('compute');
  return {
    task: text('task')!, lang: canonicalLang(text('lang')!), variant, prompt: text('prompt') ?? '', model: text('model') ?? '', data,
    split: text('split') ?? '', limit, tokenize, 'max-gen-toks': typeof maxNew === 'number' ? String(maxNew) : '',
    compute: typeof compute['mode'] === 'string' ? compute['mode'] : '', device: typeof compute['device'] === 'string' ? compute['device'] : '',
  };
}

/** The extra keys, in the order `results table` adds them where results would otherwise share a row. */
const DISTINGUISHING: ResultKeyName[] = ['prompt', 'model', 'data', 'split', 'limit', 'tokenize', 'max-gen-toks', 'compute', 'device'];

/** The keys (after `by`) that tell apart results sharing `by`'s values (each result as its key values): for each
 *  group of results that share them, the first key of DISTINGUISHING whose values differ in it is added, until no
 *  group is left or no key differs. */
function distinguishingKeys(results: Record<ResultKeyName, string>[], by: ResultKeyName[]): ResultKeyName[] {
  const keys = [...by];
  for (;;) {
    const groups = new Map<string, Record<ResultKeyName, string>[]>();
    for (const r of results) {
      const k = keys.map((key) => r[key]).join('\u0000');
      groups.set(k, [...(groups.get(k) ?? []), r]);
    }
    const shared = [...groups.values()].filter((g) => g.length > 1);
    const next = DISTINGUISHING.find((key) => !keys.includes(key) && shared.some((g) => new Set(g.map((r) => r[key])).size > 1));
    if (!next) return keys;
    keys.push(next);
  }
}

/** Every result JSON under `dir`, sub-folders included (item checkpoints and other JSON files are skipped). */
export async function readResults(dir: string): Promise<EvalResult[]> {
  let names: string[];
  try {
    // some Node versions' recursive readdir answers [] for a missing folder: ask first
    if (!(await fsp.stat(dir)).isDirectory()) throw new Error('not a folder');
    names = (await fsp.readdir(dir, { recursive: true })).filter((n) => n.endsWith('.json')).sort();
  } catch (e) {
    throw new LangneuronsError('E_IO', `${dir}: cannot read the results folder: ${describeError(e)}`, { file: dir });
  }
  const out: EvalResult[] = [];
  for (const n of names) {
    const file = path.join(dir, n);
    let v: unknown;
    try { v = JSON.parse(await fsp.readFile(file, 'utf8')); } catch (e) {
      throw new LangneuronsError('E_DATA', `${file}: not a JSON result file: ${describeError(e)}`, { file });
    }
    if (READABLE_SCHEMAS.includes((v as EvalResult)?.schema)) out.push(v as EvalResult);
  }
  return out;
}

/** A missing metric is null (JSON) or an empty cell (text, CSV). */
export interface Table { columns: string[]; rows: (string | number | null)[][] }

/** A result's key values, read once per result ('' for all of a record without its required fields). */
function keysOf(r: EvalResult): Record<ResultKeyName, string> {
  const v = resultKeyValues(r as unknown as Record<string, unknown>);
  return 'missing' in v ? Object.fromEntries(RESULT_KEYS.map((k) => [k, ''])) as Record<ResultKeyName, string> : v;
}

/** The default row keys: task, lang and variant, and where results would otherwise share a row, the keys that tell
 *  them apart (the prompt: Belebele `generate` and `lm-eval` of one language and variant; the model, the --limit,
 *  the BLEU tokenizer, ...: see DISTINGUISHING). */
export function defaultBy(results: EvalResult[]): TableKey[] {
  return distinguishingKeys(results.map(keysOf), ['task', 'lang', 'variant']);
}

/** The table of `results` with rows keyed by `by`; without it, by defaultBy(results): `results table`'s rows. */
export function buildTable(results: EvalResult[], by: TableKey[] = defaultBy(results)): Table {
  const metrics = [...new Set(results.flatMap((r) => Object.keys(r.metrics).filter((m) => typeof r.metrics[m] === 'number')))].sort();
  const rows = results.map((r) => {
    const keys = keysOf(r);
    return [...by.map((k) => keys[k]), r.items, ...metrics.map((m) => (typeof r.metrics[m] === 'number' ? r.metrics[m] as number : null))];
  });
  rows.sort((a, b) => { for (let i = 0; i < by.length; i++) { const c = String(a[i]).localeCompare(String(b[i])); if (c) return c; } return 0; });
  return { columns: [...by, 'items', ...metrics], rows };
}

const fmt = (v: string | number | null): string => (v === null ? '' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v);

export function tableText(t: Table): string {
  const cells = [t.columns, ...t.rows.map((r) => r.map(fmt))];
  const w = t.columns.map((_, j) => Math.max(...cells.map((r) => String(r[j] ?? '').length)));
  return cells.map((r) => r.map((c, j) => String(c).padEnd(w[j]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export function tableCsv(t: Table): string {
  const q = (v: string | number | null) => { const s = v === null ? '' : typeof v === 'number' ? String(v) : v; return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s; };
  return [t.columns, ...t.rows].map((r) => r.map(q).join(',')).join('\n') + '\n';
}

export function parseBy(s: string): TableKey[] {
  const keys = s.split(',').map((x) => x.trim()).filter(Boolean);
  for (const k of keys) if (!(TABLE_KEYS as readonly string[]).includes(k))
    throw new LangneuronsError('E_OPTIONS', `--by: unknown key '${k}' (keys: ${TABLE_KEYS.join(', ')})`, { field: 'by' });
  return keys as TableKey[];
}
