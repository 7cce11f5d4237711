/**
 * One run per output folder: `<dir>/.langneurons.lock` holds the holder's pid, host and command. It is created
 * exclusively, so of two runs started together exactly one gets it; the other is refused with a line naming
 * the holder. A lock whose holder is gone (same host, pid not alive) is stale and taken over; a lock from
 * another host is never presumed stale (we cannot see its processes), the message says how to clear it.
 * A command whose output is one file takes `<file>.lock` the same way (and removes its dead writers' temporaries).
 * Only a file recognisably ours is ever taken over (a holder's JSON, or an empty or cut-off start of one): any other
 * file at a lock's name is refused and kept.
 */
import { constants as fsc, existsSync, promises as fsp, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { processAlive, removeOrphanTemps } from './atomic.js';
import { ensureOutputDir } from './outdir.js';

export const LOCK_FILE = '.langneurons.lock';

export interface LockHolder { pid: number; hostname: string; command: string; started: string }

export interface OutputLock {
  readonly file: string;
  /** Removes the lock file (idempotent); also done at process exit. */
  release(): Promise<void>;
}

/**
 * What a lock file holds: its holder; `torn` when it is empty or a cut-off start of what acquireLockFile writes (a
 * holder killed between the exclusive create and the write, or during the write: the JSON starts with `{"pid":`);
 * `foreign` when it is anything else (a user's `layers.lock`, a folder): not ours, so never removed; `gone` when it
 * went meanwhile.
 */
type LockContent = { kind: 'holder'; holder: LockHolder } | { kind: 'torn' } | { kind: 'foreign'; why: string } | { kind: 'gone' };

/** How every lock acquireLockFile writes begins (JSON.stringify of a LockHolder, pid first). */
const LOCK_START = '{"pid":';

async function readLock(file: string): Promise<LockContent> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'gone' };
    return { kind: 'foreign', why: describeError(e) };
  }
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (v !== null && typeof v.pid === 'number' && typeof v.hostname === 'string') return { kind: 'holder', holder: { command: '', started: '', ...v } as LockHolder };
  } catch {
    // not (yet) whole JSON: torn if it is the start of a lock, below
  }
  // NULs: the length of a write a crash kept but not its data.
  if (/^\0*$/.test(text) || LOCK_START.startsWith(text) || (text.startsWith(LOCK_START) && !text.endsWith('\n'))) return { kind: 'torn' };
  return { kind: 'foreign', why: 'it does not hold a langneurons lock' };
}

const held = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous: 'exit' handlers cannot wait. A SIGKILL skips this; the next run then finds a stale lock.
  process.on('exit', releaseHeldLocksSync);
}

/**
 * Removes every output lock this process holds, now (synchronously). For the exit hook, and for the CLI's signal
 * handlers (bin/langneurons.js): a run stopped by SIGINT / SIGTERM leaves no lock, also none that a run on another
 * host (a requeued Slurm job) would have to refuse.
 */
export function releaseHeldLocksSync(): void {
  for (const f of held) {
    try { unlinkSync(f); } catch { /* already gone */ }
  }
  held.clear();
}

/**
 * Takes the lock of output folder `dir` (created if missing) for `command`, or throws E_LOCKED naming the holder.
 */
export async function acquireOutputLock(dir: string, command: string): Promise<OutputLock> {
  await ensureOutputDir(dir);
  // Holding the folder, any `*.tmp-<pid>` of a dead writer in it is a leftover of a crash.
  return acquireLockFile(path.join(dir, LOCK_FILE), dir, command, 'into this folder', () => removeOrphanTemps(dir));
}

/**
 * Takes the lock of the output file `out` (`<out>.lock` beside it; its folder is created if missing) for `command`:
 * for the commands whose output is one file (with files named after it) rather than a folder, so that two runs
 * writing into one folder lock only their own outputs.
 */
export async function acquireFileOutputLock(out: string, command: string, companions: readonly string[] = []): Promise<OutputLock> {
  const dir = path.dirname(path.resolve(out));
  await ensureOutputDir(dir);
  // Holding the file, a dead writer's temporaries of it and of `companions` (the files written beside it under this
  // lock: a measure's unit log and <stem>.csv/.svg) are leftovers of a kill. No folder is taken here, so nothing else
  // removed them: they stayed for good, one more for every run stopped while writing. Only these names: the folder
  // is shared with other runs and files.
  const names = new Set([out, ...companions].map((f) => path.basename(f)));
  return acquireLockFile(`${out}.lock`, out, command, 'to this file', () => removeOrphanTemps(dir, false, names));
}

