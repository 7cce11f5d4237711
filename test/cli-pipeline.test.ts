// profile -> stats merge -> identify -> masks, as a user runs it from the shell, on the UDHR corpus.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
};
const json = (...args: string[]) => {
  const r = cli(...args, '--json');
  if (r.code !== 0) throw new Error(`langneurons ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

let dir: string;
const model = fixturePath('tiny-llama3');
const common = ['--corpus', 'udhr:train', '--max-len', '32', '--tokens', '2k', '--threads', '2'];
beforeAll(async () => { dir = await makeTempDir('ln-cli-pipeline-'); });
afterAll(async () => { await removeDir(dir); });

describe('the profiling pipeline from the command line', () => {
  it('profiles, merges shards, identifies and shows masks', () => {
    const stats = path.join(dir, 'stats');
    const prof = json('profile', model, ...common, '--langs', 'en,de,sw,ru', '--out', stats);
    expect(prof.results.map((r: { tokens: number }) => r.tokens)).toEqual([2000, 2000, 2000, 2000]);

    // shards of sw merged equal the single run's counts
    json('profile', model, ...common, '--langs', 'sw', '--shard', '1/2', '--out', path.join(dir, 'p1'));
    json('profile', model, ...common, '--langs', 'sw', '--shard', '2/2', '--out', path.join(dir, 'p2'));
    const merged = path.join(dir, 'sw-merged.safetensors');
    const m = json('stats', 'merge', path.join(dir, 'p1', 'sw.safetensors'), path.join(dir, 'p2', 'sw.safetensors'), '--out', merged);
    expect(m.tokens).toBe(2000);
    const single = json('stats', 'show', path.join(stats, 'sw.safetensors'));
    const fromShards = json('stats', 'show', merged);
    expect(fromShards.sites[0].meanActiveFraction).toBe(single.sites[0].meanActiveFraction);
    expect(fromShards.meta.shards).toBe(2);

    const mask = path.join(dir, 'masks', 'lape.json');
    const id = json('identify', stats, '--method', 'lape', '--top-rate', '0.05', '--out', mask);
    expect(existsSync(mask)).toBe(true);
    const shown = json('masks', 'show', mask);
    expect(shown.languages).toEqual(['de', 'en', 'ru', 'sw']);
    for (const l of shown.languages) expect(shown.total[l]).toBe(id.total[l]);
    // every kept neuron belongs to a language or none; 5% of 3 × 160 = 24 neurons at most in the union
    expect(shown.union).toBeLessThanOrEqual(24);

    const tied = path.join(dir, 'masks', 'mondal.safetensors');
    json('identify', stats, '--preset', 'mondal', '--top-rate', '0.05', '--out', tied);
    const cmp = json('masks', 'compare', mask, tied);
    for (const l of ['de', 'en', 'ru', 'sw']) expect(cmp.languages[l].jaccard).toBeGreaterThanOrEqual(0);
  });

  it("identify --method ap --sites: Kojima's ranking over several sites' units together, one mask per site", async () => {
    const stats = path.join(dir, 'stats-ap');
    json('profile', model, ...common, '--langs', 'en,de', '--sites', 'act,q,down', '--seq-means', '--out', stats);
    const out = path.join(dir, 'masks', 'ap.json');
    const r = json('identify', stats, '--method', 'ap', '--sites', 'act,q,down', '--n', '60', '--out', out);
    const files = { act: path.join(dir, 'masks', 'ap.act.json'), q: path.join(dir, 'masks', 'ap.q.json'), down: path.join(dir, 'masks', 'ap.down.json') };
    expect(r.out).toEqual(files);
    expect(existsSync(out)).toBe(false);
    for (const lang of ['en', 'de']) {
      // N/2 top + N/2 bottom among all three sites' units: 60 in all, split over the sites' masks
      const total = (['act', 'q', 'down'] as const).reduce((n, s) => n + (r.total[s][lang] as number), 0);
      expect(total).toBe(60);
    }
    for (const [site, f] of Object.entries(files)) expect(JSON.parse(await fsp.readFile(f, 'utf8')).site).toBe(site);
    const wrong = cli('identify', stats, '--method', 'lape', '--sites', 'act,q', '--out', path.join(dir, 'x.json'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/--sites \(a joint ranking over several sites\) applies to --method ap/);
  });

  it.each([
    [['profile', model, ...common, '--langs', 'xx', '--out', '/tmp/never'], /xx/],
    [['profile', model, ...common, '--langs', 'en', '--shard', '9/8', '--out', '/tmp/never'], /--shard must be K\/N/],
    [['profile', model, ...common, '--langs', 'en', '--tokens', 'lots', '--out', '/tmp/never'], /--tokens must be a token count/],
    [['profile', model, '--corpus', '/nonexistent/corpus', '--langs', 'en', '--out', '/tmp/never'], /\/nonexistent\/corpus/],
    [['identify', '/nonexistent/stats', '--out', '/tmp/never.json'], /\/nonexistent\/stats/],
    [['masks', 'show', fixturePath('tiny-llama3', 'config.json')], /config\.json/],
  ])('bad input %j is refused with a clear message', (args, pattern) => {
    const r = cli(...args);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
  });

  it('refuses to merge statistics of different models, and writes nothing', async () => {
    json('profile', fixturePath('tiny-qwen2'), ...common, '--langs', 'sw', '--out', path.join(dir, 'qwen'));
    const out = path.join(dir, 'bad-merge.safetensors');
    const r = cli('stats', 'merge', path.join(dir, 'stats', 'sw.safetensors'), path.join(dir, 'qwen', 'sw.safetensors'), '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot merge .*different models/);
    expect(existsSync(out)).toBe(false);
    // a corrupt statistics file is named
    const bad = path.join(dir, 'corrupt', 'en.safetensors');
    await fsp.mkdir(path.dirname(bad), { recursive: true });
    await fsp.writeFile(bad, 'garbage');
    const r2 = cli('identify', path.dirname(bad), '--out', path.join(dir, 'x.json'));
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/en\.safetensors/);
  });
});
