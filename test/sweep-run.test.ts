// The demo sweep (examples/sweep-demo.yaml: the bundled model, 2 languages × 2 identification settings × 2 fine-tuning
// methods × 1 task) run end to end: through the local executor, killed in the middle and run again; through a real
// Slurm cluster (scripts/slurm-local.sh; skipped when none is reachable) with the same results; a failing step
// retried and reported by both; --dry-run; and the report's numbers against the step outputs they come from.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';

import { checkJournalIsOurs, readJournal, type Stamped } from '../src/sweep/journal.js';
import { loadSweep } from '../src/sweep/load.js';
import { planSweep, stepDir } from '../src/sweep/plan.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'langneurons.js');
const DEMO = path.join(ROOT, 'examples', 'sweep-demo.yaml');
// A space and a '#' in every path: the Slurm scripts must quote them (sbatch splits #SBATCH lines at whitespace).
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln sweep-run #'));
const OUT_LOCAL = path.join(tmp, 'local'), OUT_SLURM = path.join(tmp, 'slurm');
const STEPS = 28;
const slurmUp = spawnSync('sinfo', ['-h'], { encoding: 'utf8' }).status === 0;

const cli = (args: string[], timeout = 240_000) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout });
/** An argument as a step's log shows its command line (quoted when it holds more than plain characters). */
const shown = (a: string) => (/^[\w./:=@+,-]+$/.test(a) ? a : `'${a}'`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (c: ChildProcess) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.on('close', r)));
const doneIds = (out: string) => readJournal(out).filter((e): e is Extract<Stamped, { event: 'done' }> => e.event === 'done').map((e) => e.step);

