// Defects of `langneurons sweep` found by QA (each test failed before its fix): Slurm arrays beyond MaxArraySize,
// `sweep status` of array tasks and of steps a failed one blocks, a coordinator killed while sbatch ran, a squeue that
// times out once, '%' in the output folder, two coordinators in one Slurm allocation, corpora checked when the sweep
// is read (a bad manifest refused before anything is written), and the inputs behind a manifest, a <lang>/ folder or
// a dataset folder (and files larger than a string) in the step hashes. Slurm tests are skipped without a cluster
// (scripts/slurm-local.sh up).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';

import { udhrLanguages } from '../src/corpus/udhr.js';
import { acquireLock, appendJournal, readJournal } from '../src/sweep/journal.js';
import { loadSweep } from '../src/sweep/load.js';
import { planSweep, stepDir } from '../src/sweep/plan.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'langneurons.js');
const DEMO = path.join(ROOT, 'examples', 'sweep-demo.yaml');
const MODEL = path.join(ROOT, 'models', 'udhr20');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-sweep-qa-'));
const slurmUp = spawnSync('sinfo', ['-h'], { encoding: 'utf8' }).status === 0;
const SBATCH = spawnSync('sh', ['-c', 'command -v sbatch'], { encoding: 'utf8' }).stdout.trim();
const SQUEUE = spawnSync('sh', ['-c', 'command -v squeue'], { encoding: 'utf8' }).stdout.trim();
let n = 0;

