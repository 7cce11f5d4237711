// Helpers for the corpus tests: small corpus files in temp dirs, the fixtures' byte-level tokenizer
// (one id per UTF-8 byte, id = byte + 3, BOS = 1) and collectors for async iterables.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { loadTokenizer, type LoadedTokenizer } from '../../src/model/tokenizer.js';
import { fixturePath } from './fixtures.js';

export const BOS = 1;

/** Ids the fixture tokenizer gives a text (without special tokens). */
export const byteIds = (text: string): number[] => [...Buffer.from(text, 'utf8')].map((b) => b + 3);

let tokenizer: Promise<LoadedTokenizer> | undefined;
export function byteTokenizer(): Promise<LoadedTokenizer> {
  return (tokenizer ??= loadTokenizer(fixturePath('tiny-llama3')));
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Writes files (relative path → content) under dir; returns dir. */
export async function writeFiles(dir: string, files: Record<string, string>): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fsp.writeFile(path.join(dir, name), content);
  }
  return dir;
}

/** A Parquet file with string columns (and optionally more), in row groups of rowGroupSize rows. */
export function writeParquet(file: string, columns: Record<string, (string | null)[]>, rowGroupSize = 1000): void {
  parquetWriteFile({
    filename: file,
    columnData: Object.entries(columns).map(([name, data]) => ({ name, data, type: 'STRING' as const })),
    rowGroupSize,
  });
}

export const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