/** The demo sweep plus an eval intervention that fails when it runs (the model has 4 layers), for one language. */
function failingSweep(): string {
  const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
  doc['models'] = path.join(ROOT, 'models', 'udhr20');
  doc['eval'].languages = ['mt'];
  doc['eval'].interventions = ['zero:neurons=all:layers=7-9'];
  const file = path.join(tmp, 'failing.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

/** Every step's numbers, without paths and timings: the report's JSON minus seconds per step. */
function reportNumbers(out: string, dir: string): unknown {
  const r = cli(['sweep', 'report', DEMO, '--outputs', out, '--out', dir, '--json']);
  expect(r.status, r.stderr).toBe(0);
  const doc = JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as { finetune: { secondsPerStep: unknown }[] };
  for (const f of doc.finetune) f.secondsPerStep = null;
  return doc;
}

describe('sweep run', () => {
  it('local: a run killed in the middle continues, runs no finished step twice and ends with every step done', async () => {
    const child = spawn(process.execPath, [BIN, 'sweep', 'run', DEMO, '--jobs', '2', '--out', OUT_LOCAL], { detached: true, stdio: 'ignore' });
    const started = Date.now();
    while (doneIds(OUT_LOCAL).length < 8 && Date.now() - started < 200_000) await sleep(200);
    process.kill(-child.pid!, 'SIGKILL'); // the coordinator and its workers, as a terminal's Ctrl-\ would
    await sleep(300);
    const before = new Set(doneIds(OUT_LOCAL));
    expect(before.size).toBeGreaterThanOrEqual(8);
    expect(before.size).toBeLessThan(STEPS);

    const r = cli(['sweep', 'run', DEMO, '--jobs', '2', '--out', OUT_LOCAL, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { done: string[]; skipped: string[]; failed: unknown[] };
    expect(summary.failed).toEqual([]);
    expect(new Set(summary.skipped)).toEqual(before);
    expect(summary.done.length + summary.skipped.length).toBe(STEPS);
    // the journal: no step started again after it was done
    const doneAt = new Map<string, number>();
    readJournal(OUT_LOCAL).forEach((e, i) => {
      if (e.event === 'done') doneAt.set(e.step, doneAt.get(e.step) ?? i);
      if (e.event === 'start') expect(doneAt.has(e.step), `${e.step} started after it was done`).toBe(false);
    });
    const plan = await planSweep(loadSweep(DEMO), { out: OUT_LOCAL });
    for (const s of plan.steps) {
      expect(existsSync(path.join(stepDir(plan, s), 'step.json')), s.id).toBe(true);
      expect(existsSync(`${stepDir(plan, s)}.work`), `${s.id}: work folder left`).toBe(false);
    }
    const st = JSON.parse(cli(['sweep', 'status', DEMO, '--out', OUT_LOCAL, '--json']).stdout) as { counts: Record<string, number> };
    expect(st.counts).toEqual({ done: STEPS, running: 0, queued: 0, failed: 0, pending: 0 });
    // a third run has nothing to do
    const again = JSON.parse(cli(['sweep', 'run', DEMO, '--out', OUT_LOCAL, '--json']).stdout) as { done: string[]; skipped: string[] };
    expect(again.done).toEqual([]);
    expect(again.skipped.length).toBe(STEPS);
  }, 400_000);

  it('local: a failing step is retried, then reported with its log', () => {
    const file = failingSweep();
    const r = cli(['sweep', 'run', file, '--out', OUT_LOCAL]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/FAILED eval\/udhr20\/ppl\/mt\/iv0-zero after 2 attempt\(s\); log .*\.2\.log:\n(.*\n)*.*layer 9 is outside the model's layers 0-3/);
    const fails = readJournal(OUT_LOCAL).filter((e) => e.event === 'fail');
    expect(fails.map((e) => e.event === 'fail' && [e.step, e.attempt, e.final])).toEqual([['eval/udhr20/ppl/mt/iv0-zero', 1, false], ['eval/udhr20/ppl/mt/iv0-zero', 2, true]]);
    const st = JSON.parse(cli(['sweep', 'status', file, '--out', OUT_LOCAL, '--json']).stdout) as { counts: Record<string, number> };
    expect(st.counts['failed']).toBe(1);
  }, 120_000);

  it("a journal.jsonl the sweep did not write is refused untouched; its own (also one cut short by a kill) is taken", () => {
    const user = path.join(tmp, 'user-journal');
    mkdirSync(user);
    const mine = '{"step": 1, "note": "my own experiment log"}\n';
    writeFileSync(path.join(user, 'journal.jsonl'), mine);
    const r = cli(['sweep', 'run', DEMO, '--out', user]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/user-journal\/journal\.jsonl: is not a sweep's journal \(its first line is not a 'run' event\)/);
    expect(readFileSync(path.join(user, 'journal.jsonl'), 'utf8')).toBe(mine);
    expect(readdirSync(user).sort()).toEqual(['journal.jsonl']);
    // the sweep's own: empty, cut short by a kill in its first line, or whole
    for (const text of ['', '{"ti', '{"time":"2026-12-', '{"time":"2026-12-06T00:00:00Z","event":"run","executor":"local","run":"r","pid":1,"host":"h"}\n{"time":"2',
      // cut short, then continued by the next run's appends
      '{"time":"2026-12-06T00:00:00Z","ev{"time":"2026-12-06T00:01:00Z","event":"run","executor":"local","run":"r2","pid":2,"host":"h"}\n']) {
      writeFileSync(path.join(user, 'journal.jsonl'), text);
      expect(() => checkJournalIsOurs(user), JSON.stringify(text)).not.toThrow();
    }
    for (const text of ['{"time":"2026-12-06T00:00:00Z","event":"start"}\n', 'step 1\n', '{"time": 3, "event": "run"}\n'])  {
      writeFileSync(path.join(user, 'journal.jsonl'), text);
      expect(() => checkJournalIsOurs(user), JSON.stringify(text)).toThrow(/is not a sweep's journal/);
    }
  }, 60_000);

  it('slurm --dry-run writes job-array scripts and a submit script, and submits nothing', () => {
    const out = path.join(tmp, 'dry');
    const r = cli(['sweep', 'run', DEMO, '--executor', 'slurm', '--dry-run', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const profile = readFileSync(path.join(out, 'slurm', 'r1-profile.sh'), 'utf8');
    expect(profile).toContain('#SBATCH --array=0-1\n');
    expect(profile).toContain('#SBATCH --cpus-per-task=1\n#SBATCH --mem=500M\n#SBATCH --time=00:10:00\n');
    expect(profile).toMatch(/steps=\(profile\/udhr20\/mt profile\/udhr20\/sw\)/);
    expect(readFileSync(path.join(out, 'slurm', 'r1-eval.sh'), 'utf8')).toContain('#SBATCH --array=0-11\n');
    const submit = readFileSync(path.join(out, 'slurm', 'submit.sh'), 'utf8');
    expect(submit).toContain('identify=$(sbatch --parsable --dependency=afterok:$profile --kill-on-invalid-dep=yes ');
    expect(submit).toMatch(/finetune=\$\(sbatch --parsable --dependency=afterok:(\$identify:\$text|\$text:\$identify) /);
    expect(readJournal(out)).toEqual([]);
    // The values sbatch reads from the #SBATCH lines (its own parsing, src/sbatch/opt.c _get_argument): the paths whole.
    const sbatchArgs = (script: string) => script.split('\n').filter((l) => l.startsWith('#SBATCH')).flatMap((l) => {
      const args: string[] = [];
      let cur = '', inArg = false, quote = '', escape = false;
      for (const c of l.slice('#SBATCH'.length)) {
        if (escape) { cur += c; escape = false; inArg = true; continue; }
        if (c === '\\') { escape = true; continue; }
        if (quote) { if (c === quote) quote = ''; else cur += c; continue; }
        if (c === '"' || c === "'") { quote = c; inArg = true; continue; }
        if (c === '#') break;
        if (/\s/.test(c)) { if (inArg) args.push(cur); cur = ''; inArg = false; continue; }
        cur += c; inArg = true;
      }
      if (inArg) args.push(cur);
      return args;
    });
    const args = sbatchArgs(profile);
    expect(args).toContain(`--output=${path.join(out, 'logs', 'slurm', 'profile-r1-%A_%a.log')}`);
    expect(args).toContain(`--chdir=${path.dirname(DEMO)}`);
    expect(out).toMatch(/ .*#/);
  });

  it.skipIf(!slurmUp)('slurm: the demo runs through sbatch job arrays, survives a killed coordinator, and gives the local run\'s results', async () => {
    // The coordinator is killed once every array is submitted; its jobs keep running in Slurm.
    const first = spawn(process.execPath, [BIN, 'sweep', 'run', DEMO, '--executor', 'slurm', '--out', OUT_SLURM], { stdio: 'ignore' });
    const started = Date.now();
    while (readJournal(OUT_SLURM).filter((e) => e.event === 'submit').length < 6 && Date.now() - started < 60_000) await sleep(100);
    // a second coordinator on the same output folder is refused while the first lives
    const second = cli(['sweep', 'run', DEMO, '--executor', 'slurm', '--out', OUT_SLURM]);
    expect(second.status).toBe(1);
    expect(second.stderr).toBe(`langneurons: error: ${OUT_SLURM}: another \`sweep run\` (pid ${first.pid} on ${os.hostname()}) is using this output folder\n`);
    first.kill('SIGKILL');
    await exited(first);
    const mid = JSON.parse(cli(['sweep', 'status', DEMO, '--out', OUT_SLURM, '--json']).stdout) as { counts: Record<string, number> };
    expect(mid.counts['pending']).toBe(0); // every step is in the queue or done
    expect(mid.counts['queued']! + mid.counts['running']!).toBeGreaterThan(0);
    // A new coordinator finds the jobs in the journal and waits for them: nothing is submitted twice.
    const r = cli(['sweep', 'run', DEMO, '--executor', 'slurm', '--out', OUT_SLURM, '--json'], 300_000);
    expect(r.status, r.stderr).toBe(0);
    const runs = readJournal(OUT_SLURM).filter((e) => e.event === 'run').map((e) => (e as { run: string }).run);
    expect(readJournal(OUT_SLURM).filter((e) => e.event === 'submit' && e.run === runs[1])).toEqual([]);
    expect(readdirSync(path.join(OUT_SLURM, 'logs', 'slurm')).length).toBe(STEPS); // one task per step
    const summary = JSON.parse(r.stdout) as { done: string[]; skipped: string[]; failed: unknown[] };
    expect(summary.failed).toEqual([]);
    expect(summary.done.length + summary.skipped.length).toBe(STEPS); // skipped: done before the second coordinator started
    expect(JSON.parse(cli(['sweep', 'status', DEMO, '--out', OUT_SLURM, '--json']).stdout).counts['done']).toBe(STEPS);
    const submits = readJournal(OUT_SLURM).filter((e) => e.event === 'submit');
    expect(submits.map((e) => e.event === 'submit' && e.kind).sort()).toEqual(['eval', 'finetune', 'identify', 'ppl-matrix', 'profile', 'text']);
    expect(readdirSync(path.join(OUT_SLURM, 'logs', 'slurm')).filter((f) => f.startsWith('eval-r1-')).length).toBe(12);
    // the same numbers as the local run (killed and resumed), and the same weights
    expect(reportNumbers(OUT_SLURM, path.join(tmp, 'report-slurm'))).toEqual(reportNumbers(OUT_LOCAL, path.join(tmp, 'report-local')));
    for (const d of readdirSync(path.join(OUT_LOCAL, 'steps', 'finetune'))) {
      const f = existsSync(path.join(OUT_LOCAL, 'steps', 'finetune', d, 'delta.safetensors')) ? 'delta.safetensors' : 'adapter/adapter_model.safetensors';
      expect(readFileSync(path.join(OUT_SLURM, 'steps', 'finetune', d, f)).equals(readFileSync(path.join(OUT_LOCAL, 'steps', 'finetune', d, f))), d).toBe(true);
    }
  }, 400_000);

  it.skipIf(!slurmUp)('slurm: a failing task is resubmitted, then reported with its log', () => {
    const file = failingSweep();
    const r = cli(['sweep', 'run', file, '--executor', 'slurm', '--out', OUT_SLURM]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/FAILED eval\/udhr20\/ppl\/mt\/iv0-zero after 2 attempt\(s\); log .*eval-r2-\d+_0\.log:\n(.*\n)*.*layer 9 is outside the model's layers 0-3/);
    const journal = readJournal(OUT_SLURM);
    const lastRun = journal.filter((e) => e.event === 'run').at(-1)!;
    const mine = journal.filter((e) => 'run' in e && e.run === (lastRun as { run: string }).run);
    expect(mine.filter((e) => e.event === 'submit').map((e) => e.event === 'submit' && [e.round, e.kind, e.steps])).toEqual([
      [1, 'eval', ['eval/udhr20/ppl/mt/iv0-zero']], [2, 'eval', ['eval/udhr20/ppl/mt/iv0-zero']]]);
    expect(mine.filter((e) => e.event === 'fail').map((e) => e.event === 'fail' && [e.attempt, e.final])).toEqual([[1, false], [2, true]]);
  }, 200_000);

  it('a step killed after its checkpoint continues from it (what a requeued task does) and ends with the same weights', async () => {
    // A longer fine-tuning than the demo's, saved every 2 steps: killed at its first save, run again, it resumes.
    const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
    doc['models'] = path.join(ROOT, 'models', 'udhr20');
    doc['finetune'] = { ...doc['finetune'], methods: ['neurons'], steps: 12, lr: { neurons: 1e-3 } };
    const file = path.join(tmp, 'long.yaml');
    writeFileSync(file, stringify(doc));
    const plan = await planSweep(loadSweep(file), { out: OUT_LOCAL }); // shares the profile, identify and text steps
    const step = plan.byId.get('finetune/udhr20/lape-topRate=0.05/neurons/mt')!;
    const exec = ['sweep', 'exec', file, step.id, '--hash', step.hash, '--out', OUT_LOCAL, '--threads', '1'];
    const child = spawn(process.execPath, [BIN, ...exec], { stdio: 'ignore' });
    const work = `${stepDir(plan, step)}.work`;
    while (!existsSync(path.join(work, 'state', 'state.json')) && child.exitCode === null) await sleep(10);
    child.kill('SIGKILL');
    await exited(child);
    const saved = JSON.parse(readFileSync(path.join(work, 'state', 'state.json'), 'utf8')) as { step: number };
    expect(saved.step).toBeLessThan(12);
    expect(existsSync(stepDir(plan, step))).toBe(false);
    const resumed = cli(exec);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`$ langneurons finetune --resume ${shown(work)}`);
    const delta = readFileSync(path.join(stepDir(plan, step), 'delta.safetensors'));
    // the same step uninterrupted, in a fresh folder of its own
    renameSync(stepDir(plan, step), `${stepDir(plan, step)}-resumed`);
    expect(cli(exec).status).toBe(0);
    expect(readFileSync(path.join(stepDir(plan, step), 'delta.safetensors')).equals(delta)).toBe(true);
  }, 120_000);

  it.skipIf(!slurmUp)('slurm: a requeued task continues its step from the checkpoint and ends with the same weights', async () => {
    // The fine-tuning of the previous test (same hash), now in the Slurm folder, requeued once its first state is saved.
    const doc = parse(readFileSync(path.join(tmp, 'long.yaml'), 'utf8')) as Record<string, any>;
    doc['finetune'].languages = ['mt'];
    doc['eval'] = { ...doc['eval'], languages: ['mt'], base: false, interventions: [] };
    doc['include'] = [{ identify: 'lape-topRate=0.05' }];
    const file = path.join(tmp, 'requeue.yaml');
    writeFileSync(file, stringify(doc));
    const plan = await planSweep(loadSweep(file), { out: OUT_SLURM });
    const step = plan.byId.get('finetune/udhr20/lape-topRate=0.05/neurons/mt')!;
    const coordinator = spawn(process.execPath, [BIN, 'sweep', 'run', file, '--executor', 'slurm', '--out', OUT_SLURM, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    coordinator.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    const work = `${stepDir(plan, step)}.work`;
    const started = Date.now();
    while (!existsSync(path.join(work, 'state', 'state.json')) && Date.now() - started < 120_000) await sleep(20);
    const submit = readJournal(OUT_SLURM).filter((e) => e.event === 'submit' && e.kind === 'finetune').at(-1) as { job: string };
    expect(spawnSync('scontrol', ['requeue', `${submit.job}_0`], { encoding: 'utf8' }).status).toBe(0);
    await exited(coordinator);
    expect(coordinator.exitCode).toBe(0);
    expect((JSON.parse(stdout) as { done: string[] }).done.sort()).toEqual(['eval/udhr20/ppl/mt/ft-neurons@lape-topRate=0.05', step.id]);
    const log = readFileSync(readdirSync(path.join(OUT_SLURM, 'logs', 'slurm')).map((f) => path.join(OUT_SLURM, 'logs', 'slurm', f))
      .find((f) => f.includes(`finetune-r1-${submit.job}_0`))!, 'utf8');
    expect(log).toContain('(restart 1)');
    expect(log).toContain(`$ langneurons finetune --resume ${shown(work)}`);
    expect(readFileSync(path.join(stepDir(plan, step), 'delta.safetensors'))
      .equals(readFileSync(path.join(OUT_LOCAL, 'steps', 'finetune', step.hash, 'delta.safetensors')))).toBe(true);
  }, 200_000);

  it('lss: one step per identification setting, reusing the finished ones, its numbers in the report', async () => {
    const facts = path.join(tmp, 'facts');
    mkdirSync(facts, { recursive: true });
    writeFileSync(path.join(facts, 'P17.jsonl'), [
      { template: '[X] iko [Y].', sub_mt: 'Valletta', obj_mt: 'Malta', sub_sw: 'Dodoma', obj_sw: 'Tanzania' },
      { template: '[X] iko [Y].', sub_mt: 'Mdina', obj_mt: 'Malta', sub_sw: 'Arusha', obj_sw: 'Tanzania' },
    ].map((x) => JSON.stringify(x)).join('\n') + '\n');
    const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
    doc['models'] = path.join(ROOT, 'models', 'udhr20');
    doc['steer'].lss = { facts, settings: 'scale:2,scale:4' };
    const file = path.join(tmp, 'lss.yaml');
    writeFileSync(file, stringify(doc));
    const r = cli(['sweep', 'run', file, '--jobs', '2', '--out', OUT_LOCAL, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { done: string[]; skipped: string[] };
    expect(summary.done.sort()).toEqual(['lss/udhr20/lape-topRate=0.05', 'lss/udhr20/lape-topRate=0.1']);
    expect(summary.skipped.length).toBe(STEPS);
    const dir = path.join(tmp, 'report-lss');
    expect(cli(['sweep', 'report', file, '--outputs', OUT_LOCAL, '--out', dir]).status).toBe(0);
    const plan = await planSweep(loadSweep(file), { out: OUT_LOCAL });
    const lss = JSON.parse(readFileSync(path.join(stepDir(plan, plan.byId.get('lss/udhr20/lape-topRate=0.1')!), 'lss.json'), 'utf8')) as
      { settings: { setting: string; meanLss: number; pairs: { base: string; target: string; lss: number }[] }[] };
    expect(lss.settings.map((x) => x.setting)).toEqual(['scale:2', 'scale:4']);
    expect(lss.settings[0]!.pairs.map((p) => `${p.base}>${p.target}`).sort()).toEqual(['mt>sw', 'sw>mt']);
    const report = JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as { lss: { identify: string; settings: { setting: string; meanLss: number }[] }[] };
    const entry = report.lss.find((l) => l.identify === 'lape-topRate=0.1')!;
    expect(entry.settings.map((x) => [x.setting, x.meanLss])).toEqual(lss.settings.map((x) => [x.setting, x.meanLss]));
    // the mean is over the pairs
    for (const x of lss.settings) expect(x.meanLss).toBeCloseTo(x.pairs.reduce((a, p) => a + p.lss, 0) / x.pairs.length, 12);
    expect(readFileSync(path.join(dir, 'report.html'), 'utf8')).toContain('Language Steering Shift per setting');
  }, 120_000);

  it("Language Arithmetics' forcing (its mean from every language's statistics) and fallback: steps per setting, their numbers in the report", async () => {
    const prompts = path.join(tmp, 'la-prompts');
    mkdirSync(prompts, { recursive: true });
    writeFileSync(path.join(prompts, 'mt.jsonl'), JSON.stringify({ prompt: 'Q: Kulħadd għandu d-dritt? \nA:' }) + '\n');
    writeFileSync(path.join(prompts, 'sw.jsonl'), JSON.stringify({ prompt: 'Q: Kila mtu ana haki? \nA:' }) + '\n');
    const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
    doc['models'] = path.join(ROOT, 'models', 'udhr20');
    doc['steer'].forcing = { prompts, amplify: 'add-mean:1', langid: 'fasttext', maxNewTokens: 12, stop: ['\nQ:', '\nA:'], repetitionPenalty: 1.1 };
    doc['steer'].fallback = { prompts: path.join(prompts, 'mt.jsonl'), deactivate: ['mt', 'sw'], deactivateValue: -1.5, langid: 'fasttext', maxNewTokens: 12 };
    const file = path.join(tmp, 'la.yaml');
    writeFileSync(file, stringify(doc));
    const r = cli(['sweep', 'run', file, '--jobs', '2', '--out', OUT_LOCAL, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { done: string[]; skipped: string[] };
    expect(summary.done.sort()).toEqual(['fallback/udhr20/lape-topRate=0.05', 'fallback/udhr20/lape-topRate=0.1', 'forcing/udhr20/lape-topRate=0.05', 'forcing/udhr20/lape-topRate=0.1']);
    expect(summary.skipped.length).toBe(STEPS);
    const plan = await planSweep(loadSweep(file), { out: OUT_LOCAL });
    const out = (id: string, f: string) => JSON.parse(readFileSync(path.join(stepDir(plan, plan.byId.get(id)!), f), 'utf8'));
    const forcing = out('forcing/udhr20/lape-topRate=0.1', 'forcing.json');
    expect(forcing).toMatchObject({ identifier: 'fasttext', amplify: 'add-mean:1', maxNewTokens: 12, repetitionPenalty: 1.1, stop: ['\nQ:', '\nA:'] });
    expect(forcing.targets.map((t: { target: string }) => t.target)).toEqual(['mt', 'sw']);
    const fallback = out('fallback/udhr20/lape-topRate=0.1', 'fallback.json');
    expect(fallback.steps.map((x: { deactivated: string[] }) => x.deactivated)).toEqual([['mt'], ['mt', 'sw']]);
    const dir = path.join(tmp, 'report-la');
    expect(cli(['sweep', 'report', file, '--outputs', OUT_LOCAL, '--out', dir]).status).toBe(0);
    const report = JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as {
      forcing: { identify: string; meanRate: number; targets: { target: string; rate: number }[] }[];
      fallback: { identify: string; steps: { deactivated: string[]; mostCommon: string | null; distribution: Record<string, number> }[] }[] };
    const fe = report.forcing.find((x) => x.identify === 'lape-topRate=0.1')!;
    expect(fe.meanRate).toBe(forcing.meanRate);
    expect(fe.targets.map((t) => t.rate)).toEqual(forcing.targets.map((t: { forced: { rate: number } }) => t.forced.rate));
    const fb = report.fallback.find((x) => x.identify === 'lape-topRate=0.1')!;
    expect(fb.steps.map((x) => x.distribution)).toEqual([fallback.baseline, ...fallback.steps].map((x: { distribution: unknown }) => x.distribution));
    const html = readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('Language forcing');
    expect(html).toContain('Language fallback');
    expect(readFileSync(path.join(dir, 'report.csv'), 'utf8')).toMatch(/^forcing,udhr20,lape-topRate=0\.1,,mt,,add-mean:1,forced_rate,/m);
  }, 180_000);

  it("Kojima's setting end to end: seven sites profiled per sentence, one joint AP ranking, the matrix of the set of masks, the report's counts", async () => {
    const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
    doc['models'] = path.join(ROOT, 'models', 'udhr20');
    Object.assign(doc['profile'], { scope: 'sentences', countBos: true, dropLong: true, seqMeans: true, sites: 'q,k,v,o,gate,up,down' });
    doc['identify'] = [{ name: 'kojima', method: 'ap', n: 40, sites: 'q,k,v,o,gate,up,down' }];
    delete doc['finetune'];
    delete doc['eval'];
    const file = path.join(tmp, 'kojima.yaml'), out = path.join(tmp, 'kojima-out');
    writeFileSync(file, stringify(doc));
    const r = cli(['sweep', 'run', file, '--jobs', '2', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const plan = await planSweep(loadSweep(file), { out });
    const idDir = stepDir(plan, plan.byId.get('identify/udhr20/kojima')!);
    expect(readdirSync(idDir).filter((f) => /^mask\.\w+\.json$/.test(f)).sort()).toEqual(['down', 'gate', 'k', 'o', 'q', 'up', 'v'].map((x) => `mask.${x}.json`));
    const matrix = JSON.parse(readFileSync(path.join(stepDir(plan, plan.byId.get('ppl-matrix/udhr20/kojima')!), 'matrix.json'), 'utf8'));
    expect(matrix.rows).toEqual(['mt', 'sw']);
    expect(matrix.deltaNll.flat().some((x: number) => Math.abs(x) > 1e-4)).toBe(true);
    const dir = path.join(tmp, 'report-kojima');
    expect(cli(['sweep', 'report', file, '--outputs', out, '--out', dir]).status).toBe(0);
    const report = JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as { neurons: { identify: string; total: Record<string, number> }[] };
    // N units per language over the seven sites together (N/2 top + N/2 bottom of the joint ranking)
    expect(report.neurons.find((n) => n.identify === 'kojima')!.total).toEqual({ mt: 40, sw: 40 });
  }, 180_000);

  it('report: one self-contained page, JSON and CSV whose numbers are the step outputs', async () => {
    const dir = path.join(tmp, 'report-local');
    if (!existsSync(path.join(dir, 'report.json'))) reportNumbers(OUT_LOCAL, dir);
    const html = readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect(html).not.toMatch(/<script|<link |src="http/);
    // figures: 2 deactivation heatmaps, 2 neurons-per-layer charts, training and held-out curves of 2 languages
    expect(html.match(/<svg/g)!.length).toBe(8);
    const plan = await planSweep(loadSweep(DEMO), { out: OUT_LOCAL });
    // eval names a result <task>__<lang>__<variant>__<prompt>__<key>.json (docs/EVAL.md)
    const result = (id: string, prefix: string) => {
      const d = stepDir(plan, plan.byId.get(id)!);
      const f = readdirSync(d).filter((n) => n.startsWith(prefix) && n.endsWith('.json') && !n.endsWith('.items.json'));
      expect(f).toHaveLength(1);
      return JSON.parse(readFileSync(path.join(d, f[0]!), 'utf8')).metrics;
    };
    const base = result('eval/udhr20/ppl/mt/base', 'ppl__mt__base__');
    const lora = result('eval/udhr20/ppl/mt/ft-lora', 'ppl__mt__ft-lora__');
    expect(base.perplexity).toBeCloseTo(Math.exp(base.mean_nll), 9);
    const csv = readFileSync(path.join(dir, 'report.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
    const row = csv.find((c) => c[0] === 'eval' && c[4] === 'mt' && c[6] === 'ft-lora' && c[7] === 'perplexity')!;
    expect(Number(row[8])).toBe(lora.perplexity);
    expect(Number(row[9])).toBe(base.perplexity);
    expect(Number(row[10])).toBeCloseTo(lora.perplexity - base.perplexity, 12);
    // the pivot shows the value and its Δ against the unmodified model
    expect(html).toContain(`${lora.perplexity.toFixed(3)} <span class="${lora.perplexity < base.perplexity ? 'better' : 'worse'}">(${lora.perplexity - base.perplexity >= 0 ? '+' : ''}${(lora.perplexity - base.perplexity).toFixed(3)})</span>`);
    // neuron counts: the CSV's are the mask's
    const mask = JSON.parse(readFileSync(path.join(stepDir(plan, plan.byId.get('identify/udhr20/lape-topRate=0.05')!), 'mask.json'), 'utf8')) as { languages: Record<string, number[][]> };
    const mtNeurons = mask.languages['mt']!.reduce((a, l) => a + l.length, 0);
    expect(Number(csv.find((c) => c[0] === 'neurons' && c[2] === 'lape-topRate=0.05' && c[4] === 'mt')![8])).toBe(mtNeurons);
    expect(csv.filter((c) => c[0] === 'eval' && c[7] === 'perplexity').length).toBe(12);
    // an intervention's rows say which: the spec as written (the sweep's deactivate:{mask}:{lang})
    expect(csv[0]![11]).toBe('intervention');
    expect(csv.find((c) => c[0] === 'eval' && c[4] === 'mt' && c[6] === 'iv0-deactivate@lape-topRate=0.05' && c[7] === 'perplexity')![11]).toBe('deactivate:{mask}:mt');
    expect(html).toContain('Interventions: iv0-deactivate@lape-topRate=0.05 (mt): deactivate:{mask}:mt');
    // every row has the header's 12 fields; fine-tuning rows have no base (their first validation is after training)
    // and give the run's cost per step
    expect(new Set(csv.map((c) => c.length))).toEqual(new Set([12]));
    const ft = csv.filter((c) => c[0] === 'finetune');
    expect(ft.length).toBeGreaterThan(0);
    for (const c of ft) expect(c[9]).toBe('');
    expect(ft.filter((c) => c[7] === 'seconds_per_step').every((c) => Number(c[8]) > 0)).toBe(true);
    expect(ft.filter((c) => c[7] === 'seconds_per_step').length).toBe(ft.filter((c) => c[7] === 'best_valid_loss').length);
  }, 60_000);

  it('report --out: written again over its own report, never over files it did not write', () => {
    const dir = path.join(tmp, 'report-local');
    if (!existsSync(path.join(dir, 'report.json'))) reportNumbers(OUT_LOCAL, dir);
    expect(cli(['sweep', 'report', DEMO, '--outputs', OUT_LOCAL, '--out', dir]).status).toBe(0);
    const foreign = path.join(tmp, 'report-foreign');
    mkdirSync(foreign);
    writeFileSync(path.join(foreign, 'report.html'), 'my page');
    const r = cli(['sweep', 'report', DEMO, '--outputs', OUT_LOCAL, '--out', foreign]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/report-foreign\/report\.html: exists and was not written by sweep report/);
    expect(readFileSync(path.join(foreign, 'report.html'), 'utf8')).toBe('my page');
    expect(readdirSync(foreign)).toEqual(['report.html']);
  }, 60_000);
});
