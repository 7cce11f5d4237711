// Resuming the steering measures (src/steer/resume.ts): the unit log by hand (finished units taken back exactly, a
// torn line cut off, values JSON cannot keep not logged, another run's or a foreign file refused), then `steer
// fallback` and `steer ppl-matrix` killed with SIGKILL mid-run: the same command again writes an uninterrupted run's result.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MASK_FORMAT, writeMaskJson } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { loadAddon } from '../src/native/addon.js';
import { modelIdentity } from '../src/profile/identity.js';
import { openSteerLog, partialFile } from '../src/steer/resume.js';
import { writeFiles } from './helpers/corpus-fixtures.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

let dir: string;
beforeAll(async () => { dir = await makeTempDir('ln-steer-resume-'); });
afterAll(async () => { await removeDir(dir); });

describe('the unit log', () => {
  /** Content "hashes" of files for the tests: the names, with a version the test can bump. */
  let version = 1;
  const hashes = async (files: string[]) => files.map((f) => `${f}@${version}`);

  it('gives back the finished units as computed, computes the rest, and cuts off a line torn by a kill', async () => {
    const out = path.join(dir, 'log', 'r.json');
    await fsp.mkdir(path.dirname(out));
    const values = [{ totalNll: 0.1 + 0.2, tokens: 7 }, ['ünï', 'a\nb'], [1e-300, -2.5e-8, 123456789.123456789]];
    let calls = 0;
    const first = await openSteerLog(out, 'k1', hashes);
    for (const [i, v] of values.entries()) expect(await first.unit(['args', i], ['mask.json'], async () => { calls++; return v; })).toEqual(v);
    expect([calls, first.taken]).toEqual([3, 0]);
    // A kill during the next append: half a line after the last newline.
    await fsp.appendFile(partialFile(out), '{"run":"k1","unit":"abc","val');

    const again = await openSteerLog(out, 'k1', hashes);
    for (const [i, v] of values.entries()) {
      const got = await again.unit(['args', i], ['mask.json'], async () => { calls++; return null; });
      expect(got).toEqual(v);
      if (i === 2) expect(Object.is((got as number[])[1], -2.5e-8)).toBe(true);
    }
    expect([calls, again.taken]).toEqual([3, 3]);  // nothing computed again
    expect(readFileSync(partialFile(out), 'utf8').endsWith('\n')).toBe(true);  // the torn line is gone
    // Other arguments, another file content or another run's key: another unit, computed.
    expect(await again.unit(['args', 3], ['mask.json'], async () => { calls++; return 5; })).toBe(5);
    version = 2;  // the mask changed since: read once per run, so a new run sees it
    expect(await (await openSteerLog(out, 'k1', hashes)).unit(['args', 0], ['mask.json'], async () => { calls++; return 6; })).toBe(6);
    version = 1;
    expect(await (await openSteerLog(out, 'k2', hashes)).unit(['args', 0], ['mask.json'], async () => { calls++; return 7; })).toBe(7);
    expect(calls).toBe(6);
    // Finishing k1 keeps k2's line; finishing k2 removes the file.
    await again.finish();
    expect(readFileSync(partialFile(out), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l).run)).toEqual(['k2']);
    await (await openSteerLog(out, 'k2', hashes)).finish();
    expect(existsSync(partialFile(out))).toBe(false);
  });

  it('does not log values JSON would change (NaN, Infinity, -0): they are computed again', async () => {
    const out = path.join(dir, 'nonfinite.json');
    const log = await openSteerLog(out, 'k', hashes);
    for (const v of [NaN, -Infinity, -0, [1, Infinity]]) await log.unit(v, [], async () => v);
    expect(existsSync(partialFile(out))).toBe(false);  // nothing logged: no file
  });

  it('is made with the first finished unit: a run failing before one leaves nothing behind', async () => {
    const out = path.join(dir, 'failing.json');
    const log = await openSteerLog(out, 'k', hashes);
    await expect(log.unit(0, [], async () => { throw new Error('no statistics'); })).rejects.toThrow('no statistics');
    expect(existsSync(partialFile(out))).toBe(false);
  });

  it('refuses a file of its name that is not such a log, leaving it as it is', async () => {
    const mine = path.join(dir, 'mine.json');
    writeFileSync(partialFile(mine), 'my notes\n');
    await expect(openSteerLog(mine, 'k1', hashes)).rejects.toThrow(/mine\.json\.partial\.jsonl: exists and is not a partial result of langneurons steer/);
    expect(readFileSync(partialFile(mine), 'utf8')).toBe('my notes\n');
  });
});

