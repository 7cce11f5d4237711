// Reliability of profiling outputs (issue 19, items 5, 6, 7, 11, 12): manifest language keys cannot escape --out,
// a shard without tokens writes an empty mergeable file, `stats merge` refuses to count a part twice, outputs that
// are inputs are refused, and a folder another profile holds is refused.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { main } from '../src/cli/main.js';
import { openCorpus } from '../src/corpus/sources.js';
import { udhrCorpus } from '../src/corpus/udhr.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { LOCK_FILE } from '../src/io/lock.js';
import { profileCorpus, statsFileFor } from '../src/profile/profile.js';
import { mergeStats, readStats, type TokenScope } from '../src/profile/stats.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const scope: TokenScope = { mode: 'sentences', maxLen: 32, bos: true, countPadding: false, tokenBudget: 0 };
let model: LanguageModel;
let tmp: string;
beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); tmp = await makeTempDir('ln-rel-profile-'); });
afterAll(async () => { await removeDir(tmp); });

/** Runs the CLI in-process; returns the exit code and what went to stderr. */
async function cli(...args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { err += String(s); return true; });
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const code = await main(['node', 'langneurons', ...args]);
    process.exitCode = undefined;
    return { code, err };
  } finally { spy.mockRestore(); out.mockRestore(); }
}

describe('profiling outputs', () => {
  it('a manifest language key cannot escape --out', async () => {
    const victim = path.join(tmp, 'victim');
    await fsp.mkdir(victim);
    writeFileSync(path.join(victim, 'model.safetensors'), 'precious');
    writeFileSync(path.join(tmp, 'de.txt'), 'Alle Menschen sind frei.\n');
    const manifest = path.join(tmp, 'evil.json');
    writeFileSync(manifest, JSON.stringify({ languages: { '../victim/model': { files: ['de.txt'] } } }));
    await expect(openCorpus(manifest)).rejects.toThrow(/evil\.json: "languages": language id "\.\.\/victim\/model" is not a plain name/);
    expect(() => statsFileFor(path.join(tmp, 'out'), '../victim/model')).toThrow(/not a plain name/);
    expect(readFileSync(path.join(victim, 'model.safetensors'), 'utf8')).toBe('precious');
  });

  it('a shard without tokens writes an empty statistics file that merges as zero', async () => {
    const dir = path.join(tmp, 'small');
    await fsp.mkdir(dir);
    writeFileSync(path.join(dir, 'de.txt'), 'Alle Menschen sind frei und gleich an Würde und Rechten geboren.\n');
    const corpus = await openCorpus(dir);
    const warnings: string[] = [];
    const o = { languages: ['de'], scope, batchTokens: 256, onWarning: (m: string) => warnings.push(m) };
    await profileCorpus(model, corpus, { ...o, outDir: path.join(tmp, 'whole') });
    await profileCorpus(model, corpus, { ...o, outDir: path.join(tmp, 's1'), shard: { index: 0, count: 2 } });
    await profileCorpus(model, corpus, { ...o, outDir: path.join(tmp, 's2'), shard: { index: 1, count: 2 } });
    expect(warnings).toEqual([expect.stringMatching(/^de: shard 2\/2 of .*de\.txt holds no tokens; wrote an empty statistics file/)]);
    const [whole, s1, s2] = await Promise.all(['whole', 's1', 's2'].map((d) => readStats(statsFileFor(path.join(tmp, d), 'de'))));
    expect(s2!.tokens).toBe(0);
    const merged = mergeStats(s1!, s2!);
    expect(merged.tokens).toBe(whole!.tokens);
    expect([...merged.sites.get('act')!.overZero]).toEqual([...whole!.sites.get('act')!.overZero]);
    expect([...merged.sites.get('act')!.sum]).toEqual([...whole!.sites.get('act')!.sum]);
    // Without shards, no tokens is still an error.
    writeFileSync(path.join(dir, 'sw.txt'), '\n\n');
    await expect(openCorpus(dir).then((c) => profileCorpus(model, c, { ...o, languages: ['sw'], outDir: path.join(tmp, 'none') }))).rejects.toThrow(/sw/);
  });

  it('stats merge refuses a part counted twice; identify and profile refuse an output that is an input', async () => {
    const f = (d: string) => statsFileFor(path.join(tmp, d), 'de');
    const twice = await cli('stats', 'merge', f('s1'), f('s1'), '--out', path.join(tmp, 'm.safetensors'));
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/cannot merge .* same profiling run .*given twice/);
    const overlap = await cli('stats', 'merge', f('whole'), f('s1'), '--out', path.join(tmp, 'm.safetensors'));
    expect(overlap.err).toMatch(/both count the whole corpus and shard 1\/2 of corpus/);
    expect(existsSync(path.join(tmp, 'm.safetensors'))).toBe(false);
    const ok = await cli('stats', 'merge', f('s1'), f('s2'), '--out', path.join(tmp, 'm.safetensors'));
    expect(ok.code).toBe(0);
    const m = await readStats(path.join(tmp, 'm.safetensors'));
    expect(m.meta.parts).toHaveLength(2);
    // The merged file merged again with one of its parts: refused too.
    expect((await cli('stats', 'merge', path.join(tmp, 'm.safetensors'), f('s2'), '--out', path.join(tmp, 'm2.safetensors'))).err).toMatch(/same profiling run/);
    expect((await cli('stats', 'merge', f('s1'), f('s2'), '--out', f('s2'))).err).toMatch(/--out .* is also an input/);

    const before = readFileSync(f('whole'));
    const id = await cli('identify', path.join(tmp, 'whole'), '--out', f('whole'));
    expect(id.code).toBe(1);
    expect(id.err).toMatch(/is also an input/);
    expect(readFileSync(f('whole')).equals(before)).toBe(true);
    const corpus = await openCorpus(path.join(tmp, 'small'));
    await expect(profileCorpus(model, corpus, { languages: ['de'], scope, outDir: path.join(tmp, 'whole'), thresholdsFrom: { from: path.join(tmp, 'whole'), quantile: 0.9 } }))
      .rejects.toThrow(/is also an input/);
  });

  it('a folder another profile holds is refused', async () => {
    const busy = path.join(tmp, 'busy');
    await fsp.mkdir(busy);
    writeFileSync(path.join(busy, LOCK_FILE), JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'profile', started: 'now' }));
    const corpus = await openCorpus(path.join(tmp, 'small'));
    await expect(profileCorpus(model, corpus, { languages: ['de'], scope, outDir: busy })).rejects.toThrow(/busy: in use by profile/);
    expect(await fsp.readdir(busy)).toEqual([LOCK_FILE]);
  });
});

