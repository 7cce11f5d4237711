// Stopping long commands with SIGINT / SIGTERM (Ctrl-C; a scheduler's time limit, scancel, `kill`), found in a QA
// pass of signal handling, each run as a child process of the CLI on the bundled model:
// - `sweep run --executor local` stopped by a signal to the coordinator alone (what `kill <pid>` sends, and what a
//   batch system sends to the main process) left its `sweep exec` workers running, orphaned, and its own
//   `.sweep-run.lock` behind; the workers now get the signal and stop as every command does, and no lock stays;
// - a steering measure stopped while writing its unit log or its csv/svg left `<file>.tmp-<pid>-<hex>` beside its
//   --out for good (it takes no folder, so the dead-writer sweep of output folders never ran there);
// - `stats merge` held no lock: two merges into one --out both wrote it, and its dead temporaries stayed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { processAlive } from '../src/io/atomic.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const model = path.join(repoRoot, 'models', 'udhr20');
let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-signals-qa-'); });
afterAll(async () => { await removeDir(tmp); });

function cli(args: string[], cwd = tmp): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every file under `dir` (relative paths). */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
  }
  return out;
}

/** Spawns the CLI, sends `signal` once `ready()` holds (polled), resolves with how it ended and its stderr. */
function stopWhen(args: string[], ready: () => boolean | Promise<boolean>, signal: NodeJS.Signals, cwd = tmp):
  Promise<{ pid: number; code: number | null; signal: NodeJS.Signals | null; err: string; sent: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let sent = false;
    child.stderr.on('data', (d) => { err += String(d); });
    const poll = setInterval(() => {
      void (async () => {
        if (!sent && await ready()) { sent = true; clearInterval(poll); child.kill(signal); }
      })();
    }, 10);
    child.on('exit', (code, sig) => { clearInterval(poll); resolve({ pid: child.pid!, code, signal: sig, err, sent }); });
  });
}