describe('a measure killed mid-run resumes to the uninterrupted result', () => {
  const bin = path.join(repoRoot, 'bin', 'langneurons.js');
  const modelDir = fixturePath('tiny-llama3');
  let maskFile: string, prompts: string;

  beforeAll(async () => {
    const id = modelIdentity(await openCheckpoint(modelDir));
    const units = (k: number) => Array.from({ length: id.layers }, (_, l) => [k, k + 10 + l, k + 20]);
    maskFile = path.join(dir, 'mask.json');
    await writeMaskJson(maskFile, {
      format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: id, sources: [], layers: id.layers, width: id.intermediate,
      languages: { en: units(1), de: units(2), sw: units(3) },
    });
    prompts = path.join(dir, 'prompts');
    await writeFiles(prompts, { 'p.txt': ['Q: What is the weather like?\nA:', 'Q: Tell me a story.\nA:', 'Hello, my friend', 'Once upon a time',
      'The capital of France is', 'Numbers: one, two,'].join('\n') + '\n' });
  });

  /** Runs the command; SIGKILLs it once its partial file holds `units` finished units. Resolves with how it ended. */
  function killAfterUnits(args: string[], out: string, units: number): Promise<string> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [bin, ...args], { stdio: 'ignore' });
      const poll = setInterval(() => {
        const lines = existsSync(partialFile(out)) ? readFileSync(partialFile(out), 'utf8').split('\n').filter(Boolean).length : 0;
        if (lines - 1 >= units) { clearInterval(poll); child.kill('SIGKILL'); }
      }, 2);
      child.on('exit', (code, signal) => { clearInterval(poll); resolve(signal ?? `exit ${code}`); });
    });
  }

  const withoutTime = (f: string) => { const d = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>; delete d['seconds']; return d; };

  for (const measure of ['fallback', 'ppl-matrix'] as const) {
    it(`steer ${measure}`, async () => {
      const args = (out: string) => measure === 'fallback'
        ? ['steer', 'fallback', modelDir, '--masks', maskFile, '--prompts', prompts, '--deactivate', 'en,de,sw', '--deactivate-value', '-1.5',
          '--max-new-tokens', '48', '--langid', 'eld', '--threads', '1', '--out', out]
        : ['steer', 'ppl-matrix', modelDir, '--masks', maskFile, '--eval-text', 'udhr:heldout', '--max-tokens', '400', '--threads', '1', '--out', out];
      const ref = path.join(dir, `${measure}-ref.json`);
      const whole = spawnSync(process.execPath, [bin, ...args(ref)], { encoding: 'utf8', timeout: 300_000 });
      expect(whole.status, whole.stderr).toBe(0);
      expect(existsSync(partialFile(ref))).toBe(false);

      const out = path.join(dir, `${measure}-killed.json`);
      expect(await killAfterUnits(args(out), out, 1)).toBe('SIGKILL');  // the sooner, the less the run can finish before the kill
      expect(existsSync(out)).toBe(false);
      if (measure === 'fallback' && loadAddon().kernelInfo().kernel !== 'plain') {
        // The same command on another CPU kernel family (products that differ in the last bits) takes none of the units,
        // and leaves them for a run of the first kind.
        const other = spawnSync(process.execPath, [bin, ...args(out)], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, LANGNEURONS_KERNEL: 'plain' } });
        expect(other.status, other.stderr).toBe(0);
        expect(other.stderr).not.toMatch(/resumed/);
        expect(existsSync(partialFile(out))).toBe(true);
      }
      const again = spawnSync(process.execPath, [bin, ...args(out)], { encoding: 'utf8', timeout: 300_000 });
      expect(again.status, again.stderr).toBe(0);
      const resumed = Number(/resumed: (\d+) finished unit\(s\) of an earlier run/.exec(again.stderr)?.[1]);
      expect(resumed, again.stderr).toBeGreaterThanOrEqual(1);
      expect(withoutTime(out)).toEqual(withoutTime(ref));
      expect(existsSync(partialFile(out))).toBe(false);
      expect(existsSync(`${out}.lock`)).toBe(false);
    }, 300_000);
  }
});
