// The coordinator's journal: one JSON object per line in <out>/journal.jsonl, appended by the one `sweep run` that
// holds <out>/.sweep-run.lock. It records what was started or submitted, finished and failed (with the log), so that
// `sweep status` can tell them apart and a restarted `sweep run` can find the Slurm jobs of a killed coordinator.
// Whether a step is done is never read from it: a step is done when its output folder holds step.json.
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { processAlive } from '../io/atomic.js';
import { appendToFileSync } from '../io/files.js';
import { ensureOutputDirSync } from '../io/outdir.js';
import { onStopSignal } from '../io/stop.js';

export type JournalEvent =
  | { event: 'run'; executor: 'local' | 'slurm'; run: string; pid: number; host: string }
  | { event: 'start'; run: string; step: string; hash: string; attempt: number; log: string; pid?: number }
  | { event: 'submitting'; run: string; round: number; kind: string; script: string; comment: string; steps: string[]; hashes: string[] }
  | { event: 'submit'; run: string; round: number; kind: string; job: string; script: string; steps: string[]; hashes: string[] }
  | { event: 'round-end'; run: string; round: number }
  | { event: 'done'; run: string; step: string; hash: string; attempt: number; seconds?: number }
  | { event: 'fail'; run: string; step: string; hash: string; attempt: number; log: string; rc?: number | null; final: boolean }
  | { event: 'end'; run: string; done: number; failed: number; blocked: number };

export type Stamped = JournalEvent & { time: string };

export const journalFile = (out: string) => path.join(out, 'journal.jsonl');

/**
 * Refuses (E_EXISTS) a journal.jsonl in `out` that a `sweep run` did not start: the first line of every journal is a
 * 'run' event (or, cut short by a kill, the start of one). A user's file of that name is never appended to.
 */
export function checkJournalIsOurs(out: string): void {
  const f = journalFile(out);
  if (!existsSync(f)) return;
  const text = readFileSync(f, 'utf8');
  const end = text.indexOf('\n');
  const first = end < 0 ? text : text.slice(0, end);
  const opening = '{"time":"'; // how appendJournal starts every line
  // A first line cut short by a kill (later appends then continue it) still starts as every line does.
  let ours = first.startsWith(opening) || (end < 0 && opening.startsWith(first));
  if (ours && end >= 0) {
    try {
      const e = JSON.parse(first) as Partial<Stamped>;
      ours = typeof e.time === 'string' && e.event === 'run';
    } catch { /* a torn first line continued by later appends: ours */ }
  }
  if (!ours)
    throw new LangneuronsError('E_EXISTS', `${f}: is not a sweep's journal (its first line is not a 'run' event); sweep run appends to it: choose another --out, or move the file away`, { file: f });
}

export function appendJournal(out: string, e: JournalEvent): void {
  ensureOutputDirSync(out);
  appendToFileSync(journalFile(out), JSON.stringify({ time: new Date().toISOString(), ...e }) + '\n');
}

/** Every event; a line cut short by a kill is skipped. */
export function readJournal(out: string): Stamped[] {
  const f = journalFile(out);
  if (!existsSync(f)) return [];
  const events: Stamped[] = [];
  for (const line of readFileSync(f, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try { events.push(JSON.parse(line) as Stamped); } catch { /* a partial last line */ }
  }
  return events;
}


interface LockOwner { pid: number; host: string; job?: string }

/**
 * An exclusive lock file (O_EXCL). A lock left by a process that is gone (same host and pid not alive; or the same
 * Slurm job on another host, requeued) is taken over. One held by a live process on this host is refused with `busy`, or with
 * `wait`, waited for. A lock from another host is refused too, unless `otherHosts: 'stale'` (a step's lock: the
 * executors never run one step twice at once, so a lock from another node is a killed or requeued task's).
 */
export async function acquireLock(file: string, busy: (owner: LockOwner) => string, o: { wait?: boolean; otherHosts?: 'busy' | 'stale' } = {}): Promise<() => void> {
  ensureOutputDirSync(path.dirname(file));
  const me: LockOwner = { pid: process.pid, host: os.hostname(), ...(process.env['SLURM_JOB_ID'] ? { job: process.env['SLURM_JOB_ID'] } : {}) };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      // Removed also when a signal stops this process (src/io/stop.ts), as output locks are: a lock left by a stopped
      // coordinator refused a requeued one on another node (another job id), or the same job's next `sweep run`.
      const unhook = onStopSignal(() => rmSync(file, { force: true }));
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      return () => { rmSync(file, { force: true }); unhook(); };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner: LockOwner | null = null;
    try { owner = JSON.parse(readFileSync(file, 'utf8')) as LockOwner; } catch { /* written half by a killed process */ }
    // The same Slurm job on another node is a requeued one; on this node, only a process that is gone left it (two
    // coordinators, or workers, in one allocation share its job id: a live one is not stale).
    const stale = !owner || (owner.job !== undefined && owner.job === me.job && owner.host !== me.host) ||
      (owner.host === me.host ? owner.pid === me.pid || !processAlive(owner.pid) : o.otherHosts === 'stale');
    if (stale) { rmSync(file, { force: true }); continue; }
    if (!o.wait || owner!.host !== me.host) throw new LangneuronsError('E_BUSY', busy(owner!), { file });
    await new Promise((r) => setTimeout(r, 500)); // a live local owner: wait for it to finish
  }
}
