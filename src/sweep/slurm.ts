// The Slurm executor: Slurm spreads the work; this only writes batch scripts and waits. A run goes in rounds: every
// step not done is submitted, one job array per step kind (text, profile, merge, identify, ppl-matrix, finetune,
// eval), each array `--dependency=afterok` on the arrays of the kinds it reads, with `--kill-on-invalid-dep=yes` so
// that a failed task cancels what needs it instead of leaving it pending forever. Each task runs
// `langneurons sweep exec <sweep> <step> --hash <h>`, logs to its own file, and is `--requeue`able: a preempted or
// requeued task continues from its step's checkpoint (see exec.ts). When the round's jobs have left the queue, a
// step whose task ran and did not finish counts one failure; one cancelled because a step it needs failed counts
// none. The next round resubmits what is left, until every step is done or has failed `retries` + 1 times.
// A coordinator killed while its jobs run finds them again from the journal and waits for them.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDirSync } from '../io/outdir.js';
import { appendJournal, readJournal } from './journal.js';
import { packageRoot, type StepKind } from './load.js';
import { isDone, KIND_ORDER, type Step, type SweepPlan } from './plan.js';
import { logTail, type RunSummary } from './summary.js';

export interface SlurmOptions { run: string; dryRun?: boolean; onEvent?: (line: string) => void }

function slurmCommand(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; code?: string; message: string };
    if (err.code === 'ENOENT') throw new LangneuronsError('E_SLURM', `${cmd}: not found (is this a Slurm login node?)`);
    throw new LangneuronsError('E_SLURM', `${cmd} ${args.join(' ')}: ${(err.stderr || err.message).trim().split('\n')[0]}`);
  }
}

/**
 * State of our jobs in the queue: "<job>" and "<job>_<task>" → state (PENDING, RUNNING, ...), plus "<key>:reason".
 * Only jobs named ln-… count: job ids start again at 1 when a cluster's controller is started clean.
 */
export function squeueJobs(jobs: string[]): Map<string, string> {
  const want = new Set(jobs);
  const out = new Map<string, string>();
  // -r: one line per array task (without it, the pending tasks of an array share one line, "<job>_[2-9]")
  for (const line of slurmCommand('squeue', ['-h', '-r', '-o', '%F|%i|%T|%r|%j', '--me']).split('\n')) {
    const [array, id, state, reason, name] = line.trim().split('|');
    if (!array || !id || !state || !want.has(array) || !name?.startsWith('ln-')) continue;
    out.set(id, state);
    out.set(`${id}:reason`, reason ?? '');
    if (!out.has(array) || state === 'RUNNING') out.set(array, state);
  }
  return out;
}

