// Reliability of saves (issue 19, items 1, 2, 6, 12): an optimizer state over 2 GiB saves and loads (tensors are
// streamed, never one fs.readFile), a save is one atomic file, temporary files are created exclusively and never
// follow a planted link, leftovers of dead writers are removed, and an output folder has one writer at a time.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, promises as fsp, readdirSync, readFileSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { openExclusive, processAlive, removeOrphanTemps, writeFileAtomic } from '../src/io/atomic.js';
import { sha256File } from '../src/io/files.js';
import { acquireOutputLock, LOCK_FILE } from '../src/io/lock.js';
import { ensureOutputDir } from '../src/io/outdir.js';
import type { Arena, NativeParamInfo } from '../src/train/native.js';
import { loadState, saveState, STATE_META_KEY } from '../src/train/state.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-state-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

/** A pid that certainly belongs to no process: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

/** A trainer stand-in: one parameter of `size` floats per role, arenas held as given. */
function fakeTrainer(sizes: number[]) {
  const params: NativeParamInfo[] = sizes.map((size, id) => ({ id, role: 'embed', layer: -1, mode: 'dense', present: true, rows: size, cols: 1, size, index: null }));
  const written = new Map<string, Float32Array>();
  let stepCount = -1;
  return {
    params: () => params,
    read: (a: Arena, id: number) => Float32Array.from({ length: sizes[id]! }, (_, i) => (a === 'master' ? 1 : a === 'm' ? 2 : 3) * (i + 1) + id),
    write: (a: Arena, id: number, v: Float32Array) => { written.set(`${a}${id}`, v); },
    setStepCount: (n: number) => { stepCount = n; },
    written, get stepCount() { return stepCount; },
  };
}

