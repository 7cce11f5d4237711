// Where every step stands: done (its folder holds step.json), running (its lock is held by a live process, or its
// Slurm task is in the queue; another node's lock only while squeue shows the step's task running), failed (the
// latest run gave up on it), pending otherwise (saying so when a step it needs failed).
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';

import { processAlive } from '../io/atomic.js';
import { readJournal } from './journal.js';
import { isDone, stepDir, type Step, type SweepPlan } from './plan.js';
import { squeueJobs } from './slurm.js';

export type StepState = 'done' | 'running' | 'queued' | 'failed' | 'pending';

export interface StepStatus { id: string; kind: string; hash: string; cell: Step['cell']; state: StepState; detail?: string }

export function sweepStatus(plan: SweepPlan, o: { slurm?: boolean } = {}): { steps: StepStatus[]; byId: Map<string, StepStatus>; counts: Record<StepState, number> } {
  const journal = readJournal(plan.out);
  const lastRun = [...journal].reverse().find((e) => e.event === 'run');
  const failed = new Map<string, string>();
  const slurmTask = new Map<string, { job: string; index: number }>();
  for (const e of journal) {
    if (lastRun && e.event === 'fail' && e.run === lastRun.run && e.final) failed.set(e.step, `failed after ${e.attempt} attempt(s); log ${e.log}`);
    if (e.event === 'submit') e.steps.forEach((id, i) => slurmTask.set(id, { job: e.job, index: i }));
  }
  // Slurm: which tasks of our jobs are in the queue, and in what state.
  let queue = new Map<string, string>(), queueKnown = false;
  if (o.slurm && slurmTask.size) {
    try {
      queue = squeueJobs([...new Set([...slurmTask.values()].map((t) => t.job))]);
      queueKnown = true;
    } catch { /* no Slurm here */ }
  }
  const upstream = new Map<string, string | null>();
  const failedUpstream = (s: Step): string | null => {
    let cause = upstream.get(s.id);
    if (cause === undefined) {
      cause = null;
      for (const d of s.deps) {
        const dep = plan.byId.get(d)!;
        if (isDone(plan, dep)) continue;
        cause = failed.has(d) ? d : failedUpstream(dep);
        if (cause) break;
      }
      upstream.set(s.id, cause);
    }
    return cause;
  };
  const steps = plan.steps.map((s): StepStatus => {
    const base = { id: s.id, kind: s.kind, hash: s.hash, cell: s.cell };
    if (isDone(plan, s)) return { ...base, state: 'done' };
    const t = slurmTask.get(s.id);
    // The task's own line (squeue -r): an array's state is another task's (its running task, while this one waits).
    const q = t ? queue.get(`${t.job}_${t.index}`) : undefined;
    const lock = `${stepDir(plan, s)}.lock`;
    if (existsSync(lock)) {
      try {
        const w = JSON.parse(readFileSync(lock, 'utf8')) as { pid: number; host: string; job?: string };
        // A lock of this host is live while its process is. Another node's, written by a Slurm task (its job in the
        // lock), is the step's task's (no process there to ask): live while squeue shows that task running; left behind
        // by a run that is gone (its node died: the task requeued and waiting, or no longer in the queue) otherwise.
        // Unknown, and taken as running, without squeue, or when written outside Slurm (a local `sweep run` on that
        // node, of a step an earlier Slurm run submitted): squeue knows nothing of that process.
        const live = w.host === os.hostname() ? processAlive(w.pid) : !(queueKnown && t !== undefined && w.job !== undefined && q !== 'RUNNING');
        if (live) return { ...base, state: 'running', detail: `pid ${w.pid} on ${w.host}${w.job ? `, Slurm job ${w.job}` : ''}` };
      } catch { /* a lock being written */ }
    }
    if (q) return { ...base, state: q === 'RUNNING' ? 'running' : 'queued', detail: `Slurm ${t!.job}_${t!.index} ${q}` };
    const f = failed.get(s.id);
    if (f) return { ...base, state: 'failed', detail: f };
    // Not run because a step it needs (at any depth) failed: it waits for that one, which the status names.
    const cause = failedUpstream(s);
    return { ...base, state: 'pending', ...(cause ? { detail: `not run: it needs ${cause}, which failed` } : {}) };
  });
  const counts: Record<StepState, number> = { done: 0, running: 0, queued: 0, failed: 0, pending: 0 };
  for (const s of steps) counts[s.state]++;
  return { steps, byId: new Map(steps.map((s) => [s.id, s])), counts };
}
