// What a `sweep run` reports at the end, for either executor.
import { existsSync, readFileSync } from 'node:fs';

export interface FailedStep { id: string; attempts: number; log: string; tail: string[] }

export interface RunSummary {
  executor: 'local' | 'slurm';
  done: string[];
  /** Done before this run. */
  skipped: string[];
  failed: FailedStep[];
  /** Not run: a step they need failed. */
  blocked: string[];
  /** --dry-run: the scripts written. */
  scripts?: string[];
}

/** The last lines of a log (the lines a failure is reported with). */
export function logTail(file: string, lines = 8): string[] {
  if (!existsSync(file)) return [`(no log at ${file})`];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).slice(-lines);
}
