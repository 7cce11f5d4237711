// Document readers for one corpus file: plain text (a document per line), JSONL (a named field per
// line) and Parquet (a named column, read one row group at a time). All stream: memory depends on the
// chunk / row-group size, never on the file size.
//
// Shared rules: whitespace-only documents are skipped (they carry no tokens), and so are nulls in JSONL
// and Parquet (nullable text columns are common in Hugging Face datasets); any other non-string value is
// an error naming the file and the line or row.
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type FileMetaData, type SchemaTree } from 'hyparquet';
import { LangneuronsError, describeError } from '../errors.js';
import { parquetCompressors, unreadableCodec } from '../io/parquet.js';
import { checkedStringParsers, Utf8Check } from '../io/text.js';
import { readLines, type ReadCounter } from './lines.js';

export type FileFormat = 'txt' | 'jsonl' | 'parquet';
export const FORMAT_EXTENSIONS: Record<string, FileFormat> = { '.txt': 'txt', '.jsonl': 'jsonl', '.parquet': 'parquet' };

export interface ReadDocumentsOptions {
  /** JSONL field / Parquet column; a dotted path ("translation.de") reaches into objects / structs. */
  field: string;
  /** Observes the reads: chunks of text and JSONL files, row groups of Parquet files (tests, progress). */
  counter?: ReadCounter;
  chunkBytes?: number;
}

export function formatOf(file: string): FileFormat | null {
  return FORMAT_EXTENSIONS[path.extname(file).toLowerCase()] ?? null;
}

function fail(file: string, message: string, field?: string): never {
  throw new LangneuronsError('E_CORPUS', `${file}: ${message}`, { file, ...(field === undefined ? {} : { field }) });
}

const isBlank = (text: string): boolean => text.trim().length === 0;

/**
 * The value at `field` in a JSON object / Parquet row: an exact key first (names may contain dots), then
 * the dotted path. `found: false` when a key is missing.
 */
export function pickField(row: unknown, field: string): { found: boolean; value?: unknown } {
  if (typeof row !== 'object' || row === null) return { found: false };
  if (Object.hasOwn(row, field)) return { found: true, value: (row as Record<string, unknown>)[field] };
  if (!field.includes('.')) return { found: false };
  let value: unknown = row;
  for (const key of field.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, key)) return { found: false };
    value = (value as Record<string, unknown>)[key];
  }
  return { found: true, value };
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export async function* readTextDocuments(file: string, options: Partial<ReadDocumentsOptions> = {}): AsyncGenerator<string> {
  for await (const { text } of readLines(file, options)) if (!isBlank(text)) yield text;
}

