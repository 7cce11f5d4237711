/**
 * The log of a resumable run: a header line naming the run (a JSON object with its key), then one JSON line per
 * finished piece of work, each appended as it ends. A kill during an append leaves a line cut short after the last
 * newline; reading the log back cuts it off the file, so the next append starts on a line of its own.
 * (generate's generations.jsonl, eval's item checkpoints and the steering measures' partial results.)
 */
import { existsSync, promises as fsp } from 'node:fs';

import type { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

export interface RunLogOptions {
  /**
   * Whether a first line other than the header names this very run on another kind of engine (a CPU of another kernel
   * family, a GPU: products that differ in the last bits). Such a log is started again (its lines dropped: a resumed
   * run holds one engine's results, never a mix) and `dropped` is told how many lines went.
   */
  otherEngine?: (firstLine: string) => boolean;
  dropped?: (lines: number) => void;
}

/**
 * The complete lines after the header of the log `file` (empty ones left out), or null when there is no file.
 * A first line other than `header` is a file this run did not write: `notOurs(firstLine)` is thrown, and the file
 * is left as it is (unless `o.otherEngine` says it is this run's on another engine: then it starts again, empty).
 */
export async function readRunLog(file: string, header: string, notOurs: (firstLine: string) => LangneuronsError, o: RunLogOptions = {}): Promise<string[] | null> {
  if (!existsSync(file)) return null;
  const bytes = await fsp.readFile(file);
  const complete = bytes.lastIndexOf(0x0a) + 1; // bytes up to and including the last newline
  const lines = bytes.subarray(0, complete).toString('utf8').split('\n');
  if (lines[0] !== header && o.otherEngine?.(lines[0] ?? '')) {
    const dropped = lines.slice(1).filter((l) => l.length > 0).length;
    await startRunLog(file, header);
    o.dropped?.(dropped);
    return [];
  }
  if (lines[0] !== header) throw notOurs(lines[0] ?? '');
  if (complete < bytes.length) await fsp.truncate(file, complete);
  return lines.slice(1).filter((l) => l.length > 0);
}

/** Starts the log `file` with its header line (atomically: a log is never seen without its header). */
export async function startRunLog(file: string, header: string): Promise<void> {
  await writeFileAtomic(file, header + '\n');
}