const cli = (args: string[], o: { env?: NodeJS.ProcessEnv; timeout?: number } = {}) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: o.timeout ?? 180_000, ...(o.env ? { env: o.env } : {}) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A corpus folder of two languages, a few sentences each (a step of its sweep takes a second). */
function corpus(badMt = false): string {
  const dir = path.join(tmp, `corpus-${n++}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'mt.jsonl'), `${badMt ? '{broken\n' : ''}{"text": "Il-bnedmin kollha jitwieldu ħielsa u ugwali fid-dinjità u d-drittijiet."}\n`);
  writeFileSync(path.join(dir, 'sw.txt'), 'Kila mtu amezaliwa huru na sawa kwa utu na haki.\nWote wamejaliwa akili na dhamiri.\n');
  return dir;
}
/** A three-step sweep (profile mt, profile sw, identify), written to a fresh file. */
function smallSweep(doc: Record<string, unknown> = {}, dir = tmp): string {
  const file = path.join(dir, `small-${n++}.yaml`);
  writeFileSync(file, stringify({
    name: 'qa', out: path.join(tmp, `out-${n}`), models: MODEL, languages: ['mt', 'sw'],
    profile: { corpus: corpus(), tokens: 20, maxLen: 8 }, identify: [{ method: 'lape', topRate: 0.1 }], retries: 0, slurm: { poll: 0.5 }, ...doc,
  }));
  return file;
}
/** The demo sweep with changes. */
function demoVariant(change: (doc: Record<string, any>) => void): string {
  const doc = parse(readFileSync(DEMO, 'utf8')) as Record<string, any>;
  doc['models'] = MODEL;
  change(doc);
  const file = path.join(tmp, `demo-${n++}.yaml`);
  writeFileSync(file, stringify(doc));
  return file;
}
/** A folder in front of PATH holding `name`, a shell script. */
function wrapper(name: string, body: string): NodeJS.ProcessEnv {
  const dir = path.join(tmp, `bin-${n++}`);
  mkdirSync(dir);
  writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(path.join(dir, name), 0o755);
  return { ...process.env, PATH: `${dir}:${process.env['PATH']}` };
}

describe('sweep status', () => {
  it('a step not run because a step it needs failed says so', () => {
    const file = smallSweep({ profile: { corpus: corpus(true), tokens: 20, maxLen: 8 } });
    expect(cli(['sweep', 'run', file]).status).toBe(1);
    const st = JSON.parse(cli(['sweep', 'status', file, '--json']).stdout) as { steps: { id: string; state: string; detail?: string }[] };
    const byId = new Map(st.steps.map((s) => [s.id, s]));
    expect(byId.get('profile/udhr20/mt')!.state).toBe('failed');
    expect(byId.get('identify/udhr20/lape-topRate=0.1')).toMatchObject({ state: 'pending', detail: 'not run: it needs profile/udhr20/mt, which failed' });
  }, 60_000);

  it("another node's step lock is running only while squeue shows the step's task running (a dead node's lock is not)", async () => {
    const file = smallSweep();
    const plan = await planSweep(loadSweep(file));
    const step = plan.steps[0]!;
    appendJournal(plan.out, { event: 'run', executor: 'slurm', run: 'r', pid: 1, host: os.hostname() });
    appendJournal(plan.out, { event: 'submit', run: 'r', round: 1, kind: step.kind, job: '4242', script: 'x', steps: [step.id], hashes: [step.hash] });
    mkdirSync(path.dirname(stepDir(plan, step)), { recursive: true });
    writeFileSync(`${stepDir(plan, step)}.lock`, JSON.stringify({ pid: 1234, host: 'node-that-died', job: '4243' }));
    // squeue as the cluster answers `squeue -h -r -o '%F|%i|%T|%r|%j' --me`
    const stateWith = (squeue: string) => {
      const r = cli(['sweep', 'status', file, '--json'], { env: wrapper('squeue', squeue) });
      expect(r.status, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { steps: { id: string; state: string; detail?: string }[] }).steps.find((s) => s.id === step.id);
    };
    expect(stateWith("printf '4242|4242_0|RUNNING|None|ln-qa\\n'")).toMatchObject({ state: 'running', detail: 'pid 1234 on node-that-died, Slurm job 4243' });
    // the node died: the task requeued (waiting), or gone from the queue; the old code said running in both
    expect(stateWith("printf '4242|4242_0|PENDING|BeginTime|ln-qa\\n'")).toMatchObject({ state: 'queued', detail: 'Slurm 4242_0 PENDING' });
    expect(stateWith('exit 0')).toMatchObject({ state: 'pending' });
    // squeue not answering: nothing is known of the other node, so its lock stands
    expect(stateWith("echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1")).toMatchObject({ state: 'running' });
  }, 60_000);

  it.skipIf(!slurmUp)('slurm: the tasks of an array waiting behind its running task are queued, not running', async () => {
    const file = smallSweep();
    const plan = await planSweep(loadSweep(file));
    const ids = plan.steps.map((s) => s.id);
    // One array of three tasks, one at a time (%1): task 0 runs, tasks 1 and 2 wait (squeue shows them as 123_[1-2]).
    const job = spawnSync('sbatch', ['--parsable', '--job-name=ln-qa-profile', '--array=0-2%1', '-o', '/dev/null', '--wrap', 'sleep 30'], { encoding: 'utf8' }).stdout.trim();
    try {
      appendJournal(plan.out, { event: 'run', executor: 'slurm', run: 'r', pid: 1, host: os.hostname() });
      appendJournal(plan.out, { event: 'submit', run: 'r', round: 1, kind: 'profile', job, script: 'x', steps: ids, hashes: plan.steps.map((s) => s.hash) });
      const started = Date.now();
      while (!spawnSync('squeue', ['-h', '-r', '-j', job, '-o', '%i %T'], { encoding: 'utf8' }).stdout.includes(`${job}_0 RUNNING`) && Date.now() - started < 30_000) await sleep(200);
      const st = JSON.parse(cli(['sweep', 'status', file, '--json']).stdout) as { steps: { id: string; state: string }[] };
      expect(st.steps.map((s) => s.state)).toEqual(['running', 'queued', 'queued']);
    } finally {
      spawnSync('scancel', [job]);
    }
  }, 60_000);
});

describe('sweep run --executor slurm', () => {
  it('more steps of a kind than MaxArraySize are submitted as several arrays', async () => {
    const data = path.join(tmp, 'data');
    mkdirSync(data, { recursive: true });
    const langs = udhrLanguages().slice(0, 100).map((l) => l.id);
    const file = demoVariant((d) => {
      d['languages'] = langs; d['lowResource'] = langs.slice(0, 10);
      d['identify'] = [{ method: 'lape', topRate: 0.05 }];
      d['finetune'].methods = ['full', 'mlp', 'neurons', 'random', 'lora'];
      delete d['finetune'].lr;
      d['eval'] = { tasks: ['ppl', 'belebele', 'xnli'], text: 'udhr:heldout', data };
    });
    const out = path.join(tmp, 'big');
    const r = cli(['sweep', 'run', file, '--executor', 'slurm', '--dry-run', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const scripts = readdirSync(path.join(out, 'slurm')).filter((f) => /^r1-eval(-\d+)?\.sh$/.test(f));
    const max = slurmUp ? Number(/MaxArraySize\s*=\s*(\d+)/.exec(spawnSync('scontrol', ['show', 'config'], { encoding: 'utf8' }).stdout)![1]) : 1001;
    const steps: string[] = [];
    for (const f of scripts) {
      const text = readFileSync(path.join(out, 'slurm', f), 'utf8');
      const last = Number(/#SBATCH --array=0-(\d+)\n/.exec(text)![1]);
      expect(last, f).toBeLessThan(max);
      steps.push(...[.../steps=\((.*)\)/.exec(text)![1]!.matchAll(/\S+/g)].map((m) => m[0]));
      if (slurmUp) expect(spawnSync('sbatch', ['--test-only', path.join(out, 'slurm', f)], { encoding: 'utf8' }).stderr).not.toMatch(/error|Invalid/i);
    }
    expect(steps.length).toBe(1800);
    expect(new Set(steps).size).toBe(1800);
    // the submit script waits for each array of the steps a kind reads
    expect(readFileSync(path.join(out, 'slurm', 'submit.sh'), 'utf8')).toMatch(/\neval_2=\$\(sbatch --parsable --dependency=afterok:\S*\$finetune/);
  }, 60_000);

  it.skipIf(!slurmUp)("an output folder with '%' in its path: each task's log is where the coordinator reads it", () => {
    const file = smallSweep({ out: path.join(tmp, 'p%x 50%', 'out') });
    const r = cli(['sweep', 'run', file, '--executor', 'slurm', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = path.join(tmp, 'p%x 50%', 'out');
    expect(readdirSync(path.join(out, 'logs', 'slurm')).sort()).toEqual([
      expect.stringMatching(/^identify-r1-\d+_0\.log$/), expect.stringMatching(/^profile-r1-\d+_0\.log$/), expect.stringMatching(/^profile-r1-\d+_1\.log$/)]);
  }, 120_000);

  it.skipIf(!slurmUp)('a coordinator killed while sbatch runs: the next one finds the job and submits nothing twice', async () => {
    const file = smallSweep();
    const mark = path.join(tmp, `mark-${n++}`);
    // sbatch submits, then hangs (a slow controller) the first time: the coordinator is killed before it journals the job
    const env = wrapper('sbatch', `${SBATCH} "$@" || exit $?\n[ -e '${mark}' ] || { touch '${mark}'; sleep 60; }`);
    const first = spawn(process.execPath, [BIN, 'sweep', 'run', file, '--executor', 'slurm'], { env, detached: true, stdio: 'ignore' });
    const started = Date.now();
    while (!existsSync(mark) && Date.now() - started < 30_000) await sleep(100);
    await sleep(300);
    process.kill(-first.pid!, 'SIGKILL');
    const out = (await planSweep(loadSweep(file))).out;
    expect(readJournal(out).filter((e) => e.event === 'submit')).toEqual([]);
    const r = cli(['sweep', 'run', file, '--executor', 'slurm', '--json']);
    expect(r.status, r.stderr).toBe(0);
    // one task per step: the profile array of the killed coordinator was waited for, not submitted again
    const logs = readdirSync(path.join(out, 'logs', 'slurm'));
    expect(logs.filter((f) => f.startsWith('profile-')).length).toBe(2);
    expect(logs.length).toBe(3);
  }, 120_000);

  it.skipIf(!slurmUp)('a squeue that times out once does not end the coordinator', () => {
    const file = smallSweep();
    const mark = path.join(tmp, `mark-${n++}`);
    const env = wrapper('squeue', `[ -e '${mark}' ] || { touch '${mark}'; echo 'squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation' >&2; exit 1; }\nexec ${SQUEUE} "$@"`);
    const r = cli(['sweep', 'run', file, '--executor', 'slurm', '--json'], { env });
    expect(existsSync(mark)).toBe(true);
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { done: string[] }).done.length).toBe(3);
  }, 120_000);
});

describe('two coordinators', () => {
  it('in one Slurm allocation (the same SLURM_JOB_ID): the second is refused while the first lives', async () => {
    const out = path.join(tmp, 'alloc');
    mkdirSync(out);
    const live = spawn('sleep', ['30'], { stdio: 'ignore' });
    const lock = path.join(out, '.sweep-run.lock');
    writeFileSync(lock, JSON.stringify({ pid: live.pid, host: os.hostname(), job: '4242' }));
    const saved = process.env['SLURM_JOB_ID'];
    process.env['SLURM_JOB_ID'] = '4242';
    try {
      await expect(acquireLock(lock, (w) => `busy: pid ${w.pid}`)).rejects.toThrow(`busy: pid ${live.pid}`);
      // once it is gone, its lock is taken over
      live.kill();
      await new Promise((r) => live.on('close', r));
      const release = await acquireLock(lock, () => 'busy');
      expect(JSON.parse(readFileSync(lock, 'utf8')).pid).toBe(process.pid);
      release();
    } finally {
      if (saved === undefined) delete process.env['SLURM_JOB_ID']; else process.env['SLURM_JOB_ID'] = saved;
      live.kill();
    }
  });
});

describe('corpora and inputs of a sweep', () => {
  it('a bad corpus manifest is refused when the sweep is read, in one line naming the key, before anything is written', () => {
    const dir = corpus();
    const manifest = path.join(tmp, `manifest-${n++}.json`);
    writeFileSync(manifest, JSON.stringify({ languages: { mt: { files: [path.join(dir, 'mt.jsonl')] }, sw: { files: [path.join(dir, 'sw.txt'), path.join(dir, 'gone.txt')] } } }));
    const out = path.join(tmp, `never-${n++}`);
    const file = smallSweep({ out, profile: { corpus: manifest, tokens: 20, maxLen: 8 } });
    const line = readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes('corpus:')) + 1;
    for (const args of [['plan'], ['run', '--executor', 'slurm', '--dry-run'], ['run']]) {
      const r = cli(['sweep', args[0]!, file, ...args.slice(1)]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(`langneurons: error: ${file}:${line}: profile.corpus: ${path.join(dir, 'gone.txt')}: file not found (corpus language "sw")\n`);
      expect(existsSync(out)).toBe(false);
    }
    writeFileSync(manifest, JSON.stringify({ languages: { mt: { files: [path.join(dir, 'mt.jsonl')], feild: 'x' }, sw: { files: [path.join(dir, 'sw.txt')] } } }));
    expect(cli(['sweep', 'plan', file]).stderr).toMatch(/^langneurons: error: .*:\d+: profile\.corpus: .*: unknown key "feild" in languages\.mt/);
  });

  it("a corpus file behind a manifest or in a <lang>/ folder, and a dataset file, are inputs: edited, their steps run again", async () => {
    const dir = corpus();
    mkdirSync(path.join(dir, 'sw'));
    writeFileSync(path.join(dir, 'sw', 'part-1.txt'), 'Kila mtu ana haki.\n');
    const manifest = path.join(tmp, `manifest-${n++}.json`);
    writeFileSync(manifest, JSON.stringify({ languages: { mt: { files: [path.join(dir, 'mt.jsonl')] }, sw: { files: [path.join(dir, 'sw.txt')] } } }));
    const folder = path.join(tmp, `folder-${n++}`);
    mkdirSync(path.join(folder, 'sw'), { recursive: true });
    writeFileSync(path.join(folder, 'mt.txt'), 'Il-bnedmin kollha.\n');
    writeFileSync(path.join(folder, 'sw', 'part-1.txt'), 'Kila mtu ana haki.\n');
    const hashesOf = async (file: string) => new Map((await planSweep(loadSweep(file))).steps.map((s) => [s.id, s.hash]));
    for (const [spec, edit, lang] of [[manifest, path.join(dir, 'mt.jsonl'), 'mt'], [folder, path.join(folder, 'sw', 'part-1.txt'), 'sw']] as const) {
      const file = smallSweep({ profile: { corpus: spec, tokens: 20, maxLen: 8 } });
      const a = await hashesOf(file);
      expect(await hashesOf(file)).toEqual(a);
      writeFileSync(edit, readFileSync(edit, 'utf8') + (edit.endsWith('.jsonl') ? '{"text": "Aktar test."}\n' : 'Zaidi.\n'));
      const b = await hashesOf(file);
      const other = lang === 'mt' ? 'sw' : 'mt';
      expect(b.get(`profile/udhr20/${lang}`), spec).not.toBe(a.get(`profile/udhr20/${lang}`));
      expect(b.get(`profile/udhr20/${other}`), spec).toBe(a.get(`profile/udhr20/${other}`));
    }
    // eval data (a dataset folder, files in subfolders): the evaluations that read it
    const data = path.join(tmp, `data-${n++}`);
    mkdirSync(path.join(data, 'belebele'), { recursive: true });
    writeFileSync(path.join(data, 'belebele', 'mlt_Latn.jsonl'), '{}\n');
    const file = demoVariant((d) => { d['eval'] = { tasks: ['belebele'], data }; delete d['finetune']; });
    const a = await hashesOf(file);
    writeFileSync(path.join(data, 'belebele', 'mlt_Latn.jsonl'), '{"a": 1}\n');
    const b = await hashesOf(file);
    expect(b.get('eval/udhr20/belebele/mt/base')).not.toBe(a.get('eval/udhr20/belebele/mt/base'));
    expect(b.get('profile/udhr20/mt')).toBe(a.get('profile/udhr20/mt'));
  });

  it('a corpus file larger than a string can be is hashed (sweep plan does not crash)', () => {
    const dir = corpus();
    const fd = openSync(path.join(dir, 'mt.txt'), 'w');
    closeSync(fd);
    spawnSync('truncate', ['-s', '600M', path.join(dir, 'mt.txt')]);
    writeFileSync(path.join(dir, 'mt.txt'), 'x', { flag: 'r+' }); // not empty at its start; the rest a hole (no disk)
    spawnSync('rm', [path.join(dir, 'mt.jsonl')]);
    const file = smallSweep({ profile: { corpus: dir, tokens: 20, maxLen: 8 } });
    const r = cli(['sweep', 'plan', file, '--json']);
    spawnSync('rm', [path.join(dir, 'mt.txt')]);
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { steps: unknown[] }).steps.length).toBe(3);
  }, 60_000);
});

describe('input digests kept between plans (every sweep exec task plans the whole sweep)', () => {
  it('a run folder records each input file\u2019s digest; a plan trusts it while the file\u2019s stat is unchanged, reads a changed file again', async () => {
    const file = smallSweep();
    const doc = parse(readFileSync(file, 'utf8')) as { out: string; profile: { corpus: string } };
    const sw = path.join(doc.profile.corpus, 'sw.txt');
    const record = path.join(doc.out, 'input-digests.json');
    const profileSw = async () => (await planSweep(loadSweep(file))).byId.get('profile/udhr20/sw')!.hash;
    // A sweep never run: planning writes nothing.
    const fresh = await profileSw();
    expect(existsSync(doc.out)).toBe(false);
    // A run's folder (its journal): the digests are recorded, the real content's sha256 (its latin1 text's, as always).
    mkdirSync(doc.out, { recursive: true });
    appendJournal(doc.out, { event: 'run', executor: 'local', run: 'r1', pid: process.pid, host: os.hostname() });
    expect(await profileSw()).toBe(fresh);
    const digests = JSON.parse(readFileSync(record, 'utf8')) as { files: Record<string, { stat: string; sha256: string }> };
    const { createHash } = await import('node:crypto');
    expect(digests.files[sw]!.sha256).toBe(createHash('sha256').update(readFileSync(sw).toString('latin1')).digest('hex'));
    // Trusted while the stat holds: a recorded digest stands in for the content (the file is not read again).
    digests.files[sw]!.sha256 = '0'.repeat(64);
    writeFileSync(record, JSON.stringify({ ...digests }));
    expect(await profileSw()).not.toBe(fresh);
    // Changed (same size, new content and times): read again, the recorded digest replaced.
    writeFileSync(sw, readFileSync(sw, 'utf8').replace('Kila', 'KILA'));
    const edited = await profileSw();
    expect(edited).not.toBe(fresh);
    writeFileSync(sw, readFileSync(sw, 'utf8').replace('KILA', 'Kila'));
    expect(await profileSw()).toBe(fresh);
    expect(JSON.parse(readFileSync(record, 'utf8')).files[sw].sha256).not.toBe('0'.repeat(64));
  }, 60_000);
});

describe('slurm --dry-run: submit.sh', () => {
  it('takes the job id of `sbatch --parsable` where it prints <job>;<cluster> (a multi-cluster setup)', () => {
    const out = path.join(tmp, `dry-${n++}`);
    expect(cli(['sweep', 'run', smallSweep(), '--executor', 'slurm', '--dry-run', '--out', out, '--json']).status).toBe(0);
    const calls = path.join(tmp, `sbatch-calls-${n++}`);
    // a stand-in sbatch: job ids 100, 101, … with the cluster's name, as sbatch --parsable prints them there
    const env = wrapper('sbatch', `c=$(cat "${calls}.n" 2>/dev/null || echo 100); echo $((c + 1)) > "${calls}.n"; echo "$@" >> "${calls}"; echo "$c;clusterA"`);
    const r = spawnSync('bash', [path.join(out, 'slurm', 'submit.sh')], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);  // the profile array, then identify after it
    expect(lines[1]).toMatch(/^--parsable --dependency=afterok:100 --kill-on-invalid-dep=yes \S+r1-identify\.sh$/);
  });
});
