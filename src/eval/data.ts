// Local evaluation datasets in their Hugging Face layouts. Nothing is downloaded: every file is read from the
// folder the user names. Layouts and column names (sources in brackets):
//   FLORES-200  facebook/flores: flores200_dataset/{dev,devtest}/<code>.{dev,devtest}, one sentence a line;
//               openlanguagedata/flores_plus parquet: {dev,devtest}/<code>.parquet, column `text`;
//               the hub's parquet conversion of facebook/flores: <code>/<split>-*.parquet, column `sentence`.
//   Belebele    facebook/belebele: data/<code>.jsonl (or <code>/test-*.parquet); columns flores_passage,
//               question, mc_answer1..mc_answer4, correct_answer_num ("1".."4") [dataset card].
//   XNLI        facebook/xnli: <lang>/{test,validation,train}-*.parquet; premise, hypothesis, label
//               (0 entailment, 1 neutral, 2 contradiction) [dataset card; lm-eval tasks/xnli].
//   XQuAD       google/xquad: xquad.<lang>/validation-*.parquet; id, context, question,
//               answers{text[], answer_start[]} [dataset card].
//   XCOPA       cambridgeltl/xcopa: <lang>/{test,validation}-*.parquet; premise, choice1, choice2,
//               question ("cause"/"effect"), label (0/1) [dataset card; lm-eval tasks/xcopa/utils.py].
//   XWinograd   Muennighoff/xwinograd: <lang>/test-*.parquet or data/<lang>/test.jsonl; sentence (with one "_"),
//               option1, option2, answer ("1"/"2") [lm-eval tasks/xwinograd/utils.py].
//   INCLUDE     CohereForAI/include-base-44: <Language>/test-*.parquet; question, option_a..option_d,
//               answer (0-3) [hub file tree; the same option_a..d layout as CohereForAI/Global-MMLU-Lite in lm-eval].
//   MMLU        cais/mmlu: <subject or all>/test-*.parquet; question, choices[4], answer (0-3) [dataset card];
//               openai/MMMLU (MMLU translated to 14 languages): test/mmlu_<LANG>_<REGION>.csv; Question, A, B, C,
//               D, Answer ("A".."D"), Subject [dataset card] (select it with --langs de_de, sw_ke, ...).
// Multiple-choice readers also accept `choices` for INCLUDE and option_a..d for MMLU (Global-MMLU), and a letter
// answer ("A".."D").
import { checkedStringParsers, readTextFile, Utf8Check } from '../io/text.js';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet';

import { LangneuronsError, describeError } from '../errors.js';
import { parquetCompressors, unreadableCodec } from '../io/parquet.js';
import { parseCsv } from './csv.js';

export type Row = Record<string, unknown>;

function fail(file: string, message: string, field?: string): never {
  throw new LangneuronsError('E_DATA', `${file}: ${message}`, { file, ...(field ? { field } : {}) });
}

/** Parquet int64 comes back as bigint; JSON-ify it as numbers. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    const o: Row = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}

/** Every row of a JSONL, CSV or Parquet file, or every line of a text file (as { text }). */
export async function readRows(file: string): Promise<Row[]> {
  const ext = path.extname(file).toLowerCase();
  let rows: Row[] = [];
  if (ext === '.parquet') {
    const utf8 = new Utf8Check(); // the strings hyparquet decodes: checked as text files are
    let buf: AsyncBuffer, metadata: FileMetaData;
    try {
      buf = await asyncBufferFromFile(file);
      metadata = await parquetMetadataAsync(buf);
    } catch (e) {
      fail(file, `cannot read the Parquet file: ${describeError(e)}`);
    }
    // Every column is read: one compressed with a codec no decoder reads is named (from the footer) before any row.
    const codec = unreadableCodec(metadata);
    if (codec !== null) fail(file, codec);
    try {
      rows = (await parquetReadObjects({ file: buf, metadata, parsers: checkedStringParsers(utf8), compressors: await parquetCompressors(metadata) })).map((r) => plain(r) as Row);
    } catch (e) {
      fail(file, `cannot read the Parquet file: ${describeError(e)}`);
    }
    utf8.refuseBinary(file, true, 'string columns');
    utf8.warnReplaced(file, 'string columns');
  } else {
    let text: string;
    text = await readTextFile(file, 'data');
    const lines = ext === '.csv' ? [] : text.split(/\r?\n/);
    const whole = ext === '.json' ? wholeJsonRows(file, text) : null;
    if (whole) rows = whole;
    else if (ext === '.csv') {
      try { rows = parseCsv(text); } catch (e) { fail(file, `not a valid CSV file: ${describeError(e)}`); }
    } else if (ext === '.tsv') {
      rows = tsvRows(file, lines);
    } else if (ext === '.jsonl' || ext === '.json') {
      lines.forEach((line, i) => {
        if (!line.trim()) return;
        let v: unknown;
        try { v = JSON.parse(line); } catch (e) { fail(file, `line ${i + 1} is not valid JSON (${describeError(e)})`); }
        if (!v || typeof v !== 'object' || Array.isArray(v)) fail(file, `line ${i + 1} is not a JSON object`);
        rows.push(v as Row);
      });
    } else {
      if (lines.length && lines[lines.length - 1] === '') lines.pop();
      rows = lines.map((text) => ({ text }));
    }
  }
  if (!rows.length) fail(file, 'the file has no rows (empty dataset file)');
  return rows;
}

