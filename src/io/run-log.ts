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
   * The header holds an `engine` field (the engine kind: a CPU kernel family, a GPU runtime): a first line equal to
   * the header but for it (or without one, from before it was recorded) is this very run on another kind of engine,
   * whose results differ in the last bits. Such a log is started again (a resumed run holds one engine's results,
   * never a mix), and `dropped` is told how many lines went and the engine they came from.
   */
  otherEngine?: { dropped: (lines: number, earlierEngine: string | null) => void };
}

/** The engine of `line` when it is the header `header` but for its engine field; undefined when it is not. */
function otherEngineOf(line: string, header: string): string | null | undefined {
  const fields = (text: string) => {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : null;
  };
  const rest = (o: Record<string, unknown>) => JSON.stringify(Object.keys(o).filter((k) => k !== 'engine').sort().map((k) => [k, o[k]]));
  try {
    const a = fields(line), b = fields(header);
    if (!a || !b || rest(a) !== rest(b) || a['engine'] === b['engine']) return undefined;
    return typeof a['engine'] === 'string' ? a['engine'] : null;
  } catch {
    return undefined;
  }
}

/**
 * The complete lines after the header of the log `file` (empty ones left out), or null when there is no file.
 * A first line other than `header` is a file this run did not write: `notOurs(firstLine)` is thrown, and the file
 * is left as it is (unless it is this run's on another engine, `o.otherEngine`: then it starts again, empty).
 */
export async function readRunLog(file: string, header: string, notOurs: (firstLine: string) => LangneuronsError, o: RunLogOptions = {}): Promise<string[] | null> {
  if (!existsSync(file)) return null;
  const bytes = await fsp.readFile(file);
  const complete = bytes.lastIndexOf(0x0a) + 1; // bytes up to and including the last newline
  const lines = bytes.subarray(0, complete).toString('utf8').split('\n');
  const earlier = lines[0] !== header && o.otherEngine ? otherEngineOf(lines[0] ?? '', header) : undefined;
  if (earlier !== undefined) {
    const dropped = lines.slice(1).filter((l) => l.length > 0).length;
    await startRunLog(file, header);
    o.otherEngine!.dropped(dropped, earlier);
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
