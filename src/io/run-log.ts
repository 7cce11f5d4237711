/**
 * The log of a resumable run: a header line naming the run (a JSON object with its key), then one JSON line per
 * finished piece of work, each appended as it ends. A kill during an append leaves a line cut short after the last
 * newline; reading the log back cuts it off the file, so the next append starts on a line of its own.
 * (generate's generations.jsonl, eval's item checkpoints and the steering measures' partial results.)
 */
import { existsSync, promises as fsp } from 'node:fs';

import type { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

/**
 * The complete lines after the header of the log `file` (empty ones left out), or null when there is no file.
 * A first line other than `header` is a file this run did not write: `notOurs(firstLine)` is thrown, and the file
 * is left as it is.
 */
export async function readRunLog(file: string, header: string, notOurs: (firstLine: string) => LangneuronsError): Promise<string[] | null> {
  if (!existsSync(file)) return null;
  const bytes = await fsp.readFile(file);
  const complete = bytes.lastIndexOf(0x0a) + 1; // bytes up to and including the last newline
  const lines = bytes.subarray(0, complete).toString('utf8').split('\n');
  if (lines[0] !== header) throw notOurs(lines[0] ?? '');
  if (complete < bytes.length) await fsp.truncate(file, complete);
  return lines.slice(1).filter((l) => l.length > 0);
}

/** Starts the log `file` with its header line (atomically: a log is never seen without its header). */
export async function startRunLog(file: string, header: string): Promise<void> {
  await writeFileAtomic(file, header + '\n');
}
