// The demo's output folder: written only when it is missing, empty, or a folder an earlier demo wrote (its marker
// `.langneurons-demo.json`, or, for folders of versions before the marker, step records in `steps/`). Any other
// folder (a user's files, a model, another command's outputs) is refused before anything is written, because a
// rerun replaces the demo's files in it (report.html, ppl-matrix.csv, finetune/<method>/ …).
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { LOCK_FILE } from '../io/lock.js';
import { STEP_FORMAT } from './steps.js';

export const DEMO_FOLDER_MARKER = '.langneurons-demo.json';
export const DEMO_FOLDER_FORMAT = 'langneurons-demo-folder/1';

function jsonFormat(file: string): unknown {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown } | null)?.format;
  } catch {
    return undefined;
  }
}

async function writtenByDemo(dir: string): Promise<boolean> {
  if (jsonFormat(path.join(dir, DEMO_FOLDER_MARKER)) === DEMO_FOLDER_FORMAT) return true;
  const steps = path.join(dir, 'steps');
  const records = await fsp.readdir(steps).catch(() => [] as string[]);
  return records.some((n) => n.endsWith('.json') && jsonFormat(path.join(steps, n)) === STEP_FORMAT);
}

/** Refuses `dir` unless the demo may write it (see above); changes nothing. */
export async function checkDemoFolder(dir: string): Promise<void> {
  const st = await fsp.stat(dir).catch(() => null);
  if (st === null) return;
  if (!st.isDirectory()) throw new LangneuronsError('E_EXISTS', `--out ${dir}: is a file, not a folder; choose another --out`, { file: dir, field: '--out' });
  const entries = (await fsp.readdir(dir)).filter((n) => n !== LOCK_FILE).sort();
  if (entries.length === 0 || (await writtenByDemo(dir))) return;
  const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '');
  throw new LangneuronsError('E_EXISTS', `--out ${dir}: holds files the demo did not write (${shown}); choose an empty or new folder, or one an earlier demo wrote`, { file: dir, field: '--out' });
}

/** Marks `dir` (checked, and locked by this run) as the demo's, so that a rerun after a failure may use it. */
export async function markDemoFolder(dir: string, modelDir: string): Promise<void> {
  const marker = path.join(dir, DEMO_FOLDER_MARKER);
  if (jsonFormat(marker) === DEMO_FOLDER_FORMAT) return;
  await writeFileAtomic(marker, JSON.stringify({ format: DEMO_FOLDER_FORMAT, model: path.resolve(modelDir), created: new Date().toISOString() }) + '\n');
}