/**
 * A .json file that is one JSON document: a SQuAD-format file (google-deepmind/xquad's xquad.<lang>.json:
 * {data: [{title, paragraphs: [{context, qas: [{id, question, answers: [{text, answer_start}]}]}]}]}) flattened
 * into the hub's rows (id, context, question, answers{text[], answer_start[]}), or an array of objects.
 * Null when the text is not one JSON value (then it is read as JSON Lines).
 */
function wholeJsonRows(file: string, text: string): Row[] | null {
  let v: unknown;
  try { v = JSON.parse(text); } catch { return null; }
  if (Array.isArray(v)) {
    v.forEach((r, i) => { if (!r || typeof r !== 'object' || Array.isArray(r)) fail(file, `element ${i} is not a JSON object`); });
    return v as Row[];
  }
  const data = (v as { data?: unknown })?.data;
  if (!Array.isArray(data)) return null; // one object: a one-line JSON Lines file
  const rows: Row[] = [];
  data.forEach((article: { title?: unknown; paragraphs?: unknown }, a) => {
    if (!Array.isArray(article?.paragraphs)) fail(file, `data[${a}] has no "paragraphs" list (expected the SQuAD format)`, 'paragraphs');
    (article.paragraphs as { context?: unknown; qas?: unknown }[]).forEach((p, k) => {
      if (typeof p?.context !== 'string' || !Array.isArray(p.qas)) fail(file, `data[${a}].paragraphs[${k}] needs "context" (a string) and "qas" (a list)`, 'qas');
      for (const q of p.qas as { id?: unknown; question?: unknown; answers?: { text?: unknown; answer_start?: unknown }[] }[]) {
        if (!Array.isArray(q?.answers)) fail(file, `data[${a}].paragraphs[${k}]: question ${JSON.stringify(q?.id)} has no "answers" list`, 'answers');
        rows.push({ id: q.id, title: article.title, context: p.context, question: q.question,
          answers: { text: q.answers.map((x) => x.text), answer_start: q.answers.map((x) => x.answer_start) } });
      }
    });
  });
  return rows;
}

/** Tab-separated values as the XNLI-1.0 release writes them: a header line, no quoting (a " is a character). */
function tsvRows(file: string, lines: string[]): Row[] {
  const body = lines.filter((l) => l.length > 0);
  if (!body.length) return [];
  const header = body[0]!.split('\t');
  return body.slice(1).map((line, n) => {
    const cells = line.split('\t');
    if (cells.length !== header.length) fail(file, `line ${n + 2} has ${cells.length} tab-separated fields, the header has ${header.length}`);
    return Object.fromEntries(header.map((h, k) => [h, cells[k]!]));
  });
}

/** Throws naming the file, the missing columns and the columns there are. */
export function requireColumns(file: string, rows: Row[], columns: string[], dataset: string): void {
  const have = Object.keys(rows[0] ?? {});
  const missing = columns.filter((c) => !have.includes(c));
  if (missing.length)
    fail(file, `not a ${dataset} file: missing column(s) ${missing.join(', ')}; expected ${columns.join(', ')}; found ${have.join(', ') || 'none'}`, missing[0]);
}

export function str(file: string, row: Row, i: number, col: string): string {
  const v = row[col];
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  fail(file, `row ${i}: column "${col}" is ${v === null ? 'null' : typeof v}, expected a string`, col);
}

export interface DataFile { path: string; sha256: string; bytes: number }

