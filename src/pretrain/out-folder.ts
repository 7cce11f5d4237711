// What `train` may write over or delete: nothing that train did not make.
//
// --out: a missing or empty folder is written; a folder holding the model of this very command (its recipe.json
// records the same options: a rerun) is rewritten with the same result; another model made by train is replaced
// only with --force; anything else is refused, and so is a model folder holding files train does not write (the
// swap replaces the whole folder, so they would be deleted). Checked before hours of training and again just before
// the swap.
//
// --work (default <out>.work): a missing folder, or one holding only the files train writes there, is used; a run of
// other options in it is started over only with --force (train's own entries are removed, nothing else); a non-empty
// folder that is not a train work folder is refused. The two folders must not hold each other.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { LOCK_FILE } from '../io/lock.js';
import { canonicalPath } from '../io/outdir.js';

/** Every file of the model folder train writes (the staging folder renamed to --out holds exactly these). */
export const MODEL_FILES: readonly string[] = Object.freeze([
  'README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'recipe.json', 'tokenizer.json', 'tokenizer_config.json',
]);

/** Every entry train writes in its work folder (src/pretrain/train.ts), plan.json first. */
export const WORK_ENTRIES: readonly string[] = Object.freeze([
  'plan.json', 'train.txt', 'tokenizer', 'init', 'run', 'run.done.json', 'run.cpu.json',
]);

/** writeFileAtomic's temporary name of one of `names` (`<name>.tmp-<pid>-<hex>`), left by a kill. */
function isTempOf(name: string, names: readonly string[]): boolean {
  const m = /^(.*)\.tmp-\d+(?:-[0-9a-f]+)?$/.exec(name);
  return m !== null && names.includes(m[1]!);
}

const listed = (names: string[]) => `${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''}`;

export async function checkTrainOut(out: string, force: boolean, recipeFormat: string,
  samePlan: (options: Record<string, unknown>) => boolean = () => false): Promise<void> {
  const st = await fsp.lstat(out).catch(() => null);
  if (!st) return;
  if (!st.isDirectory()) throw new LangneuronsError('E_OPTIONS', `${out}: --out exists and is not a folder; choose another --out`, { file: out, field: 'out' });
  const names = await fsp.readdir(out);
  if (names.length === 0) return;
  let format: unknown = null, options: Record<string, unknown> = {};
  try {
    ({ format, options = {} } = JSON.parse(await fsp.readFile(path.join(out, 'recipe.json'), 'utf8')) as { format?: unknown; options?: Record<string, unknown> });
  } catch {
    // no (readable) recipe.json: not ours
  }
  if (format !== recipeFormat)
    throw new LangneuronsError('E_OPTIONS', `${out}: --out is not empty and was not made by \`langneurons train\` (holds ${listed(names)}); it is never replaced: choose another --out`, { file: out, field: 'out' });
  const foreign = names.filter((n) => !MODEL_FILES.includes(n)).sort();
  if (foreign.length > 0)
    throw new LangneuronsError('E_OPTIONS', `${out}: --out holds a model made by \`langneurons train\` and files train did not write (${listed(foreign)}); replacing the model would delete them: move them away, or choose another --out`, { file: out, field: 'out' });
  if (!force && !samePlan(options))
    throw new LangneuronsError('E_OPTIONS', `${out}: --out holds a model made by \`langneurons train\` with other options; give --force to replace it, or choose another --out`, { file: out, field: 'out' });
}

/** Refuses a work folder that is --out, inside it, or holds it: the final swap replaces --out as a whole. */
export async function checkWorkApartFromOut(out: string, work: string): Promise<void> {
  const o = await canonicalPath(out), w = await canonicalPath(work);
  const inside = (a: string, b: string) => a.startsWith(b.endsWith(path.sep) ? b : b + path.sep);
  if (o === w || inside(w, o) || inside(o, w))
    throw new LangneuronsError('E_OPTIONS', `--work ${work} ${o === w ? 'is' : inside(w, o) ? 'is inside' : 'holds'} --out ${out}; the model folder replaces --out as a whole, so the work folder must be elsewhere: give another --work`, { field: 'work' });
}

/** What to do with the work folder: nothing there yet, continue the run in it, or (--force) start it over. */
export type WorkFolderState = 'new' | 'continue' | 'start-over';

/**
 * Judges the work folder (read only; `plan` is the plan.json this run writes):
 *   missing, or holding a stale lock and temporary files at most      'new'
 *   train's plan.json of this plan                                     'continue'
 *   train's plan.json of other options, or train's steps without one   refused; with --force 'start-over'
 *   anything else (a file train does not write, another plan.json)     refused, also with --force: train writes
 *                                                                      nothing into a folder it did not make
 */
export async function checkTrainWork(work: string, force: boolean, plan: Record<string, unknown>): Promise<WorkFolderState> {
  const st = await fsp.lstat(work).catch(() => null);
  if (!st) return 'new';
  if (!st.isDirectory()) throw new LangneuronsError('E_OPTIONS', `${work}: the work folder exists and is not a folder; give another --work`, { file: work, field: 'work' });
  const names = await fsp.readdir(work);
  let before: unknown = null;
  try {
    before = JSON.parse(await fsp.readFile(path.join(work, 'plan.json'), 'utf8'));
  } catch {
    // no (readable) plan.json: judged by its entries below
  }
  const ours = before !== null && typeof before === 'object' && (before as Record<string, unknown>)['format'] === plan['format'];
  if (!ours) {
    const foreign = names.filter((n) => n !== LOCK_FILE && !WORK_ENTRIES.includes(n) && !isTempOf(n, WORK_ENTRIES)).sort();
    if (foreign.length > 0 || names.includes('plan.json'))
      throw new LangneuronsError('E_OPTIONS', `${work}: the work folder is not empty and is not a \`langneurons train\` work folder (holds ${listed(foreign.length ? foreign : ['plan.json'])}); give another --work`, { file: work, field: 'work' });
    if (!names.some((n) => WORK_ENTRIES.includes(n))) return 'new'; // a stale lock or temporary files at most
    // train's steps without the plan they were made for (plan.json is written first and removed last, so only a
    // hand can do this): continuing could mix runs of other options.
    if (!force)
      throw new LangneuronsError('E_OPTIONS', `${work}: holds the steps of a \`langneurons train\` run but no plan.json, so its options are unknown; give --force to start it over, or give another --work`, { file: work, field: 'work' });
    return 'start-over';
  }
  if (JSON.stringify(before) === JSON.stringify(plan)) return 'continue';
  if (!force)
    throw new LangneuronsError('E_OPTIONS', `${work}: holds a run made with other options; run the same command again to continue it, give --force to start it over, or give another --work`, { file: work, field: 'work' });
  return 'start-over';
}

/** Removes train's own entries from a work folder (--force on a run of other options); anything else stays. */
export async function clearTrainWork(work: string): Promise<void> {
  // plan.json last: a kill half way leaves a folder still recognised as train's, of the old plan, so --force again
  // finishes the job.
  const names = await fsp.readdir(work);
  for (const n of names.filter((x) => x !== 'plan.json' && (WORK_ENTRIES.includes(x) || isTempOf(x, WORK_ENTRIES))))
    await fsp.rm(path.join(work, n), { recursive: true, force: true });
  await fsp.rm(path.join(work, 'plan.json'), { force: true });
}