describe('profiling runs killed at random points', () => {
  it('SIGKILL at random times, then the same command again: counts and sums equal an uninterrupted run\'s bit for bit', async () => {
    const bin = path.join(repoRoot, 'bin', 'langneurons.js');
    const args = (out: string) => ['profile', fixturePath('tiny-qwen2'), '--corpus', 'udhr:train', '--langs', 'en,sw', '--max-len', '32',
      '--tokens', '3000', '--batch-tokens', '256', '--checkpoint-tokens', '300', '--threads', '1', '--out', out];
    const t0 = performance.now();
    const ref = path.join(tmp, 'kill-ref');
    const whole = spawnSync(process.execPath, [bin, ...args(ref)], { encoding: 'utf8', timeout: 120_000 });
    expect(whole.status, whole.stderr).toBe(0);
    const duration = performance.now() - t0;
    const seed = Number(process.env['RELIABILITY_SEED'] ?? Date.now() % 100000);
    let x = seed || 1;
    const random = () => { x = (x * 48271) % 2147483647; return x / 2147483647; };
    const out = path.join(tmp, 'kill-run');
    const outcomes: string[] = [];
    for (let k = 0; k < 4; k++) {
      outcomes.push(await new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [bin, ...args(out)], { stdio: 'ignore' });
        const timer = setTimeout(() => child.kill('SIGKILL'), random() * 0.9 * duration);
        child.on('exit', (code, signal) => { clearTimeout(timer); resolve(signal ?? `exit ${code}`); });
      }));
      if (outcomes.at(-1) === 'exit 0') break;
    }
    console.log(`profile kill schedule seed ${seed}: ${outcomes.join(', ')}`);
    if (outcomes.at(-1) !== 'exit 0') {
      const r = spawnSync(process.execPath, [bin, ...args(out)], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, `seed ${seed}: ${r.stderr}`).toBe(0);
    }
    for (const lang of ['en', 'sw']) {
      const [a, b] = await Promise.all([readStats(statsFileFor(ref, lang)), readStats(statsFileFor(out, lang))]);
      expect(b.tokens, `seed ${seed}`).toBe(a.tokens);
      expect(b.sequences).toBe(a.sequences);
      expect([...b.sites.get('act')!.overZero]).toEqual([...a.sites.get('act')!.overZero]);
      // The float64 sums too: a resumed run adds to the checkpoint's totals in the uninterrupted run's order.
      for (const k of ['sum', 'sumSq', 'absSum'] as const)
        expect(Buffer.from(b.sites.get('act')![k]!.buffer).equals(Buffer.from(a.sites.get('act')![k]!.buffer)), `seed ${seed}: ${lang} act.${k}`).toBe(true);
    }
    expect(existsSync(path.join(out, LOCK_FILE))).toBe(false);
    expect((await fsp.readdir(out)).filter((n) => n.includes('.tmp-') || n.includes('.checkpoint.'))).toEqual([]);
  }, 240_000);

  it('SIGTERM (a scheduler\'s time limit) or SIGINT: one line, no lock left behind, and the same command resumes', async () => {
    const bin = path.join(repoRoot, 'bin', 'langneurons.js');
    const args = (out: string) => ['profile', fixturePath('tiny-qwen2'), '--corpus', 'udhr:train', '--langs', 'en', '--max-len', '32',
      '--tokens', '6000', '--batch-tokens', '128', '--checkpoint-tokens', '200', '--threads', '1', '--out', out];
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const out = path.join(tmp, `signal-${signal}`);
      const stopped = await new Promise<{ signal: string | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, ...args(out)], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (d) => { err += String(d); });
        // Stopped once it holds the folder and has saved a checkpoint: mid-run.
        const poll = setInterval(() => { if (existsSync(path.join(out, '.en.checkpoint.safetensors'))) { clearInterval(poll); child.kill(signal); } }, 20);
        child.on('exit', (_code, sig) => { clearInterval(poll); resolve({ signal: sig, err }); });
      });
      expect(stopped.signal, stopped.err).toBe(signal); // ended by the signal, as without the handler
      expect(stopped.err).toContain(`langneurons: stopped by ${signal}; finished outputs are kept.`);
      expect(existsSync(path.join(out, LOCK_FILE))).toBe(false);
      expect(existsSync(statsFileFor(out, 'en'))).toBe(false);
      // A lock from another host is never presumed stale: one left behind would have refused a requeued job there.
      const again = spawnSync(process.execPath, [bin, ...args(out), '--json'], { encoding: 'utf8', timeout: 120_000 });
      expect(again.status, again.stderr).toBe(0);
      expect((JSON.parse(again.stdout) as { results: { resumed: boolean }[] }).results[0]!.resumed).toBe(true);
      expect((await readStats(statsFileFor(out, 'en'))).tokens).toBe(6000);
    }
  }, 240_000);

  it('a checkpoint made with other weights under the same path is not resumed', async () => {
    const dir = path.join(tmp, 'qwen-copy');
    await fsp.cp(fixturePath('tiny-qwen2'), dir, { recursive: true });
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    const out = path.join(tmp, 'swap-profile');
    const m1 = await loadModel(dir, { threads: 1 });
    const o = { languages: ['sw'], scope: { mode: 'windows', maxLen: 16, bos: false, countPadding: false, tokenBudget: 400 } as TokenScope, batchTokens: 32, checkpointTokens: 32 };
    let calls = 0;
    await expect(profileCorpus(m1, corpus, { ...o, outDir: out, onProgress: () => { if (++calls === 3) throw new Error('killed'); } })).rejects.toThrow('killed');
    expect(existsSync(path.join(out, '.sw.checkpoint.safetensors'))).toBe(true);
    const w = path.join(dir, 'model.safetensors');
    const bytes = readFileSync(w);
    bytes[bytes.length - 5] ^= 0x40;
    writeFileSync(w, bytes);
    const m2 = await loadModel(dir, { threads: 1 });
    await expect(profileCorpus(m2, corpus, { ...o, outDir: out })).rejects.toThrow(/checkpoint was made with other options, model or corpus/);
  });
});
