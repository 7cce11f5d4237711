// Reliability of fine-tuning runs (issue 19, items 2, 3, 12, 14): runs killed with SIGKILL at random points and
// resumed end bit-identical to an uninterrupted run; a run killed before its first save resumes from step 0 or is
// taken over; a folder that is not a run is never touched; two runs cannot share a folder; a torn log line is
// tolerated at the end and named elsewhere.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { LOCK_FILE } from '../src/io/lock.js';
import { finetune, resume, type FinetuneOptions } from '../src/train/finetune.js';
import { xorshift32 } from './helpers/fixtures.js';

const repoRoot = path.resolve(__dirname, '..');
const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const STORIES = path.resolve(repoRoot, '../shared/fixtures/models/stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-ft-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const trainFile = path.join(tmp, 'mt.txt');
writeFileSync(trainFile, udhrArticles('mt').filter((a) => a.number <= 4).map((a) => a.text).join('\n') + '\n');
const STEPS = 12;
const opts: FinetuneOptions = { method: 'mlp', train: trainFile, chunk: 48, batch: 2, steps: STEPS, saveEvery: 2, evalEvery: 0, lr: 1e-3, threads: 1, writeModel: false };
const cliArgs = ['--method', 'mlp', '--train', trainFile, '--chunk', '48', '--batch', '2', '--steps', String(STEPS), '--save-every', '2',
  '--eval-every', '0', '--lr', '1e-3', '--threads', '1', '--quiet'];

/** train.jsonl without the timing fields. */
function logOf(run: string): unknown[] {
  return readFileSync(path.join(run, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const e = JSON.parse(l) as Record<string, unknown>;
    delete e['tokensPerSecond'];
    delete e['seconds'];
    return e;
  });
}

function deltaOf(run: string): Buffer { return readFileSync(path.join(run, 'delta.safetensors')); }

let reference: string;
async function referenceRun(): Promise<string> {
  reference ??= await (async () => {
    const dir = path.join(tmp, 'reference');
    await finetune(STORIES, opts, dir);
    return dir;
  })();
  return reference;
}

/** A seeded generator (xorshift), so a failing schedule of kills can be replayed with RELIABILITY_SEED. */
function rng(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 2 ** 32;
}

/** Runs the CLI and SIGKILLs it after `ms` (if still running); resolves with the exit code or the signal. */
function runAndKill(args: string[], ms: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve(signal ?? `exit ${code}${code ? `: ${err.trim()}` : ''}`); });
  });
}