export async function* readJsonlDocuments(file: string, options: ReadDocumentsOptions): AsyncGenerator<string> {
  const { field } = options;
  for await (const { text, lineNumber } of readLines(file, options)) {
    if (isBlank(text)) continue;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (err) {
      fail(file, `line ${lineNumber} is not valid JSON (${describeError(err)})`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) fail(file, `line ${lineNumber} is ${describeValue(row)}, expected a JSON object`);
    const { found, value } = pickField(row, field);
    if (!found) fail(file, `line ${lineNumber} has no field "${field}" (fields: ${Object.keys(row).join(', ') || 'none'})`, field);
    if (value === null) continue;
    if (typeof value !== 'string') fail(file, `line ${lineNumber}: field "${field}" is ${describeValue(value)}, expected a string`, field);
    if (!isBlank(value)) yield value;
  }
}

/** Column names a user can ask for: top-level columns, plus `struct.child` for struct columns. */
function columnNames(schema: SchemaTree): string[] {
  const names: string[] = [];
  for (const child of schema.children) {
    names.push(child.element.name);
    for (const grandchild of child.children) {
      // A struct's children are fields; a LIST's single child is the repeated group, not a field.
      if (child.element.converted_type !== 'LIST' && child.element.converted_type !== 'MAP') names.push(`${child.element.name}.${grandchild.element.name}`);
    }
  }
  return names;
}

interface ParquetPlan {
  metadata: FileMetaData;
  /** Top-level column to read; `field` is then picked from the row object. */
  column: string;
}

/**
 * Reads the footer and resolves the column, or throws listing the columns there are, or naming a codec the column is
 * compressed with that no decoder reads (corpora are opened, and this checked, before any profiling).
 */
export async function planParquet(file: string, field: string): Promise<ParquetPlan> {
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(await asyncBufferFromFile(file));
  } catch (err) {
    fail(file, `cannot read the Parquet footer: ${describeError(err)}`);
  }
  const schema = parquetSchema(metadata);
  const tops = schema.children.map((c) => c.element.name);
  // An exact top-level name wins (names may contain dots); otherwise the first segment of a dotted path
  // must be a column, whose rows are then objects (structs) to walk.
  const column = tops.includes(field) ? field : field.split('.')[0]!;
  const node = schema.children.find((c) => c.element.name === column);
  const walkable = column === field || (node !== undefined && node.children.length > 0);
  if (node === undefined || !walkable) fail(file, `no column "${field}"; available columns: ${columnNames(schema).join(', ')}`, field);
  if (metadata.num_rows === 0n) fail(file, 'the Parquet file has no rows');
  const codec = unreadableCodec(metadata, [column]);
  if (codec !== null) fail(file, codec);
  return { metadata, column };
}

/** Counts the bytes hyparquet actually fetches (the streaming tests check it fetches row group by row group). */
function countingBuffer(inner: AsyncBuffer, counter: ReadCounter | undefined): AsyncBuffer {
  if (!counter) return inner;
  return {
    byteLength: inner.byteLength,
    slice(start, end) {
      counter.bytes += (end ?? inner.byteLength) - start;
      return inner.slice(start, end);
    },
  };
}

export async function* readParquetDocuments(file: string, options: ReadDocumentsOptions): AsyncGenerator<string> {
  const { field } = options;
  const { metadata, column } = await planParquet(file, field);
  const buffer = countingBuffer(await asyncBufferFromFile(file), options.counter);
  // Invalid UTF-8 in the column's strings: one warning with the count (also when the reader stops early); a column
  // that is mostly not text is refused at its first row group.
  const utf8 = new Utf8Check(), strings = `column "${column}"`;
  const parsers = checkedStringParsers(utf8);
  let rowStart = 0;
  try {
    for (const group of metadata.row_groups) {
      const rowEnd = rowStart + Number(group.num_rows);
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, columns: [column], rowStart, rowEnd, parsers, compressors: await parquetCompressors(metadata) });
        if (options.counter) options.counter.chunks++;
      } catch (err) {
        // Codecs were checked when the file was opened: this is a damaged page or an encoding hyparquet lacks.
        fail(file, `cannot read rows ${rowStart}-${rowEnd - 1}: ${describeError(err)}`);
      }
      utf8.refuseBinary(file, false, strings);
      for (let i = 0; i < rows.length; i++) {
        const { found, value } = pickField(rows[i], field);
        if (!found || value === null || value === undefined) continue;
        if (typeof value !== 'string') fail(file, `row ${rowStart + i}: column "${field}" is ${describeValue(value)}, expected a string`, field);
        if (!isBlank(value)) yield value;
      }
      rowStart = rowEnd;
    }
    utf8.refuseBinary(file, true, strings);
  } finally {
    utf8.warnReplaced(file, strings);
  }
}

export function readDocuments(file: string, format: FileFormat, options: ReadDocumentsOptions): AsyncGenerator<string> {
  switch (format) {
    case 'txt':
      return readTextDocuments(file, options);
    case 'jsonl':
      return readJsonlDocuments(file, options);
    case 'parquet':
      return readParquetDocuments(file, options);
  }
}
