// The local executor: a pool of `--jobs` workers, each step a child process (`langneurons sweep exec`) with its
// threads (the step kind's cpus) and, when the sweep lists devices, one device per worker slot. A failed step is
// retried up to `retries` times, then reported with its log's last lines; the steps needing it are not run.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';

import { ensureOutputDirSync } from '../io/outdir.js';
import { onStopSignal } from '../io/stop.js';
import { appendJournal } from './journal.js';
import { packageRoot } from './load.js';
import { isDone, type Step, type SweepPlan } from './plan.js';
import { logTail, type RunSummary } from './summary.js';

export interface LocalOptions {
  jobs: number;
  run: string;
  onEvent?: (line: string) => void;
}

export function logFileFor(plan: SweepPlan, step: Step, attempt: number): string {
  return path.join(plan.out, 'logs', step.kind, `${step.hash}.${attempt}.log`);
}

export async function runLocal(plan: SweepPlan, o: LocalOptions): Promise<RunSummary> {
  const bin = path.join(packageRoot(), 'bin', 'langneurons.js');
  const devices = (plan.sweep.spec.local?.devices ?? []).map(String);
  const summary: RunSummary = { executor: 'local', done: [], skipped: [], failed: [], blocked: [] };
  const failures = new Map<string, number>();
  const failedFor = new Set<string>();
  const pending = new Set(plan.steps.filter((s) => { const d = isDone(plan, s); if (d) summary.skipped.push(s.id); return !d; }).map((s) => s.id));
  const freeSlots = Array.from({ length: o.jobs }, (_, i) => i);
  const running = new Map<string, Promise<void>>();
  // The workers get the signal that stops this coordinator (a scheduler's SIGTERM, a `kill`, which reach it alone):
  // otherwise they ran on, orphaned, holding their steps' locks and cores. Each then stops as any command does (its
  // locks removed, its step's work folder kept for the next attempt).
  const workers = new Set<ChildProcess>();
  const unhook = onStopSignal((signal) => { for (const w of workers) w.kill(signal); });

  const launch = (step: Step, slot: number) => {
    const attempt = (failures.get(step.id) ?? 0) + 1;
    const log = logFileFor(plan, step, attempt);
    ensureOutputDirSync(path.dirname(log));
    const fd = openSync(log, 'a');
    const threads = plan.resources(step.kind).cpus ?? 1;
    const env = { ...process.env, ...(devices.length ? { CUDA_VISIBLE_DEVICES: devices[slot % devices.length]! } : {}) };
    const child = spawn(process.execPath, [bin, 'sweep', 'exec', plan.sweep.file, step.id, '--hash', step.hash, '--out', plan.out, '--threads', String(threads)],
      { stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    workers.add(child);
    appendJournal(plan.out, { event: 'start', run: o.run, step: step.id, hash: step.hash, attempt, log, ...(child.pid ? { pid: child.pid } : {}) });
    o.onEvent?.(`start ${step.id}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
    const started = performance.now();
    running.set(step.id, new Promise<void>((resolve) => {
      child.on('close', (rc) => {
        workers.delete(child);
        running.delete(step.id);
        freeSlots.push(slot);
        if (rc === 0 && isDone(plan, step)) {
          appendJournal(plan.out, { event: 'done', run: o.run, step: step.id, hash: step.hash, attempt, seconds: (performance.now() - started) / 1000 });
          summary.done.push(step.id);
          o.onEvent?.(`done  ${step.id}`);
        } else {
          failures.set(step.id, attempt);
          const final = attempt > plan.retries;
          appendJournal(plan.out, { event: 'fail', run: o.run, step: step.id, hash: step.hash, attempt, log, rc, final });
          o.onEvent?.(`fail  ${step.id} (exit ${String(rc)})${final ? '' : ', will retry'}`);
          if (final) { failedFor.add(step.id); summary.failed.push({ id: step.id, attempts: attempt, log, tail: logTail(log) }); }
          else pending.add(step.id);
        }
        resolve();
      });
    }));
  };

  for (;;) {
    // Steps whose dependencies failed for good will never run.
    for (const id of [...pending]) {
      const s = plan.byId.get(id)!;
      if (s.deps.some((d) => failedFor.has(d))) { pending.delete(id); failedFor.add(id); summary.blocked.push(id); }
    }
    const ready = [...pending].map((id) => plan.byId.get(id)!).filter((s) => s.deps.every((d) => isDone(plan, plan.byId.get(d)!)));
    while (ready.length && freeSlots.length) {
      const s = ready.shift()!;
      pending.delete(s.id);
      launch(s, freeSlots.shift()!);
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  unhook(); // every worker has ended (after a throw above the hook stays: it still stops the workers left running)
  return summary;
}