/** The exclusive create of lock `file` guarding `subject` (the folder or the file named in messages). */
async function acquireLockFile(file: string, subject: string, command: string, into: string, onTaken: () => Promise<unknown>): Promise<OutputLock> {
  const me: LockHolder = { pid: process.pid, hostname: os.hostname(), command, started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    let h: fsp.FileHandle | null = null;
    try {
      h = await fsp.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0), 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new LangneuronsError('E_IO', `${file}: cannot create the output lock: ${describeError(e)}`, { file });
      }
    }
    if (h) {
      // Held from its creation: a signal from here on (an fsync on a network file system takes a while) removes it.
      held.add(file);
      installExitHook();
      try {
        try {
          await h.writeFile(JSON.stringify(me) + '\n');
          await h.sync();
        } finally {
          await h.close();
        }
      } catch (e) {
        held.delete(file);
        await fsp.rm(file, { force: true });
        throw new LangneuronsError('E_IO', `${file}: cannot write the output lock: ${describeError(e)}`, { file });
      }
      await onTaken();
      let released = false;
      return {
        file,
        async release() {
          if (released) return;
          released = true;
          await fsp.rm(file, { force: true });
          held.delete(file); // after the removal: a signal meanwhile still removes it
        },
      };
    }
    let seen = await readLock(file);
    if (seen.kind === 'torn') seen = await lockOnceWritten(file);
    if (seen.kind === 'gone') continue; // released meanwhile: retry the exclusive create
    if (seen.kind === 'foreign')
      throw new LangneuronsError('E_EXISTS', `${file}: exists and is not a langneurons lock (${seen.why}); it is left alone: move it away, or choose another output`, { file });
    const holder = seen.kind === 'holder' ? seen.holder : null;  // null: still torn after TORN_LOCK_MS, its writer died
    if (holder && holder.pid === process.pid && holder.hostname === me.hostname && held.has(file)) {
      throw new LangneuronsError('E_LOCKED', `${subject}: this process already runs ${holder.command} ${into}`, { file });
    }
    // Our own pid in a lock we do not hold: an earlier process that had this pid (containers reuse low pids).
    const stale = holder ? holder.hostname === me.hostname && (!processAlive(holder.pid) || holder.pid === process.pid) : true;
    if (!stale) {
      const who = `${holder!.command || 'a run'} (pid ${holder!.pid} on ${holder!.hostname}, since ${holder!.started})`;
      throw new LangneuronsError('E_LOCKED',
        `${subject}: in use by ${who}; wait for it to finish, or if it is gone, remove ${file}`, { file });
    }
    await fsp.rm(file, { force: true }); // stale: its holder is dead; retry the exclusive create
  }
  throw new LangneuronsError('E_LOCKED', `${file}: could not take the output lock (another run keeps taking it)`, { file });
}

/** A live writer fills its lock within microseconds of creating it; one still empty or torn after this is stale. */
const TORN_LOCK_MS = 2_000;

/**
 * A lock file read empty or torn: either its writer is between the exclusive create and the write (wait for it), or
 * it was killed there (the file stays torn). Polls until it can be read whole, goes, turns out not to be a lock, or is
 * old enough to be stale (then `torn`). (A kill in that window used to make every run wait 10 s, refused.)
 */
async function lockOnceWritten(file: string): Promise<LockContent> {
  for (;;) {
    if (await olderThan(file, TORN_LOCK_MS)) return readLock(file);  // filled just before the deadline, or still torn
    await new Promise((r) => setTimeout(r, 50));
    const seen = await readLock(file);
    if (seen.kind !== 'torn') return seen;
  }
}

async function olderThan(file: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await fsp.stat(file)).mtimeMs > ms;
  } catch {
    return true;
  }
}

/** Runs `work` holding the lock of `dir`; the lock is released however `work` ends. */
export async function withOutputLock<T>(dir: string, command: string, work: () => Promise<T>): Promise<T> {
  return withLock(dir, () => acquireOutputLock(dir, command), work);
}

/** Runs `work` holding the lock of the output file `out` (acquireFileOutputLock); released however `work` ends. */
export async function withFileOutputLock<T>(out: string, command: string, work: () => Promise<T>, companions: readonly string[] = []): Promise<T> {
  return withLock(path.dirname(path.resolve(out)), () => acquireFileOutputLock(out, command, companions), work);
}

async function withLock<T>(dir: string, acquire: () => Promise<OutputLock>, work: () => Promise<T>): Promise<T> {
  const existed = existsSync(dir);
  const lock = await acquire();
  let done = false;
  try {
    const r = await work();
    done = true;
    return r;
  } finally {
    await lock.release();
    // Refused or failed before writing anything: the folder the lock made goes too (rmdir: only if it is empty).
    if (!done && !existed) await fsp.rmdir(dir).catch(() => undefined);
  }
}