export async function fingerprint(file: string): Promise<DataFile> {
  const data = await fsp.readFile(file);
  return { path: file, sha256: createHash('sha256').update(data).digest('hex'), bytes: data.byteLength };
}

const DATA_EXT = ['.jsonl', '.parquet', '.json', '.csv', '.tsv'];

function isFile(p: string): boolean { try { return statSync(p).isFile(); } catch { return false; } }
function isDir(p: string): boolean { try { return statSync(p).isDirectory(); } catch { return false; } }

/** Shards of a split in a config folder: <dir>/<split>-00000-of-00001.parquet, <dir>/<split>.jsonl, ... */
function splitFiles(dir: string, split: string): string[] {
  if (!isDir(dir)) return [];
  const names = readdirSync(dir).sort();
  const direct = names.filter((n) => DATA_EXT.some((e) => n === `${split}${e}`));
  if (direct.length) return direct.map((n) => path.join(dir, n));
  const shards = names.filter((n) => n.startsWith(`${split}-`) && DATA_EXT.includes(path.extname(n)));
  if (shards.length) return shards.map((n) => path.join(dir, n));
  // lm-eval / original repos: data/<lang>/test.<lang>.jsonl
  return names.filter((n) => n.startsWith(`${split}.`) && DATA_EXT.includes(path.extname(n))).map((n) => path.join(dir, n));
}

export interface Located { files: string[]; tried: string[] }

/**
 * Files of one language (config) of a dataset folder. Tries the places that name the split first, for each
 * candidate name: <dir>/<split>/<name>.<ext>, FLORES' <dir>/flores200_dataset/<split>/<name>.<split>,
 * <dir>/<name>/<split>*, <dir>/data/<name>/<split>*, <dir>/<prefix><name>/<split>*; then the flat layouts that name
 * none, <dir>/<name>.<ext> and <dir>/data/<name>.<ext> (a flat file beside split folders was taken for every split).
 */
export function locate(dir: string, names: string[], split: string, opts: { prefixes?: string[]; textExt?: boolean } = {}): Located {
  const tried: string[] = [];
  const exts = [...DATA_EXT, ...(opts.textExt ? [`.${split}`, '.txt'] : [])];
  const fileIn = (bases: string[], name: string) => {
    for (const base of bases) {
      const cands = exts.map((e) => path.join(base, `${name}${e}`));
      tried.push(...cands);
      const hit = cands.find(isFile);
      if (hit) return hit;
    }
    return undefined;
  };
  for (const name of names) {
    const hit = fileIn([path.join(dir, split), path.join(dir, 'flores200_dataset', split)], name);
    if (hit) return { files: [hit], tried };
    for (const p of ['', ...(opts.prefixes ?? [])]) {
      for (const base of [dir, path.join(dir, 'data')]) {
        const sub = path.join(base, `${p}${name}`);
        tried.push(path.join(sub, `${split}*`));
        const fs = splitFiles(sub, split);
        if (fs.length) return { files: fs, tried };
      }
    }
  }
  for (const name of names) {
    const hit = fileIn([dir, path.join(dir, 'data')], name);
    if (hit) return { files: [hit], tried };
  }
  return { files: [], tried };
}

/** Language / config names found in a dataset folder (for --langs all and for error messages). */
export function listConfigs(dir: string, split: string, prefixes: string[] = []): string[] {
  const out = new Set<string>();
  const strip = (n: string) => { for (const p of prefixes) if (n.startsWith(p)) return n.slice(p.length); return n; };
  for (const base of [dir, path.join(dir, 'data'), path.join(dir, split), path.join(dir, 'flores200_dataset', split)]) {
    if (!isDir(base)) continue;
    for (const n of readdirSync(base)) {
      const full = path.join(base, n);
      if (isDir(full)) { if (splitFiles(full, split).length) out.add(strip(n)); continue; }
      const ext = path.extname(n);
      // (a .tsv holds every language: XNLI-1.0's xnli.dev.tsv is read by the task, not listed as a language)
      if ([...DATA_EXT, `.${split}`, '.txt'].includes(ext) && ext !== '.tsv' && !n.startsWith(`${split}`)) out.add(strip(n.slice(0, -ext.length)));
    }
  }
  return [...out].sort();
}

export function requireDir(dir: string, what: string): void {
  if (!existsSync(dir) || !isDir(dir)) throw new LangneuronsError('E_DATA', `${dir}: ${what} folder not found`, { file: dir });
}
