// Taking a fine-tuning run folder: the output lock (one run per folder), leftovers of crashed writers removed,
// and the rules for what a new run may take over (src/io/lock.ts, docs/RELIABILITY.md).
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { removeOrphanTemps } from '../io/atomic.js';
import { copyFileAtomic } from '../io/files.js';
import { acquireOutputLock, LOCK_FILE, type OutputLock } from '../io/lock.js';
import { ensureOutputDir } from '../io/outdir.js';
import { hasSavedState } from './state.js';

/** run.json's format (finetune.ts RUN_FORMAT; here to keep this module below it). */
export const FINETUNE_RUN_FORMAT = 'langneurons-finetune/1';

/**
 * Locks runDir for `command`. A new run (resume false) is refused when the folder holds a run with a save, or
 * files that are not a run's; a run folder without a save (killed or failed before its first) is taken over,
 * its earlier outputs removed.
 */
export async function claimRunDir(runDir: string, command: string, o: { resume?: boolean } = {}): Promise<OutputLock> {
  const lock = await acquireOutputLock(runDir, command);
  try {
    await removeOrphanTemps(runDir, true);
    if (!o.resume) {
      const names = (await fsp.readdir(runDir)).filter((n) => n !== LOCK_FILE);
      if (names.includes('run.json')) {
        // Only a run.json that fine-tuning wrote makes the folder a run (a user's, or generate --out's, does not).
        const format = await fsp.readFile(path.join(runDir, 'run.json'), 'utf8').then((t) => (JSON.parse(t) as { format?: unknown }).format, () => undefined);
        if (format !== FINETUNE_RUN_FORMAT)
          throw new LangneuronsError('E_OPTIONS', `${runDir}: holds a run.json that is not a fine-tuning run's (format ${JSON.stringify(format ?? null)}); choose an empty or new --out`, { file: runDir });
        if (await hasSavedState(path.join(runDir, 'state')))
          throw new LangneuronsError('E_OPTIONS', `${runDir}: already holds a run; continue it with --resume ${runDir} or choose another --out`, { file: runDir });
        // A run that never saved: nothing in it can be continued, so this run replaces it.
        for (const n of ['run.json', 'train.jsonl', 'state', 'best', 'delta.safetensors', 'delta.json', 'adapter', 'head', 'model'])
          await fsp.rm(path.join(runDir, n), { recursive: true, force: true });
      } else if (names.length > 0) {
        throw new LangneuronsError('E_OPTIONS',
          `${runDir}: is not empty and is not a fine-tuning run (holds ${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''}); choose an empty or new --out`, { file: runDir });
      }
    }
    return lock;
  } catch (e) {
    await lock.release();
    throw e;
  }
}

/**
 * The lines of train.jsonl to keep when resuming from the save at `step`: those of steps <= step. A torn last line
 * (a kill in the middle of an append) is dropped; a malformed line before it is an error naming the file and line.
 */
export async function keptLogLines(logFile: string, step: number): Promise<string[]> {
  const text = await fsp.readFile(logFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return '';
    throw new LangneuronsError('E_RESUME', `${logFile}: cannot read the training log: ${e.message}`, { file: logFile });
  });
  const lines = text.split('\n');
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.trim()) continue;
    let entry: { step?: unknown };
    try {
      entry = JSON.parse(line) as { step?: unknown };
    } catch {
      const last = lines.slice(i + 1).every((l) => !l.trim());
      if (last) break; // torn by a kill: written after the save, so it is written again
      throw new LangneuronsError('E_RESUME', `${logFile}: line ${i + 1} is not JSON (the log was edited or damaged)`, { file: logFile });
    }
    if (typeof entry.step !== 'number') throw new LangneuronsError('E_RESUME', `${logFile}: line ${i + 1} has no step`, { file: logFile });
    if (entry.step <= step) kept.push(line);
  }
  return kept;
}

/** Copies run files (relative paths) from one folder to another, streamed and atomically. */
export async function copyRunFiles(from: string, to: string, files: string[]): Promise<void> {
  for (const f of files) {
    await ensureOutputDir(path.dirname(path.join(to, f)));
    await copyFileAtomic(path.join(from, f), path.join(to, f));
  }
}
