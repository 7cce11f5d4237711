// The analyses that run a model resume after a kill (src/cli/commands/analyze-run.ts): `analyze alignment` and
// `analyze logit-lens` SIGKILLed once their unit log holds a finished unit, run again, write the figures an
// uninterrupted run writes, say how many units they took, and leave no log or lock. A folder holding someone else's
// file of a figure's name is refused before any model is opened; a run holding the analysis is not run beside.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analysisPartialFile } from '../src/cli/commands/analyze-run.js';
import { writeFiles } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const udhr20 = path.join(repoRoot, 'models', 'udhr20');
const cli = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });

let dir: string;
beforeAll(async () => { dir = await makeTempDir('ln-analyze-resume-'); });
afterAll(async () => { await removeDir(dir); });

/** Runs the command; SIGKILLs it once `log` holds `units` finished units. Resolves with how it ended. */
function killAfterUnits(args: string[], log: string, units: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: 'ignore' });
    const poll = setInterval(() => {
      const lines = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0;
      if (lines - 1 >= units) { clearInterval(poll); child.kill('SIGKILL'); }
    }, 2);
    child.on('exit', (code, signal) => { clearInterval(poll); resolve(signal ?? `exit ${code}`); });
  });
}

/** A figure's data as written (its JSON), for comparing two runs. */
const figureData = (out: string, name: string) => (JSON.parse(readFileSync(path.join(out, `${name}.json`), 'utf8')) as { data: unknown }).data;

const analyses = [
  {
    name: 'alignment', figure: 'alignment-retrieval',
    args: (out: string) => ['analyze', 'alignment', udhr20, '--parallel', 'udhr:all', '--langs', 'de,fr,ru,zh,sw,mt,el,vi', '--anchor', 'en',
      '--max-tokens', '128', '--batch', '8', '--threads', '1', '--out', out],
  },
  {
    name: 'logit-lens', figure: 'logit-lens',
    args: (out: string) => ['analyze', 'logit-lens', udhr20, '--prompts', path.join(dir, 'prompts'), '--batch', '1', '--langid', 'eld',
      '--intervene', 'scale:0.5:neurons=all:layers=1', '--threads', '1', '--out', out],
  },
] as const;

describe('an analysis killed mid-run resumes to the uninterrupted figures', () => {
  beforeAll(async () => {
    await writeFiles(path.join(dir, 'prompts'), {
      'en.txt': 'All human beings are born free and\nEveryone has the right to\nNo one shall be held in\n',
      'de.txt': 'Alle Menschen sind frei und\nJeder hat das Recht auf\nNiemand darf in Sklaverei\n',
      'fr.txt': 'Tous les êtres humains naissent\nChacun a le droit à\nNul ne sera tenu en\n',
    });
  });

  for (const a of analyses) {
    it(`analyze ${a.name}`, async () => {
      const ref = path.join(dir, `${a.name}-ref`);
      const whole = cli(a.args(ref));
      expect(whole.status, whole.stderr).toBe(0);
      expect(existsSync(analysisPartialFile(ref, a.name))).toBe(false);

      const out = path.join(dir, `${a.name}-killed`);
      const log = analysisPartialFile(out, a.name);
      expect(await killAfterUnits(a.args(out), log, 1)).toBe('SIGKILL');
      expect(existsSync(path.join(out, `${a.figure}.json`))).toBe(false);
      const again = cli(a.args(out));
      expect(again.status, again.stderr).toBe(0);
      const taken = Number(/resumed: (\d+) finished unit\(s\) of an earlier run taken from .*\.partial\.jsonl/.exec(again.stderr)?.[1]);
      expect(taken, again.stderr).toBeGreaterThanOrEqual(1);
      expect(figureData(out, a.figure)).toEqual(figureData(ref, a.figure));
      expect(existsSync(log)).toBe(false);
      expect(existsSync(`${log}.lock`)).toBe(false);
    }, 300_000);
  }
});

describe('the folder of an analysis', () => {
  it('refuses a file of a figure\u2019s name it did not write before opening the model, leaving it as it is', () => {
    const out = path.join(dir, 'foreign');
    const args = analyses[0].args(out);
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, 'alignment-retrieval.png'), 'mine');
    const r = cli(args);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/alignment-retrieval\.png: exists and was not written by a langneurons figure; choose another --out$/);
    expect(readFileSync(path.join(out, 'alignment-retrieval.png'), 'utf8')).toBe('mine');
    expect(existsSync(analysisPartialFile(out, 'alignment'))).toBe(false);
  });

  it('refuses a second run of the same analysis into it while one holds it', () => {
    const out = path.join(dir, 'busy');
    mkdirSync(out, { recursive: true });
    // A live run (vitest's parent process stands in for it) holds the analysis's lock.
    const lock = `${analysisPartialFile(out, 'logit-lens')}.lock`;
    writeFileSync(lock, JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'analyze logit-lens', started: '' }) + '\n');
    const r = cli(analyses[1].args(out));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/logit-lens\.partial\.jsonl: in use by analyze logit-lens \(pid \d+/);
    expect(existsSync(lock)).toBe(true);
  });
});
