/**
 * Creating output folders with one clear error line. Node's `mkdir({ recursive: true })` loops forever on some
 * paths (`/proc/x`: the kernel answers ENOENT for a folder whose parent exists), so folders are created one
 * level at a time from the deepest existing ancestor, and every failure names the path and the reason.
 */
import { mkdirSync, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

const REASONS: Record<string, string> = {
  EACCES: 'permission denied', EPERM: 'operation not permitted', EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device', ENOTDIR: 'a part of the path is a file, not a folder',
  ENOENT: 'the file system does not allow a folder there', EEXIST: 'a file (not a folder) has that name',
  ENAMETOOLONG: 'name too long', ELOOP: 'too many symbolic links',
};

function outErr(p: string, what: string, e: unknown): LangneuronsError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new LangneuronsError('E_IO', `${p}: cannot ${what}: ${REASONS[code] ?? (e as Error).message}${code ? ` (${code})` : ''}`, { file: p, cause: e });
}

/** `mkdir -p dir` that never hangs; fails with E_IO naming the path and the reason. (A few stat/mkdir calls:
 *  done synchronously, one implementation for the async and the sync callers.) */
export async function ensureOutputDir(dir: string): Promise<void> {
  ensureOutputDirSync(dir);
}

/** ensureOutputDir for synchronous code (the sweep's journal and scripts). */
export function ensureOutputDirSync(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let at = abs;
  for (;;) {
    let st;
    try {
      st = statSync(at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw outErr(at, 'use the output folder', e);
      const up = path.dirname(at);
      if (up === at) throw outErr(at, 'create the output folder', e);
      missing.push(at);
      at = up;
      continue;
    }
    if (!st.isDirectory()) throw new LangneuronsError('E_IO', `${at}: is a file, not a folder; choose another output path`, { file: at });
    break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(d, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw outErr(d, 'create the output folder', e);
    }
  }
}

/** The files named after a JSON output `out`: <stem>.csv and <stem>.svg (the stem: the path without .json). */
export function sidecarPaths(out: string): { csv: string; svg: string } {
  const stem = out.toLowerCase().endsWith('.json') ? out.slice(0, -5) : out;
  return { csv: `${stem}.csv`, svg: `${stem}.svg` };
}

/** Writes a JSON output `out` and beside it its sidecarPaths, each atomically; returns the paths. */
export async function writeJsonWithSidecars(out: string, doc: unknown, csv: string, svg: string): Promise<{ json: string; csv: string; svg: string }> {
  const files = { json: out, ...sidecarPaths(out) };
  await writeFileAtomic(files.json, JSON.stringify(doc, null, 2) + '\n');
  await writeFileAtomic(files.csv, csv);
  await writeFileAtomic(files.svg, svg);
  return files;
}

/** ensureOutputDir of a file's folder. */
export async function ensureParentDir(file: string): Promise<void> {
  await ensureOutputDir(path.dirname(path.resolve(file)));
}

/** Real, absolute path of p (or of its deepest existing ancestor joined with the rest): for "is the output an input". */
export async function canonicalPath(p: string): Promise<string> {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let at = abs;
  for (;;) {
    try {
      return path.join(await fsp.realpath(at), ...rest.reverse());
    } catch {
      const up = path.dirname(at);
      if (up === at) return abs;
      rest.push(path.basename(at));
      at = up;
    }
  }
}

/** Refuses an output path that is (or, through links, resolves to) one of the inputs. */
export async function refuseOutputIsInput(out: string, inputs: string[], option = '--out'): Promise<void> {
  const o = await canonicalPath(out);
  for (const i of inputs) {
    const c = await canonicalPath(i);
    if (c === o) throw new LangneuronsError('E_OPTIONS', `${option} ${out} is also an input (${i}); writing it would destroy the input: choose another ${option}`, { field: option });
    if (o.startsWith(c + path.sep) && (await fsp.stat(c).catch(() => null))?.isFile())
      throw new LangneuronsError('E_OPTIONS', `${option} ${out} is inside the input file ${i}`, { field: option });
  }
}

/**
 * Before writing the file `out`: refuses an input as the output, and an existing file that is not `what` (a model's
 * weights, another kind of file): a command writes only over a file of its own kind (`ours` says which).
 */
export async function checkOutput(out: string, inputs: string[], what: string, ours: (file: string) => Promise<boolean>): Promise<void> {
  await refuseOutputIsInput(out, inputs);
  const st = await fsp.lstat(out).catch(() => null);
  if (st === null || (st.isFile() && (await ours(out).catch(() => false)))) return;
  throw new LangneuronsError('E_EXISTS', `--out ${out}: exists and is not ${what}; it is written only over one: choose another --out`, { file: out, field: '--out' });
}

/**
 * checkOutput for a JSON output written with its sidecarPaths: where `out` is not there, a file of a sidecar's name
 * is not ours either (a run of ours writes the JSON with them), and is refused.
 */
export async function checkOutputWithSidecars(out: string, inputs: string[], what: string, ours: (file: string) => Promise<boolean>): Promise<void> {
  await checkOutput(out, inputs, what, ours);
  if (await fsp.lstat(out).catch(() => null)) return;  // ours: so are the files named after it
  for (const f of Object.values(sidecarPaths(out))) {
    await refuseOutputIsInput(f, inputs);
    if (await fsp.lstat(f).catch(() => null))
      throw new LangneuronsError('E_EXISTS', `--out ${out}: ${f} would be written beside it, and exists without ${what} there; it is not overwritten: choose another --out`, { file: f, field: '--out' });
  }
}
