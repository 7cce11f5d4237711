// One step, in this process: the step's langneurons command line (the same code as typing it) with its output in
// <step>.work/, then step.json written and the folder renamed to its final name, so a step's folder exists only
// when it is complete. A killed step leaves <step>.work/ behind, and the next attempt continues from there: profiling
// from its checkpoints, fine-tuning from its saved state (`finetune --resume`); the others are short and start over.
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDir } from '../io/outdir.js';
import { acquireLock } from './journal.js';
import { toolVersion } from './load.js';
import { isDone, resolveArgv, stepDir, stepWorkDir, type Step, type SweepPlan } from './plan.js';

export const STEP_FORMAT = 'langneurons-sweep-step/1';

export interface StepRecord {
  format: typeof STEP_FORMAT;
  id: string; kind: string; hash: string; cell: Step['cell'];
  /** The command as run (paths of the output folder as they were then: <step>.work). */
  argv: string[];
  toolVersion: string;
  seconds: number;
  finishedAt: string;
  host: string;
}

export function findStep(plan: SweepPlan, id: string, hash?: string): Step {
  const step = plan.byId.get(id);
  if (!step) throw new LangneuronsError('E_OPTIONS', `${plan.sweep.file}: the sweep has no step '${id}'`, { field: 'step' });
  if (hash && step.hash !== hash)
    throw new LangneuronsError('E_SWEEP', `step '${id}': the sweep file changed since the step was submitted (hash ${hash}, now ${step.hash}); run \`sweep run\` again`, { field: 'step' });
  return step;
}

/** Runs the step unless it is done. `run` is the CLI's entry point (src/cli/main.ts), passed in to keep the import graph acyclic. */
export async function execStep(plan: SweepPlan, step: Step, o: { threads?: number; run: (argv: string[]) => Promise<number> }): Promise<{ skipped: boolean; seconds: number }> {
  if (isDone(plan, step)) return { skipped: true, seconds: 0 };
  for (const d of step.deps) {
    const dep = plan.byId.get(d)!;
    if (!isDone(plan, dep)) throw new LangneuronsError('E_SWEEP', `step '${step.id}' needs step '${d}', which is not done`, { field: 'step' });
  }
  const final = stepDir(plan, step), work = stepWorkDir(plan, step);
  // A step still running under an earlier coordinator (killed alone, its workers left) is waited for, not run twice.
  const release = await acquireLock(`${final}.lock`, (w) => `step '${step.id}' is being run by pid ${w.pid} on ${w.host}${w.job ? ` (Slurm job ${w.job})` : ''}`,
    { wait: true, otherHosts: 'stale' });
  try {
    if (isDone(plan, step)) return { skipped: true, seconds: 0 }; // finished while we waited for the lock
    let argv = resolveArgv(plan, step, work, o.threads);
    if (step.kind === 'finetune' && existsSync(path.join(work, 'run.json'))) {
      // An earlier attempt got as far as a run folder: continue it from its last saved state, or start over without one.
      if (existsSync(path.join(work, 'state', 'state.json'))) argv = ['finetune', '--resume', work, '--quiet', '--json'];
      else await fsp.rm(work, { recursive: true, force: true });
    } else if (!['profile', 'finetune'].includes(step.kind)) {
      await fsp.rm(work, { recursive: true, force: true }); // short steps start over
    }
    await ensureOutputDir(work);
    // An earlier attempt's output lock (src/io/lock.ts on main: `.langneurons.lock`, never presumed stale when written
    // on another host) is a killed or requeued attempt of this very step: the step lock above guarantees no live writer.
    await fsp.rm(path.join(work, '.langneurons.lock'), { force: true });
    process.stderr.write(`langneurons sweep: step ${step.id} (${step.hash})\n$ langneurons ${argv.map((a) => (/^[\w./:=@+,-]+$/.test(a) ? a : `'${a}'`)).join(' ')}\n`);
    const started = performance.now();
    const rc = await o.run(['node', 'langneurons', ...argv]);
    if (rc !== 0) throw new LangneuronsError('E_STEP', `step '${step.id}': the command failed (exit code ${rc}); its output is in ${work}`, { field: 'step' });
    const record: StepRecord = {
      format: STEP_FORMAT, id: step.id, kind: step.kind, hash: step.hash, cell: step.cell, argv, toolVersion: toolVersion(),
      seconds: (performance.now() - started) / 1000, finishedAt: new Date().toISOString(), host: os.hostname(),
    };
    await writeFileAtomic(path.join(work, 'step.json'), JSON.stringify(record, null, 1) + '\n');
    await fsp.rename(work, final);
    return { skipped: false, seconds: record.seconds };
  } finally {
    release();
  }
}