/** The cluster's MaxArraySize (`scontrol show config`; Slurm's default 1001 where it cannot be read, as in a dry run here). */
export function maxArraySize(): number {
  try {
    const m = /^MaxArraySize\s*=\s*(\d+)/m.exec(slurmCommand('scontrol', ['show', 'config']));
    if (m && Number(m[1]) > 0) return Number(m[1]);
  } catch { /* no Slurm here */ }
  return 1001;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const shellQuote = (s: string) => (/^[\w./:=@+,%-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
/**
 * A value on an `#SBATCH` line. sbatch splits those lines at whitespace and ends them at an unquoted '#'; a value in
 * double quotes is taken whole by every Slurm version (22.05 takes no backslash escapes there). A value holding a
 * double quote, a backslash or a line break cannot be written so: refused, naming it.
 */
function sbatchValue(s: string): string {
  if (/^[\w./:=@+,%-]+$/.test(s)) return s;
  if (/["\\\n\r]/.test(s))
    throw new LangneuronsError('E_SWEEP', `${JSON.stringify(s)}: a path or value with a double quote, a backslash or a line break cannot be given to sbatch on an #SBATCH line; rename it`);
  return `"${s}"`;
}

interface Submitted { kind: StepKind; job: string; steps: Step[]; round: number }

/** A task's log: <out>/logs/slurm/<kind>-r<round>-<job>_<task>.log. */
const logName = (kind: string, round: number, job: string, task: string) => `${kind}-r${round}-${job}_${task}.log`;

/** The batch script of one step kind's job array. */
function batchScript(plan: SweepPlan, kind: StepKind, steps: Step[], round: number, logPattern: string): string {
  const r = plan.resources(kind);
  const sl = plan.sweep.spec.slurm ?? {};
  const node = sl.node ?? process.execPath;
  const bin = path.join(packageRoot(), 'bin', 'langneurons.js');
  const threads = r.cpus ?? 1;
  const lines = [
    '#!/bin/bash',
    `# langneurons sweep ${plan.name}: ${steps.length} ${kind} step(s), round ${round}. Written by \`langneurons sweep run --executor slurm\`.`,
    `#SBATCH --job-name=${sbatchValue(`ln-${plan.name}-${kind}`)}`,
    `#SBATCH --array=0-${steps.length - 1}`,
    // sbatch replaces %A, %a, %x, %j ... anywhere in the path: a '%' of the folder is written '%%'
    `#SBATCH --output=${sbatchValue(path.join(path.dirname(logPattern).replaceAll('%', '%%'), path.basename(logPattern)))}`,
    '#SBATCH --open-mode=append',
    '#SBATCH --requeue',
    `#SBATCH --chdir=${sbatchValue(plan.sweep.dir)}`,
    `#SBATCH --cpus-per-task=${threads}`,
    ...(r.mem ? [`#SBATCH --mem=${sbatchValue(r.mem)}`] : []),
    ...(r.time ? [`#SBATCH --time=${sbatchValue(r.time)}`] : []),
    ...(r.gpus ? [`#SBATCH --gres=gpu:${r.gpus}`] : []),
    ...((r.partition ?? sl.partition) ? [`#SBATCH --partition=${sbatchValue((r.partition ?? sl.partition)!)}`] : []),
    ...(sl.account ? [`#SBATCH --account=${sbatchValue(sl.account)}`] : []),
    ...(sl.qos ? [`#SBATCH --qos=${sbatchValue(sl.qos)}`] : []),
    ...(sl.extra ?? []).map((x) => `#SBATCH ${x}`),
    ...(sl.setup ? ['', sl.setup] : []),
    '',
    `steps=(${steps.map((s) => shellQuote(s.id)).join(' ')})`,
    `hashes=(${steps.map((s) => s.hash).join(' ')})`,
    'i=${SLURM_ARRAY_TASK_ID:?not a Slurm array task}',
    `echo "langneurons sweep: task \${SLURM_ARRAY_JOB_ID}_$i on $(hostname) (restart \${SLURM_RESTART_COUNT:-0})"`,
    `exec ${shellQuote(node)} ${shellQuote(bin)} sweep exec ${shellQuote(plan.sweep.file)} "\${steps[$i]}" --hash "\${hashes[$i]}" --out ${shellQuote(plan.out)} --threads ${threads}`,
    '',
  ];
  return lines.join('\n');
}

const submissionComment = (run: string, round: number, tag: string) => `langneurons:${run}:r${round}:${tag}`;

/**
 * A 'submitting' event without its 'submit' (the coordinator was killed while sbatch ran): the job, if sbatch made
 * one and it is still in the queue, is found by its comment and journaled as submitted. One no longer queued holds
 * no running step: what it did not finish is submitted again.
 */
function recoverSubmissions(plan: SweepPlan, o: SlurmOptions): void {
  const journal = readJournal(plan.out);
  const submitted = new Set(journal.filter((e) => e.event === 'submit').map((e) => e.event === 'submit' && `${e.run}#${e.round}#${e.script}`));
  const lost = journal.filter((e): e is Extract<typeof e, { event: 'submitting' }> => e.event === 'submitting' && !submitted.has(`${e.run}#${e.round}#${e.script}`));
  if (!lost.length) return;
  const byComment = new Map<string, string>();
  try {
    for (const line of slurmCommand('squeue', ['-h', '--me', '-o', '%F|%k']).split('\n')) {
      const [job, comment] = line.trim().split('|');
      if (job && comment) byComment.set(comment, job);
    }
  } catch { return; }
  for (const e of lost) {
    const job = byComment.get(e.comment);
    if (!job) continue;
    appendJournal(plan.out, { event: 'submit', run: e.run, round: e.round, kind: e.kind, job, script: e.script, steps: e.steps, hashes: e.hashes });
    o.onEvent?.(`found job ${job} (${e.kind}), submitted by an earlier coordinator killed before it journaled it`);
  }
}

export async function runSlurm(plan: SweepPlan, o: SlurmOptions): Promise<RunSummary> {
  const summary: RunSummary = { executor: 'slurm', done: [], skipped: [], failed: [], blocked: [] };
  const failures = new Map<string, number>();
  const failedFor = new Set<string>();
  const scriptDir = path.join(plan.out, 'slurm');
  const logDir = path.join(plan.out, 'logs', 'slurm');
  ensureOutputDirSync(scriptDir);
  ensureOutputDirSync(logDir);
  const pollMs = (plan.sweep.spec.slurm?.poll ?? 2) * 1000;
  for (const s of plan.steps) if (isDone(plan, s)) summary.skipped.push(s.id);
  const taskLog = (sub: Submitted, i: number) => path.join(logDir, logName(sub.kind, sub.round, sub.job, String(i)));

  /** Waits until none of the jobs is in the queue; cancels tasks whose dependencies can never be met. */
  const wait = async (jobs: string[]) => {
    for (let failures = 0; ;) {
      // A busy controller answers squeue with a timeout now and then: tried again, up to 10 polls in a row.
      let q: Map<string, string>;
      try {
        q = squeueJobs(jobs);
        failures = 0;
      } catch (e) {
        if (!(e instanceof LangneuronsError) || ++failures >= 10) throw e;
        o.onEvent?.(`${e.message}; trying again`);
        await sleep(pollMs);
        continue;
      }
      const never = [...q.keys()].filter((k) => k.endsWith(':reason') && q.get(k) === 'DependencyNeverSatisfied').map((k) => k.slice(0, -':reason'.length));
      if (never.length) slurmCommand('scancel', never);
      if (![...q.keys()].some((k) => !k.endsWith(':reason'))) return;
      await sleep(pollMs);
    }
  };
  /** After a round: count what finished, what failed (its task ran: the log exists) and what never ran. */
  const settle = (subs: Submitted[]) => {
    for (const sub of subs) sub.steps.forEach((s, i) => {
      const log = taskLog(sub, i);
      if (isDone(plan, s)) {
        if (!summary.done.includes(s.id) && !summary.skipped.includes(s.id)) {
          summary.done.push(s.id);
          appendJournal(plan.out, { event: 'done', run: o.run, step: s.id, hash: s.hash, attempt: (failures.get(s.id) ?? 0) + 1 });
          o.onEvent?.(`done  ${s.id}`);
        }
      } else if (existsSync(log)) {
        const attempt = (failures.get(s.id) ?? 0) + 1;
        failures.set(s.id, attempt);
        const final = attempt > plan.retries;
        appendJournal(plan.out, { event: 'fail', run: o.run, step: s.id, hash: s.hash, attempt, log, final });
        o.onEvent?.(`fail  ${s.id} (Slurm ${sub.job}_${i})${final ? '' : ', will retry'}`);
        if (final) { failedFor.add(s.id); summary.failed.push({ id: s.id, attempts: attempt, log, tail: logTail(log) }); }
      }
    });
  };

  // A killed coordinator's jobs: wait for those still in the queue, then count them as a round.
  if (!o.dryRun) {
    recoverSubmissions(plan, o);
    const journal = readJournal(plan.out);
    const ended = new Set(journal.filter((e) => e.event === 'round-end').map((e) => `${e.run}#${e.round}`));
    const open = journal.filter((e) => e.event === 'submit' && !ended.has(`${e.run}#${e.round}`)) as Extract<ReturnType<typeof readJournal>[number], { event: 'submit' }>[];
    if (open.length) {
      const subs: Submitted[] = open.map((e) => ({
        kind: e.kind as StepKind, job: e.job, steps: e.steps.map((id) => plan.byId.get(id)).filter((s): s is Step => !!s),
        round: e.round,
      })).filter((s) => s.steps.length === open.find((e) => e.job === s.job)!.steps.length);
      o.onEvent?.(`found ${subs.length} job array(s) of an earlier coordinator: ${subs.map((s) => s.job).join(', ')}`);
      // Every job still in the queue is waited for, also one holding a step the edited sweep no longer has (its other
      // tasks may be running: submitted again, a step would run twice); only the arrays of known steps are counted.
      await wait(open.map((e) => e.job));
      settle(subs);
      for (const e of open) appendJournal(plan.out, { event: 'round-end', run: e.run, round: e.round });
    }
  }

  const scripts: string[] = [];
  const maxArray = maxArraySize();
  for (let round = 1; ; round++) {
    for (const s of plan.steps) if (!isDone(plan, s) && !failedFor.has(s.id) && s.deps.some((d) => failedFor.has(d))) {
      failedFor.add(s.id);
      summary.blocked.push(s.id);
    }
    const todo = plan.steps.filter((s) => !isDone(plan, s) && !failedFor.has(s.id));
    if (!todo.length) break;
    const subs: Submitted[] = [];
    const jobOfStep = new Map<string, string>();
    const submitLines = ['#!/bin/bash', `# Submits round ${round} of sweep ${plan.name} (written by --dry-run; \`sweep run --executor slurm\` does the same).`, 'set -euo pipefail'];
    for (const kind of KIND_ORDER) {
      const all = todo.filter((s) => s.kind === kind);
      // A job array holds at most MaxArraySize tasks (indices 0 to MaxArraySize - 1): more steps of a kind are
      // submitted as several arrays, and the steps reading them depend on the arrays that hold their inputs.
      const parts = Array.from({ length: Math.ceil(all.length / maxArray) }, (_, p) => all.slice(p * maxArray, (p + 1) * maxArray));
      for (const [p, steps] of parts.entries()) {
        const tag = parts.length > 1 ? `${kind}-${p + 1}` : kind;
        const logPattern = path.join(logDir, logName(kind, round, '%A', '%a'));
        const script = path.join(scriptDir, `r${round}-${tag}.sh`);
        await writeFileAtomic(script, batchScript(plan, kind, steps, round, logPattern));
        scripts.push(script);
        const depJobs = [...new Set(steps.flatMap((s) => s.deps.map((d) => jobOfStep.get(d)).filter((j): j is string => !!j)))];
        const depArgs = (ids: string[]) => (ids.length ? [`--dependency=afterok:${ids.join(':')}`, '--kill-on-invalid-dep=yes'] : []);
        const variable = tag.replace(/-/g, '_');
        submitLines.push(`${variable}=$(${['sbatch --parsable', ...depArgs(depJobs), shellQuote(script)].join(' ')})`,
          `${variable}=\${${variable}%%;*}  # the job id (--parsable prints <job>;<cluster> where there are several clusters)`);
        if (o.dryRun) { for (const s of steps) jobOfStep.set(s.id, `$${variable}`); continue; }
        // Journaled before sbatch, and the job marked with it: a coordinator killed while sbatch runs leaves a job
        // the journal does not name; the next one finds it by its comment (recoverSubmissions) instead of submitting again.
        const comment = submissionComment(o.run, round, tag);
        appendJournal(plan.out, { event: 'submitting', run: o.run, round, kind, script, comment, steps: steps.map((s) => s.id), hashes: steps.map((s) => s.hash) });
        const job = slurmCommand('sbatch', ['--parsable', `--comment=${comment}`, ...depArgs(depJobs), script]).trim().split(';')[0]!;
        for (const s of steps) jobOfStep.set(s.id, job);
        subs.push({ kind, job, steps, round });
        appendJournal(plan.out, { event: 'submit', run: o.run, round, kind, job, script, steps: steps.map((s) => s.id), hashes: steps.map((s) => s.hash) });
        o.onEvent?.(`submitted ${tag}: job ${job} (${steps.length} task(s))${depJobs.length ? ` after ${depJobs.join(', ')}` : ''}`);
      }
    }
    if (o.dryRun) {
      const submit = path.join(scriptDir, 'submit.sh');
      await writeFileAtomic(submit, submitLines.join('\n') + '\n');
      scripts.push(submit);
      summary.scripts = scripts;
      return summary;
    }
    const before = summary.done.length + failures.size + [...failures.values()].reduce((a, b) => a + b, 0);
    await wait(subs.map((s) => s.job));
    settle(subs);
    appendJournal(plan.out, { event: 'round-end', run: o.run, round });
    const after = summary.done.length + failures.size + [...failures.values()].reduce((a, b) => a + b, 0);
    if (after === before) {
      // Nothing ran and nothing failed: the jobs were cancelled or never started. Do not spin.
      for (const s of plan.steps) if (!isDone(plan, s) && !failedFor.has(s.id)) summary.blocked.push(s.id);
      o.onEvent?.('the jobs left the queue without running any step (cancelled?); stopping');
      break;
    }
  }
  return summary;
}