describe('optimizer state files', () => {
  it('a save is one file whose metadata carries the counters; it loads back exactly', async () => {
    const dir = path.join(tmp, 'state-small');
    const tr = fakeTrainer([5]);
    await saveState(dir, tr, { step: 7, bestValid: 1.5, bestStep: 6, tokens: 900, optimizerStep: 7 });
    // The readable copy is not needed to resume: the safetensors file alone vouches for itself.
    await fsp.rm(path.join(dir, 'state.json'));
    const back = fakeTrainer([5]);
    const st = await loadState(dir, back);
    expect(st).toMatchObject({ step: 7, bestValid: 1.5, bestStep: 6, tokens: 900 });
    expect(back.stepCount).toBe(7);
    expect([...back.written.get('v0')!]).toEqual([...tr.read('v', 0)]);
    expect(await loadState(path.join(tmp, 'no-state-here'), back)).toBeNull();
  });

  it('a state file over 2 GiB loads: tensors past the 2 GiB mark are read in place (sparse file, no 2 GiB read)', async () => {
    const dir = path.join(tmp, 'state-big');
    await fsp.mkdir(dir);
    // 2.2 GB of another parameter's moments first (a hole: no disk blocks, never read), then this trainer's tensors.
    const pad = 550_000_000, n = 1000;
    const header: Record<string, unknown> = { __metadata__: { [STATE_META_KEY]: JSON.stringify({ step: 3, bestValid: null, bestStep: null, tokens: 10 }) } };
    header['model.norm.weight.m'] = { dtype: 'F32', shape: [pad], data_offsets: [0, pad * 4] };
    ['master', 'm', 'v'].forEach((a, k) => { header[`model.embed_tokens.weight.${a}`] = { dtype: 'F32', shape: [n], data_offsets: [pad * 4 + k * n * 4, pad * 4 + (k + 1) * n * 4] }; });
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const file = path.join(dir, 'state.safetensors');
    const fd = openSync(file, 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len, 0, 8, 0);
    writeSync(fd, Buffer.from(json), 0, json.length, 8);
    const data = 8 + json.length + pad * 4;
    const values = Float32Array.from({ length: 3 * n }, (_, i) => i * 0.5);
    writeSync(fd, new Uint8Array(values.buffer), 0, values.byteLength, data);
    ftruncateSync(fd, data + values.byteLength);
    closeSync(fd);
    expect(data).toBeGreaterThan(2 ** 31);

    const tr = fakeTrainer([n]);
    const st = await loadState(dir, tr);
    expect(st!.step).toBe(3);
    expect([...tr.written.get('master0')!]).toEqual([...values.subarray(0, n)]);
    expect([...tr.written.get('v0')!]).toEqual([...values.subarray(2 * n)]);
  }, 30_000);

  it('file hashes stream and equal the one-shot hash', async () => {
    const f = path.join(tmp, 'hash-me.bin');
    const bytes = Buffer.alloc(9_000_000); // > one 8 MiB piece
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 255;
    await fsp.writeFile(f, bytes);
    const { createHash } = await import('node:crypto');
    expect(await sha256File(f)).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('a damaged state is refused naming the file; a legacy pair (state.json + hash) still loads', async () => {
    const dir = path.join(tmp, 'state-legacy');
    const tr = fakeTrainer([4]);
    await saveState(dir, tr, { step: 2, bestValid: null, bestStep: null, tokens: 5 });
    // Rewrite as the earlier format: counters only in state.json with the weights' hash.
    const { readAllTensors, writeSafetensors } = await import('../src/io/safetensors.js');
    const t = await readAllTensors(path.join(dir, 'state.safetensors'));
    const plain = Object.fromEntries([...t].map(([k, x]) => [k, { dtype: x.info.dtype, shape: x.info.shape, data: x.data }]));
    await writeSafetensors(path.join(dir, 'state.safetensors'), plain, { step: '2' });
    const sha = await sha256File(path.join(dir, 'state.safetensors'));
    await writeFileAtomic(path.join(dir, 'state.json'), JSON.stringify({ step: 2, bestValid: null, bestStep: null, tokens: 5, stateSha256: sha }));
    expect((await loadState(dir, fakeTrainer([4])))!.step).toBe(2);
    await writeFileAtomic(path.join(dir, 'state.json'), JSON.stringify({ step: 2, bestValid: null, bestStep: null, tokens: 5, stateSha256: '0'.repeat(64) }));
    await expect(loadState(dir, fakeTrainer([4]))).rejects.toThrow(/state\.safetensors: does not match state\.json/);
    await fsp.writeFile(path.join(dir, 'state.safetensors'), 'garbage');
    await expect(loadState(dir, fakeTrainer([4]))).rejects.toThrow(/state\.safetensors: unreadable saved state/);
  });
});

describe('temporary files and leftovers', () => {
  it('a symlink planted where a temporary file goes is not followed', async () => {
    const victim = path.join(tmp, 'victim.txt');
    await fsp.writeFile(victim, 'precious');
    const planted = path.join(tmp, 'planted.tmp-1');
    symlinkSync(victim, planted);
    await expect(openExclusive(planted)).rejects.toMatchObject({ code: 'EEXIST' });
    // The old naming (<out>.tmp-<pid>) planted for this very process: the write goes elsewhere.
    const out = path.join(tmp, 'out.json');
    symlinkSync(victim, `${out}.tmp-${process.pid}`);
    await writeFileAtomic(out, '{"ok":true}');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readFileSync(out, 'utf8')).toBe('{"ok":true}');
  });

  it('a name the file system takes (up to 255 bytes) is written, also where the temporary suffix would pass 255', async () => {
    const dir = path.join(tmp, 'long-names');
    await fsp.mkdir(dir);
    for (const name of ['a'.repeat(255), `${'é'.repeat(120)}.json`, 'x'.repeat(240) + '.safetensors']) {
      const out = path.join(dir, name);
      await writeFileAtomic(out, 'whole');
      expect(readFileSync(out, 'utf8')).toBe('whole');
    }
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
    // a name past 255 bytes is the file system's refusal, named
    await expect(writeFileAtomic(path.join(dir, 'b'.repeat(256)), 'x')).rejects.toThrow(/ENAMETOOLONG/);
  });

  it('removes temporary files of dead writers only (never a live one, never through a link into a folder)', async () => {
    const dir = path.join(tmp, 'orphans');
    await fsp.mkdir(path.join(dir, 'state'), { recursive: true });
    const dead = deadPid();
    await fsp.writeFile(path.join(dir, 'state', `state.safetensors.tmp-${dead}-abcd1234`), 'half');
    await fsp.writeFile(path.join(dir, `train.jsonl.tmp-${dead}`), 'half');
    await fsp.writeFile(path.join(dir, `run.json.tmp-${process.pid}-0000aaaa`), 'mine, being written');
    await fsp.writeFile(path.join(dir, 'notes.tmp-x'), 'not ours');
    const removed = await removeOrphanTemps(dir, true);
    expect(removed.map((f) => path.relative(dir, f)).sort()).toEqual([`state/state.safetensors.tmp-${dead}-abcd1234`, `train.jsonl.tmp-${dead}`].sort());
    expect(existsSync(path.join(dir, `run.json.tmp-${process.pid}-0000aaaa`))).toBe(true);
    expect(existsSync(path.join(dir, 'notes.tmp-x'))).toBe(true);
  });
});

describe('output folders', () => {
  it('one lock per folder: a live holder is refused by name, a dead one is taken over', async () => {
    const dir = path.join(tmp, 'locked');
    const lock = await acquireOutputLock(dir, 'finetune');
    const holder = JSON.parse(readFileSync(path.join(dir, LOCK_FILE), 'utf8'));
    expect(holder).toMatchObject({ pid: process.pid, hostname: os.hostname(), command: 'finetune' });
    await expect(acquireOutputLock(dir, 'profile')).rejects.toThrow(/already runs finetune/);
    await lock.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    // A live process of another run (our parent) holds it: refused, naming pid and host.
    await fsp.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'eval', started: 'then' }));
    await expect(acquireOutputLock(dir, 'finetune')).rejects.toThrow(new RegExp(`in use by eval \\(pid ${process.ppid} on ${os.hostname()}`));
    // Another host: never presumed stale.
    await fsp.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), hostname: 'elsewhere.example', command: 'eval', started: 'then' }));
    await expect(acquireOutputLock(dir, 'finetune')).rejects.toThrow(/on elsewhere\.example/);
    // Dead holder on this host: stale, taken over.
    await fsp.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), hostname: os.hostname(), command: 'eval', started: 'then' }));
    const again = await acquireOutputLock(dir, 'finetune');
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    await again.release();
    // A lock with this very pid that this process does not hold: left by an earlier process with the same pid.
    await fsp.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, hostname: os.hostname(), command: 'eval', started: 'then' }));
    await (await acquireOutputLock(dir, 'finetune')).release();
  });

  it.skipIf(!existsSync('/proc/self/stat'))('a holder that has ended but is not reaped yet (a zombie) is not alive: its lock is taken over at once', async () => {
    // `sleep 0 &` then exec: the background child's parent is now `sleep 5`, which never reaps it.
    const sh = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const zombie = Number(await new Promise<string>((resolve) => sh.stdout!.once('data', (d) => resolve(String(d).trim()))));
    try {
      for (let i = 0; i < 100 && !/\) Z/.test(readFileSync(`/proc/${zombie}/stat`, 'latin1')); i++) await new Promise((r) => setTimeout(r, 20));
      expect(readFileSync(`/proc/${zombie}/stat`, 'latin1')).toMatch(/\) Z /);
      expect(() => process.kill(zombie, 0)).not.toThrow(); // what the check was: the zombie still "exists"
      expect(processAlive(zombie)).toBe(false);
      expect(processAlive(sh.pid!)).toBe(true);
      const dir = path.join(tmp, 'zombie-lock');
      await fsp.mkdir(dir);
      await fsp.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: zombie, hostname: os.hostname(), command: 'eval', started: 'then' }));
      await (await acquireOutputLock(dir, 'finetune')).release();
    } finally {
      sh.kill('SIGKILL');
    }
  });

  it('a torn lock (its writer killed between create and write) is waited for briefly, then taken over', async () => {
    // test/reliability-finetune.test.ts's random SIGKILLs once hit that window: the next run was refused for 10 s.
    const dir = path.join(tmp, 'lock-torn');
    mkdirSync(dir);
    const file = path.join(dir, LOCK_FILE);
    await fsp.writeFile(file, '');
    const old = new Date(Date.now() - 3_000);
    await fsp.utimes(file, old, old);
    const started = performance.now();
    const lock = await acquireOutputLock(dir, 'profile');
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ pid: process.pid, command: 'profile' });
    await lock.release();
    // A lock being written right now (empty, then filled by a live run) is waited for and its holder named.
    await fsp.writeFile(file, '');
    setTimeout(() => { writeFileSync(file, JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'eval', started: 'now' })); }, 200);
    await expect(acquireOutputLock(dir, 'profile')).rejects.toThrow(/in use by eval \(pid/);
    expect(readdirSync(dir)).toEqual([LOCK_FILE]);
    await fsp.rm(file);
  });

  it('--out under /proc fails at once with one line; a file in the way is named', async () => {
    const t0 = Date.now();
    await expect(ensureOutputDir('/proc/x/y')).rejects.toThrow(/^\/proc\/x: cannot create the output folder: /);
    expect(Date.now() - t0).toBeLessThan(2000);
    const f = path.join(tmp, 'a-file');
    await fsp.writeFile(f, 'x');
    await expect(ensureOutputDir(path.join(f, 'sub'))).rejects.toThrow(/a-file\/sub: cannot use the output folder: a part of the path is a file/);
    await ensureOutputDir(path.join(tmp, 'new', 'deep', 'er'));
    expect(existsSync(path.join(tmp, 'new', 'deep', 'er'))).toBe(true);
  });
});
