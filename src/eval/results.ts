// `results table`: reads the result JSONs of a folder and lays them out by the chosen keys (task, lang, variant,
// prompt, model), one column per metric; text, CSV or JSON. Reads only the files, so a table is reproducible.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { canonicalLang } from './prompts.js';
import { READABLE_SCHEMAS, type EvalResult } from './run.js';

export const TABLE_KEYS = ['task', 'lang', 'variant', 'prompt', 'model'] as const;
export type TableKey = typeof TABLE_KEYS[number];

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

export interface Table { columns: string[]; rows: (string | number)[][] }

export function keyValue(r: EvalResult, k: TableKey): string {
  if (k === 'variant') return r.variant.name;
  if (k === 'lang') return canonicalLang(r.lang); // en, English, eng_Latn and MMMLU's EN-US are one language
  return String(r[k]);
}

/** The default row keys: task, lang and variant, and the prompt where results would otherwise share a row's keys
 *  (Belebele `generate` and `lm-eval` of one language and variant would look like one result twice). */
export function defaultBy(results: EvalResult[]): TableKey[] {
  const by: TableKey[] = ['task', 'lang', 'variant'];
  const promptOf = new Map<string, string>();
  for (const r of results) {
    const k = by.map((x) => keyValue(r, x)).join('\u0000');
    const p = promptOf.get(k);
    if (p !== undefined && p !== String(r.prompt)) return [...by, 'prompt'];
    promptOf.set(k, String(r.prompt));
  }
  return by;
}

export function buildTable(results: EvalResult[], by: TableKey[]): Table {
  const metrics = [...new Set(results.flatMap((r) => Object.keys(r.metrics).filter((m) => typeof r.metrics[m] === 'number')))].sort();
  const rows = results.map((r) => [...by.map((k) => keyValue(r, k)), r.items, ...metrics.map((m) => (typeof r.metrics[m] === 'number' ? r.metrics[m] as number : ''))]);
  rows.sort((a, b) => { for (let i = 0; i < by.length; i++) { const c = String(a[i]).localeCompare(String(b[i])); if (c) return c; } return 0; });
  return { columns: [...by, 'items', ...metrics], rows };
}

const fmt = (v: string | number): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v);

export function tableText(t: Table): string {
  const cells = [t.columns, ...t.rows.map((r) => r.map(fmt))];
  const w = t.columns.map((_, j) => Math.max(...cells.map((r) => String(r[j] ?? '').length)));
  return cells.map((r) => r.map((c, j) => String(c).padEnd(w[j]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export function tableCsv(t: Table): string {
  const q = (v: string | number) => { const s = typeof v === 'number' ? String(v) : v; return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s; };
  return [t.columns, ...t.rows].map((r) => r.map(q).join(',')).join('\n') + '\n';
}

export function parseBy(s: string): TableKey[] {
  const keys = s.split(',').map((x) => x.trim()).filter(Boolean);
  for (const k of keys) if (!(TABLE_KEYS as readonly string[]).includes(k))
    throw new LangneuronsError('E_OPTIONS', `--by: unknown key '${k}' (keys: ${TABLE_KEYS.join(', ')})`, { field: 'by' });
  return keys as TableKey[];
}
