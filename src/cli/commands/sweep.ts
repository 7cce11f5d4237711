// `langneurons sweep plan | run | status | report` (and the hidden `sweep exec` each step runs as).
import { Option, type Command } from 'commander';
import os from 'node:os';

import { LangneuronsError } from '../../errors.js';
import { execStep, findStep } from '../../sweep/exec.js';
import { acquireLock, appendJournal, checkJournalIsOurs } from '../../sweep/journal.js';
import { loadSweep } from '../../sweep/load.js';
import { runLocal } from '../../sweep/local.js';
import { planSweep, type SweepPlan } from '../../sweep/plan.js';
import { writeSweepReport } from '../../sweep/report.js';
import { runSlurm } from '../../sweep/slurm.js';
import { sweepStatus } from '../../sweep/status.js';
import type { RunSummary } from '../../sweep/summary.js';
import { parseIntOption, printResult } from '../output.js';

interface Common { out?: string; json?: boolean }

async function open(file: string, o: Common): Promise<SweepPlan> {
  return planSweep(loadSweep(file), o.out ? { out: o.out } : {});
}

const withCommon = (c: Command) => c
  .option('--out <dir>', "output folder (default: the sweep file's `out`)")
  .option('--json', 'print one JSON document on stdout');

export function registerSweep(program: Command): void {
  const sweep = program.command('sweep').description('scripted sweeps over models, languages, methods and tasks (docs/SWEEPS.md)');

  withCommon(sweep.command('plan <sweep-file>').description('the expanded steps, their dependencies, and what is already done'))
    .action(async (file: string, o: Common) => {
      const started = performance.now();
      const plan = await open(file, o);
      const st = sweepStatus(plan);
      const byKind: Record<string, { steps: number; done: number }> = {};
      for (const s of st.steps) { const k = (byKind[s.kind] ??= { steps: 0, done: 0 }); k.steps++; if (s.state === 'done') k.done++; }
      printResult(o, { sweep: plan.sweep.file, out: plan.out, seconds: (performance.now() - started) / 1000, kinds: byKind,
        steps: plan.steps.map((s) => ({ id: s.id, kind: s.kind, hash: s.hash, deps: s.deps, cell: s.cell, argv: s.argv, state: st.byId.get(s.id)!.state })) }, () => [
        ...plan.steps.map((s) => `${st.byId.get(s.id)!.state.padEnd(8)} ${s.id}  [${s.hash}]${s.deps.length ? `  ← ${s.deps.length} step(s)` : ''}`),
        '', `${plan.steps.length} steps (${Object.entries(byKind).map(([k, v]) => `${k} ${v.done}/${v.steps} done`).join(', ')}) -> ${plan.out}`].join('\n'));
    });

  withCommon(sweep.command('run <sweep-file>').description('run every step that is not done, on this machine or through Slurm'))
    .addOption(new Option('--executor <name>', 'local: a pool of worker processes; slurm: sbatch job arrays').choices(['local', 'slurm']).default('local'))
    .option('--jobs <n>', 'local: steps run at once', parseIntOption('--jobs', 1, 1024), 1)
    .option('--dry-run', 'slurm: write the batch scripts and a submit.sh, submit nothing')
    .action(async (file: string, o: Common & { executor: 'local' | 'slurm'; jobs: number; dryRun?: boolean }) => {
      const plan = await open(file, o);
      const run = `${new Date().toISOString()}-${process.pid}`;
      let summary: RunSummary;
      if (o.dryRun) {
        if (o.executor !== 'slurm') throw new LangneuronsError('E_OPTIONS', '--dry-run applies to --executor slurm', { field: '--dry-run' });
        summary = await runSlurm(plan, { run, dryRun: true });
      } else {
        const release = await acquireLock(`${plan.out}/.sweep-run.lock`, (w) => `${plan.out}: another \`sweep run\` (pid ${w.pid} on ${w.host}) is using this output folder`);
        try {
          checkJournalIsOurs(plan.out);
          appendJournal(plan.out, { event: 'run', executor: o.executor, run, pid: process.pid, host: os.hostname() });
          const onEvent = o.json ? undefined : (line: string) => process.stderr.write(`${line}\n`);
          summary = o.executor === 'local' ? await runLocal(plan, { jobs: o.jobs, run, ...(onEvent ? { onEvent } : {}) })
            : await runSlurm(plan, { run, ...(onEvent ? { onEvent } : {}) });
          appendJournal(plan.out, { event: 'end', run, done: summary.done.length, failed: summary.failed.length, blocked: summary.blocked.length });
        } finally {
          release();
        }
      }
      printResult(o, { out: plan.out, ...summary }, () => [
        ...summary.failed.map((f) => `FAILED ${f.id} after ${f.attempts} attempt(s); log ${f.log}:\n${f.tail.map((l) => `    ${l}`).join('\n')}`),
        ...(summary.blocked.length ? [`not run (a step they need failed): ${summary.blocked.join(', ')}`] : []),
        ...(summary.scripts ? [`scripts written (nothing submitted): ${summary.scripts.join(', ')}`] : []),
        `${summary.done.length} step(s) run, ${summary.skipped.length} already done, ${summary.failed.length} failed, ${summary.blocked.length} not run -> ${plan.out}`].join('\n'));
      if (summary.failed.length) process.exitCode = 1;
    });

  withCommon(sweep.command('status <sweep-file>').description('done / running / failed / pending, per step and per cell'))
    .action(async (file: string, o: Common) => {
      const plan = await open(file, o);
      const st = sweepStatus(plan, { slurm: true });
      printResult(o, { out: plan.out, counts: st.counts, steps: st.steps }, () => [
        ...st.steps.filter((s) => s.state !== 'done').map((s) => `${s.state.padEnd(8)} ${s.id}${s.detail ? `  (${s.detail})` : ''}`),
        `${Object.entries(st.counts).map(([k, v]) => `${v} ${k}`).join(', ')} of ${st.steps.length} steps`].join('\n'));
    });

  sweep.command('report <sweep-file>').description('tables and figures of the whole grid: one HTML page (SVG, no scripts), JSON and CSV')
    .requiredOption('--out <dir>', 'folder for report.html, report.json and report.csv')
    .option('--outputs <dir>', "the sweep's output folder (default: the sweep file's `out`)")
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, o: { out: string; outputs?: string; json?: boolean }) => {
      const plan = await open(file, o.outputs ? { out: o.outputs } : {});
      const r = await writeSweepReport(plan, o.out);
      printResult(o, r, () => `report of ${r.cells} cell(s), ${r.missing} step(s) not done -> ${r.html}, ${r.json}, ${r.csv}`);
    });

  sweep.command('exec <sweep-file> <step-id>', { hidden: true })
    .description('run one step of a sweep (what the executors run)')
    .option('--hash <h>', 'the step hash the executor planned (refused when the sweep file changed)')
    .option('--out <dir>', 'output folder')
    .option('--threads <n>', 'engine threads', parseIntOption('--threads', 1, 1024))
    .action(async (file: string, id: string, o: { hash?: string; out?: string; threads?: number }) => {
      const plan = await open(file, o);
      const { main } = await import('../main.js');
      const r = await execStep(plan, findStep(plan, id, o.hash), { run: main, ...(o.threads ? { threads: o.threads } : {}) });
      process.stderr.write(`langneurons sweep: step ${id} ${r.skipped ? 'was already done' : `done in ${r.seconds.toFixed(1)} s`}\n`);
    });
}