describe('fine-tuning runs killed at random points', () => {
  it('SIGKILL at random times, then resume: the delta and the log equal an uninterrupted run\'s, bit for bit', async () => {
    const ref = await referenceRun();
    const seed = Number(process.env['RELIABILITY_SEED'] ?? Date.now() % 100000);
    const random = rng(seed);
    // How long an uninterrupted CLI run takes here (start-up included): kills are spread over that time, so they
    // land in start-up, training steps, saves and the final outputs. (The CLI run equals the API run.)
    const cliRef = path.join(tmp, 'cli-reference');
    const t0 = performance.now();
    const whole = spawnSync(process.execPath, [bin, 'finetune', STORIES, '--out', cliRef, ...cliArgs], { encoding: 'utf8', timeout: 120_000 });
    const duration = performance.now() - t0;
    expect(whole.status, whole.stderr).toBe(0);
    expect(deltaOf(cliRef).equals(deltaOf(ref))).toBe(true);
    const run = path.join(tmp, 'killed');
    const outcomes: string[] = [];
    for (let k = 0; k < 5; k++) {
      const args = existsSync(path.join(run, 'run.json')) ? ['finetune', '--resume', run, '--quiet'] : ['finetune', STORIES, '--out', run, ...cliArgs];
      outcomes.push(await runAndKill(args, random() * 0.9 * duration));
      if (outcomes.at(-1)!.startsWith('exit 0')) break;
    }
    console.log(`kill schedule seed ${seed}: ${outcomes.join(', ')}`);
    for (const o of outcomes) expect(o, `seed ${seed}`).toMatch(/^(SIGKILL|exit 0)$/);
    if (outcomes.at(-1) !== 'exit 0') { // killed last (perhaps while writing the final outputs): finish it
      const args = existsSync(path.join(run, 'run.json')) ? ['finetune', '--resume', run, '--quiet'] : ['finetune', STORIES, '--out', run, ...cliArgs];
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, `seed ${seed}: ${r.stderr}`).toBe(0);
    }
    expect(deltaOf(run).equals(deltaOf(ref)), `seed ${seed}`).toBe(true);
    expect(logOf(run)).toEqual(logOf(ref));
    expect(existsSync(path.join(run, LOCK_FILE))).toBe(false);
    expect((await fsp.readdir(run, { recursive: true })).filter((n) => String(n).includes('.tmp-'))).toEqual([]);
  }, 180_000);

  it('a run stopped before its first save resumes from step 0, or a new run takes its folder over', async () => {
    const ref = await referenceRun();
    const a = path.join(tmp, 'no-save-resume');
    await finetune(STORIES, { ...opts, saveEvery: 100 }, a, { stopAfterStep: 1 });
    expect(existsSync(path.join(a, 'state'))).toBe(false);
    // The run is continued with the options it recorded (saveEvery 100 changes no number).
    await resume(a);
    expect(deltaOf(a).equals(deltaOf(ref))).toBe(true);
    expect(logOf(a)).toEqual(logOf(ref));

    const b = path.join(tmp, 'no-save-takeover');
    await finetune(STORIES, { ...opts, saveEvery: 100 }, b, { stopAfterStep: 1 });
    await finetune(STORIES, opts, b);
    expect(deltaOf(b).equals(deltaOf(ref))).toBe(true);
    // With a save, a new run is refused (and the save is kept).
    await expect(finetune(STORIES, opts, b)).rejects.toThrow(/already holds a run; continue it with --resume/);
  }, 120_000);

  it('a torn last line of train.jsonl is dropped on resume; a damaged earlier line is named; orphaned temp files go', async () => {
    const ref = await referenceRun();
    const run = path.join(tmp, 'torn');
    await finetune(STORIES, opts, run, { stopAfterStep: 4 });
    const log = path.join(run, 'train.jsonl');
    const good = readFileSync(log, 'utf8');
    writeFileSync(log, good + '{"step":5,"loss":3.1');
    const orphan = path.join(run, 'state', 'state.safetensors.tmp-999999999-deadbeef');
    writeFileSync(orphan, 'half a save');
    await resume(run, { stopAfterStep: 6 });
    expect(existsSync(orphan)).toBe(false);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    writeFileSync(log, [lines[0], '{"step":2,"lo', ...lines.slice(2)].join('\n') + '\n');
    await expect(resume(run)).rejects.toThrow(new RegExp(`${log.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: line 2 is not JSON`));
    writeFileSync(log, lines.join('\n') + '\n');
    await resume(run);
    expect(deltaOf(run).equals(deltaOf(ref))).toBe(true);
    expect(logOf(run)).toEqual(logOf(ref));
  }, 120_000);

  it('never writes into a folder that is not a run, nor into one another run holds', async () => {
    const foreign = path.join(tmp, 'foreign');
    await fsp.mkdir(foreign);
    writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
    await expect(finetune(STORIES, opts, foreign)).rejects.toThrow(/foreign: is not empty and is not a fine-tuning run \(holds notes\.txt\)/);
    expect(await fsp.readdir(foreign)).toEqual(['notes.txt']);

    const busy = path.join(tmp, 'busy');
    await fsp.mkdir(busy);
    // A live process (this test's parent) on this host holds the folder.
    writeFileSync(path.join(busy, LOCK_FILE), JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'finetune', started: 'now' }));
    await expect(finetune(STORIES, opts, busy)).rejects.toThrow(/busy: in use by finetune \(pid \d+ on /);
    expect(await fsp.readdir(busy)).toEqual([LOCK_FILE]);
  }, 60_000);

  it('two CLI runs started together into one folder: exactly one runs, the other is refused in one line', async () => {
    const run = path.join(tmp, 'race');
    const start = () => new Promise<{ code: number | null; err: string }>((resolve) => {
      const c = spawn(process.execPath, [bin, 'finetune', STORIES, '--out', run, ...cliArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      c.on('exit', (code) => resolve({ code, err }));
    });
    const [x, y] = await Promise.all([start(), start()]);
    const codes = [x.code, y.code].sort();
    expect(codes).toEqual([0, 1]);
    const loser = x.code === 1 ? x : y;
    expect(loser.err.trim().split('\n')).toHaveLength(1);
    expect(loser.err).toMatch(/in use by finetune|already holds a run/);
    expect(logOf(run)).toEqual(logOf(await referenceRun()));
  }, 120_000);

  it('weights replaced under the same path are not resumed into the run', async () => {
    const base = path.join(tmp, 'base-copy');
    await fsp.cp(STORIES, base, { recursive: true });
    const run = path.join(tmp, 'swapped');
    await finetune(base, opts, run, { stopAfterStep: 2 });
    const w = path.join(base, 'model.safetensors');
    const bytes = readFileSync(w);
    bytes[bytes.length - 5] ^= 0x40; // same shapes, other values
    writeFileSync(w, bytes);
    await expect(resume(run)).rejects.toThrow(/swapped: the weights at .*base-copy changed since the run started/);
  }, 60_000);
});
