/**
 * Resuming a steering measure. Its engine work comes in units — a text scored under one intervention (ppl-matrix),
 * the prompts generated under one (forcing, fallback), a batch of log-likelihoods (lss) — asked for in an order
 * fixed by the inputs. Each finished unit is appended to `<out>.partial.jsonl` under the key of everything the result
 * depends on; the same command again takes the units found there and computes the rest, so a killed run resumes to
 * the result an uninterrupted one writes (the units' values are stored as computed: JSON keeps doubles exactly).
 * The file is removed once the result is written.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';

import { LangneuronsError } from '../errors.js';
import { appendToFile } from '../io/files.js';
import { readRunLog, startRunLog } from '../io/run-log.js';

export const STEER_PARTIAL_SCHEMA = 'langneurons-steer-partial/1';

export interface UnitLog {
  readonly file: string;
  /** Units taken from an earlier run's log. */
  readonly resumed: number;
  /** The value of the next unit: the logged one when an earlier run finished it (same position, same arguments), else `compute()`, logged. */
  unit<T>(args: unknown, compute: () => Promise<T>): Promise<T>;
  /** Removes the log (once the result is written). */
  remove(): Promise<void>;
}

/** `<out>.partial.jsonl`. */
export const partialFile = (out: string): string => `${out}.partial.jsonl`;

/** The key of a measure's run: sha256 of what its result depends on. */
export function steerRunKey(fields: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify({ schema: STEER_PARTIAL_SCHEMA, ...fields })).digest('hex');
}

const digest = (args: unknown) => createHash('sha256').update(JSON.stringify(args) ?? 'undefined').digest('hex').slice(0, 16);

/** The JSON of `value`, or null where JSON would not give it back as it is (NaN and ±Infinity become null, -0 becomes 0):
 *  such a unit is not logged. */
function exactJson(value: unknown): string | null {
  let exact = true;
  const text = JSON.stringify(value, (_k, v: unknown) => { if (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))) exact = false; return v; });
  return exact ? text : null;
}

/**
 * Opens the unit log of the measure writing `out` under `key`: the units an earlier run of the same key finished,
 * or a new log. A log of another key (the same --out with other inputs or settings) or a file that is not a log is
 * refused, not replaced.
 */
export async function openUnitLog(out: string, key: string): Promise<UnitLog> {
  const file = partialFile(out);
  const header = JSON.stringify({ schema: STEER_PARTIAL_SCHEMA, key });
  const lines = await readRunLog(file, header, (first) => {
    const other = (() => { try { return (JSON.parse(first) as { schema?: unknown }).schema === STEER_PARTIAL_SCHEMA; } catch { return false; } })();
    return new LangneuronsError('E_DATA', other
      ? `${file}: the partial result of a run with other inputs or settings (model, masks, prompts, options); run that command again to finish it, or remove the file to start this one`
      : `${file}: exists and is not a partial result of langneurons steer; move it away or choose another --out`, { file });
  });
  const done = new Map<string, unknown>();
  for (const line of lines ?? []) {
    try {
      const u = JSON.parse(line) as { unit?: unknown; value?: unknown };
      if (typeof u.unit === 'string') done.set(u.unit, u.value);
    } catch { /* a damaged line: that unit is computed again */ }
  }
  if (lines === null) await startRunLog(file, header);
  let next = 0;
  return {
    file,
    resumed: done.size,
    async unit<T>(args: unknown, compute: () => Promise<T>): Promise<T> {
      const id = `${next++}:${digest(args)}`;
      if (done.has(id)) return done.get(id) as T;
      const value = await compute();
      const text = exactJson(value);
      if (text !== null) await appendToFile(file, `{"unit":${JSON.stringify(id)},"value":${text}}\n`, { sync: true });
      return value;
    },
    async remove() { await fsp.rm(file, { force: true }); },
  };
}