describe('signals: sweep run', () => {
  it('SIGTERM to the coordinator alone stops its workers too, and leaves no lock', async () => {
    const dir = path.join(tmp, 'sweep');
    await fsp.mkdir(dir);
    // Two profile steps (the whole UDHR of a language in windows of 32 tokens: about a second each) and the identify
    // step that needs them; one worker at a time.
    await fsp.writeFile(path.join(dir, 'sweep.yaml'), [
      'name: signals', 'out: ./out', `models: ${model}`, 'languages: [mt, sw]',
      'profile:', '  corpus: udhr:all', '  tokens: 0', '  maxLen: 32',
      'identify:', '  - method: lape', 'resources:', '  default: { cpus: 1 }', ''].join('\n'));
    const out = path.join(dir, 'out');
    // The worker is mid-step once its profile holds its work folder (src/io/lock.ts): its signal handlers are set.
    const workerBusy = async () => existsSync(out) && (await filesUnder(out)).some((f) => f.endsWith('.langneurons.lock'));
    const stopped = await stopWhen(['sweep', 'run', path.join(dir, 'sweep.yaml'), '--jobs', '1'], workerBusy, 'SIGTERM', dir);
    expect(stopped.sent, stopped.err).toBe(true);
    expect(stopped.signal, stopped.err).toBe('SIGTERM');
    expect(stopped.err).toContain('langneurons: stopped by SIGTERM');

    // The worker the journal names: stopped by the same signal (its own line in its log), not running on.
    const starts = readFileSync(path.join(out, 'journal.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as { event: string; pid?: number; log?: string }).filter((e) => e.event === 'start');
    expect(starts.length).toBeGreaterThan(0);
    const worker = starts.at(-1)!;
    for (let i = 0; i < 200 && processAlive(worker.pid!); i++) await sleep(25);
    expect(processAlive(worker.pid!), `worker ${worker.pid} still running after its coordinator was stopped`).toBe(false);
    expect(readFileSync(worker.log!, 'utf8')).toContain('langneurons: stopped by SIGTERM');

    // No lock of the coordinator (.sweep-run.lock), of the step (<step>.lock) or of the step's command is left.
    expect((await filesUnder(out)).filter((f) => f.endsWith('.lock'))).toEqual([]);

    // The same command finishes the sweep.
    const again = cli(['sweep', 'run', path.join(dir, 'sweep.yaml'), '--jobs', '1', '--json'], dir);
    expect(again.status, again.stderr).toBe(0);
    const summary = JSON.parse(again.stdout) as { done: string[]; skipped: string[]; failed: unknown[] };
    expect(summary.failed).toEqual([]);
    expect(summary.done.length + summary.skipped.length).toBe(3);
  }, 120_000);
});

describe('signals: one-file outputs', () => {
  let mask: string;
  let shards: string[];
  beforeAll(() => {
    const stats = path.join(tmp, 'stats');
    const p = cli(['profile', model, '--corpus', 'udhr:train', '--langs', 'en,de,fr', '--max-len', '64', '--tokens', '2000', '--threads', '1', '--out', stats]);
    expect(p.status, p.stderr).toBe(0);
    mask = path.join(tmp, 'mask.json');
    const m = cli(['identify', stats, '--top-rate', '0.05', '--out', mask]);
    expect(m.status, m.stderr).toBe(0);
    shards = ['1/2', '2/2'].map((k, i) => {
      const o = path.join(tmp, `shard${i}`);
      const r = cli(['profile', model, '--corpus', 'udhr:train', '--langs', 'en', '--max-len', '64', '--shard', k, '--threads', '1', '--out', o]);
      expect(r.status, r.stderr).toBe(0);
      return path.join(o, 'en.safetensors');
    });
  }, 120_000);

  it('steer: the temporaries a stopped run left beside --out are removed by the next run, which resumes', async () => {
    const args = (out: string) => ['steer', 'ppl-matrix', model, '--masks', mask, '--max-tokens', '400', '--threads', '1', '--out', out];
    const ref = path.join(tmp, 'pm-ref', 'pm.json');
    const r = cli(args(ref));
    expect(r.status, r.stderr).toBe(0);

    const out = path.join(tmp, 'pm', 'pm.json');
    const stopped = await stopWhen(args(out), () => existsSync(`${out}.partial.jsonl`), 'SIGTERM');
    expect(stopped.signal, stopped.err).toBe('SIGTERM');
    expect(stopped.err).toContain('langneurons: stopped by SIGTERM');
    expect(existsSync(`${out}.lock`)).toBe(false);
    // What a stop in the middle of a write leaves (seen in the QA pass: the unit log's rewrite, the csv): the
    // temporaries of the stopped run, whose pid is now dead. A user's file of another name is not ours.
    const dir = path.dirname(out);
    const left = [`pm.json.partial.jsonl.tmp-${stopped.pid}-0badc0de`, `pm.csv.tmp-${stopped.pid}-1badc0de`, `pm.json.tmp-${stopped.pid}-2badc0de`];
    const users = `notes.txt.tmp-${stopped.pid}-3badc0de`;
    for (const f of [...left, users]) await fsp.writeFile(path.join(dir, f), 'half');

    const again = cli(args(out));
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resumed: \d+ finished unit\(s\)/);
    expect((await fsp.readdir(dir)).sort()).toEqual(['pm.csv', 'pm.json', 'pm.svg', users].sort());
    // The result an uninterrupted run writes (its timing apart).
    const untimed = (f: string) => JSON.stringify(JSON.parse(readFileSync(f, 'utf8')), (k, v: unknown) => (k === 'seconds' ? undefined : v));
    expect(untimed(out)).toBe(untimed(ref));
    for (const f of ['pm.csv', 'pm.svg'])
      expect(readFileSync(path.join(dir, f)).equals(readFileSync(path.join(path.dirname(ref), f))), f).toBe(true);
  }, 120_000);

  it('stats merge: one merge per --out, refused in one line while another holds it; dead temporaries removed', async () => {
    const out = path.join(tmp, 'merged', 'en.safetensors');
    await fsp.mkdir(path.dirname(out));
    // A live holder (this test process) of the merge's lock, as a running `stats merge` writes it.
    await fsp.writeFile(`${out}.lock`, JSON.stringify({ pid: process.pid, hostname: os.hostname(), command: 'stats merge', started: new Date().toISOString() }) + '\n');
    const busy = cli(['stats', 'merge', ...shards, '--out', out]);
    expect(busy.status).toBe(1);
    expect(busy.stderr.trim().split('\n')).toHaveLength(1);
    expect(busy.stderr).toContain(`in use by stats merge (pid ${process.pid}`);
    expect(existsSync(out)).toBe(false);

    // The holder gone: a merge killed while writing left its temporary (a dead pid); the next merge takes over.
    await fsp.rm(`${out}.lock`);
    const dead = spawnSync(process.execPath, ['-e', ''], {}).pid!;
    const half = `${out}.tmp-${dead}-0badc0de`;
    await fsp.writeFile(half, 'half');
    const ok = cli(['stats', 'merge', ...shards, '--out', out]);
    expect(ok.status, ok.stderr).toBe(0);
    expect((await fsp.readdir(path.dirname(out))).sort()).toEqual(['en.safetensors']);
  }, 120_000);
});
