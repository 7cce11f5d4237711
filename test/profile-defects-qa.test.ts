// Profiling defects found by QA: a stopped run's checkpoint was merged, ranked and shown as finished statistics; two
// names of one corpus language (UDHR's en, eng, EN) were profiled as two languages; `stats merge --out` replaced a
// profile's finished file; and a budget that whole windows (--drop-partial) or a counted BOS cannot fill was said to
// be more than the corpus holds.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { budgetShortfall, CHECKPOINT_KEY, readStats, writeStats, type TokenScope } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const M = path.join(repoRoot, 'models', 'udhr20');
let tmp: string;
beforeAll(async () => { tmp = await makeTempDir('ln-profile-qa-'); });
afterAll(async () => { await removeDir(tmp); });

const profile = async (out: string, ...args: string[]) => {
  const r = await runCli('profile', M, '--corpus', 'udhr:train', '--max-len', '64', '--threads', '1', '--out', path.join(tmp, out), ...args);
  expect(r.code, r.stderr).toBe(0);
  return r;
};

describe('finished statistics only', () => {
  it('a checkpoint is refused by stats merge, identify and stats show, naming it and how to finish it', async () => {
    await profile('full', '--langs', 'en,de');
    await profile('s2', '--langs', 'en', '--shard', '2/2');
    // a stopped shard 1/2: its checkpoint holds the statistics so far and the resume position
    const stats = await readStats(path.join(tmp, 'full', 'en.safetensors'));
    const ck = path.join(tmp, 's1', '.en.checkpoint.safetensors');
    await fsp.mkdir(path.dirname(ck), { recursive: true });
    await writeStats(ck, stats, { [CHECKPOINT_KEY]: JSON.stringify({ position: {}, optionsKey: '' }) });
    const said = /\.en\.checkpoint\.safetensors: the checkpoint of a profile run that was stopped \(\d+ tokens so far\), not finished statistics: run the same profile command again/;
    const merge = await runCli('stats', 'merge', ck, path.join(tmp, 's2', 'en.safetensors'), '--out', path.join(tmp, 'm.safetensors'));
    expect(merge.code).toBe(1);
    expect(merge.stderr).toMatch(said);
    const identify = await runCli('identify', ck, path.join(tmp, 'full', 'de.safetensors'), '--out', path.join(tmp, 'mask.json'));
    expect(identify.code).toBe(1);
    expect(identify.stderr).toMatch(said);
    const show = await runCli('stats', 'show', ck);
    expect(show.code).toBe(1);
    expect(show.stderr).toMatch(said);
  }, 120_000);

  it('two names of one UDHR language are refused before anything is written', async () => {
    const r = await runCli('profile', M, '--corpus', 'udhr:train', '--max-len', '64', '--langs', 'en,eng', '--out', path.join(tmp, 'alias'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/languages: 'en' and 'eng' name the same corpus \(udhr:\w+:train\); give one of them/);
    expect(existsSync(path.join(tmp, 'alias', 'en.safetensors'))).toBe(false);
  });

  it('stats merge replaces an earlier merge, never a profile\'s finished file', async () => {
    await profile('a1', '--langs', 'sw', '--shard', '1/2');
    await profile('a2', '--langs', 'sw', '--shard', '2/2');
    await profile('fin', '--langs', 'sw');
    const parts = [path.join(tmp, 'a1', 'sw.safetensors'), path.join(tmp, 'a2', 'sw.safetensors')];
    const fin = path.join(tmp, 'fin', 'sw.safetensors');
    const before = await fsp.readFile(fin);
    const r = await runCli('stats', 'merge', ...parts, '--out', fin);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--out .*fin\/sw\.safetensors: holds the finished statistics of a profile run, not an earlier merge/);
    expect((await fsp.readFile(fin)).equals(before)).toBe(true);
    const merged = path.join(tmp, 'merged.safetensors');
    for (let i = 0; i < 2; i++) expect((await runCli('stats', 'merge', ...parts, '--out', merged)).code).toBe(0); // its own merge again
  }, 120_000);
});

describe('a budget the scope rules cannot fill is said as such', () => {
  it('--drop-partial: whole windows of the budget, not "the corpus holds no more"', async () => {
    const r = await profile('whole', '--langs', 'en', '--tokens', '1000', '--drop-partial');
    expect(r.stderr).toMatch(/en: counted 960 tokens of the budget of 1000: with whole windows only \(--drop-partial\) the budget holds 15 windows of 64/);
    expect(r.stderr).not.toMatch(/holds \d+ tokens, fewer than the budget/);
  });

  it('budgetShortfall: whole windows, a counted BOS in the last token, else the corpus', () => {
    const windows: TokenScope = { mode: 'windows', maxLen: 64, bos: false, countPadding: false, tokenBudget: 1000, partialWindow: 'drop' };
    expect(budgetShortfall(windows, 960)).toMatchObject({ kind: 'rule' });
    expect(budgetShortfall(windows, 896)).toEqual({ kind: 'corpus' });
    expect(budgetShortfall(windows, 1000)).toBeNull();
    expect(budgetShortfall({ ...windows, tokenBudget: 0 }, 5)).toBeNull();
    const sentences: TokenScope = { mode: 'sentences', maxLen: 64, bos: true, countBos: true, countPadding: false, tokenBudget: 66 };
    expect(budgetShortfall(sentences, 65)).toMatchObject({ kind: 'rule', text: expect.stringMatching(/counted BOS \(--count-bos\)/) });
    expect(budgetShortfall(sentences, 60)).toEqual({ kind: 'corpus' });
  });
});

describe('histograms that would not fit in memory', () => {
  it('are refused before any work, naming their size and the bins that fit (the kernel overcommits: no allocation error would come)', async () => {
    const os = (await import('node:os')).default;
    const { vi } = await import('vitest');
    const cfg = JSON.parse(await fsp.readFile(path.join(M, 'config.json'), 'utf8')) as { num_hidden_layers: number; intermediate_size: number };
    const units = cfg.num_hidden_layers * cfg.intermediate_size;  // the act site of every layer
    const total = 64 * 2 ** 20;                                   // a machine of 64 MiB
    const spy = vi.spyOn(os, 'totalmem').mockReturnValue(total);
    try {
      const bins = 4096;  // 16 bytes a unit and bin (the engine's count and the file's) > half of 64 MiB
      expect(16 * units * bins).toBeGreaterThan(total / 2);
      const out = path.join(tmp, 'hist-big');
      const r = await runCli('profile', M, '--corpus', 'udhr:train', '--langs', 'en', '--max-len', '64', '--histogram', `-1:1:${bins}`, '--out', out);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`--histogram: ${bins} bins for each of ${units} units`);
      expect(r.stderr).toContain(`give at most ${Math.floor(total / 2 / (16 * units))} bins`);
      expect(existsSync(out)).toBe(false);
    } finally {
      spy.mockRestore();
    }
  });
});
