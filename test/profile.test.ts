// profileCorpus end to end on the UDHR corpus: shards merge into the single run, a killed run resumes without
// counting anything twice, finished languages are not redone, and a checkpoint of other options is refused.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { udhrCorpus } from '../src/corpus/udhr.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { profileCorpus, statsFileFor } from '../src/profile/profile.js';
import { mergeStats, mergeStatsInOrder, readStats, type ActivationStats, type Site, type TokenScope } from '../src/profile/stats.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

const scope: TokenScope = { mode: 'windows', maxLen: 48, bos: false, countPadding: false, tokenBudget: 3000 };
const langs = ['en', 'sw'];
let model: LanguageModel;
const dirs: string[] = [];
const tmp = async () => { const d = await makeTempDir('ln-profile-'); dirs.push(d); return d; };

beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); });
afterAll(async () => { for (const d of dirs) await removeDir(d); });

function expectSameCounts(a: ActivationStats, b: ActivationStats) {
  expect(a.tokens).toBe(b.tokens);
  expect(a.sequences).toBe(b.sequences);
  const x = a.sites.get('act')!, y = b.sites.get('act')!;
  expect(Array.from(x.overZero)).toEqual(Array.from(y.overZero));
  for (let i = 0; i < x.sum.length; i++) expect(Math.abs(x.sum[i]! - y.sum[i]!)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(y.sum[i]!)));
}

describe('profileCorpus', () => {
  it('profiles each language into its own file, counting exactly the token budget', async () => {
    const out = await tmp();
    const warnings: string[] = [];
    const res = await profileCorpus(model, udhrCorpus(langs, { split: 'train' }), { languages: langs, outDir: out, scope, batchTokens: 500, onWarning: (m) => warnings.push(m) });
    expect(res.map((r) => r.language)).toEqual(langs);
    expect(warnings).toEqual([]);
    // a budget the corpus cannot fill: all of it counted, and said (it was silent)
    const small = await tmp();
    const [r] = await profileCorpus(model, udhrCorpus(['en'], { split: 'train' }), { languages: ['en'], outDir: small, scope: { ...scope, tokenBudget: 10_000_000 }, batchTokens: 500, onWarning: (m) => warnings.push(m) });
    expect(r!.tokens).toBeLessThan(10_000_000);
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^en: .* holds ${r!.tokens} tokens, fewer than the budget of 10000000: all of them were counted$`))]);
    for (const lang of langs) {
      const s = await readStats(statsFileFor(out, lang));
      expect(s.tokens).toBe(3000);
      expect(s.meta.language).toBe(lang);
      expect(s.meta.layers).toEqual([0, 1]);
      expect(s.sequences).toBe(Math.ceil(3000 / 48));
    }
  });

  it('shard 1/2 + shard 2/2 merged equals the single run (counts bit for bit)', async () => {
    const [one, s1, s2] = [await tmp(), await tmp(), await tmp()];
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    await profileCorpus(model, corpus, { languages: ['sw'], outDir: one, scope, batchTokens: 500 });
    await profileCorpus(model, corpus, { languages: ['sw'], outDir: s1, scope, batchTokens: 500, shard: { index: 0, count: 2 } });
    await profileCorpus(model, corpus, { languages: ['sw'], outDir: s2, scope, batchTokens: 500, shard: { index: 1, count: 2 } });
    const merged = mergeStats(await readStats(statsFileFor(s1, 'sw')), await readStats(statsFileFor(s2, 'sw')));
    expectSameCounts(merged, await readStats(statsFileFor(one, 'sw')));
  });

  it("stats merge of every shard, given in any order, lists the sequence means in the single run's order", async () => {
    const [one, s1, s2, s3] = [await tmp(), await tmp(), await tmp(), await tmp()];
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    const o = { languages: ['sw'], scope, batchTokens: 500, seqMeans: true };
    await profileCorpus(model, corpus, { ...o, outDir: one });
    const warnings: string[] = [];
    for (const [k, dir] of [s1, s2, s3].entries()) await profileCorpus(model, corpus, { ...o, outDir: dir, shard: { index: k, count: 3 }, onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([]); // a shard holds part of the budget: no shard warns that it is short of it
    const single = await readStats(statsFileFor(one, 'sw'));
    const shards = await Promise.all([s3, s1, s2].map((d) => readStats(statsFileFor(d, 'sw'))));
    const merged = mergeStatsInOrder(shards, ['3', '1', '2']);
    expectSameCounts(merged, single);
    const a = merged.sites.get('act')!.seqMeans!, b = single.sites.get('act')!.seqMeans!;
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1e-3, Math.abs(b[i]!)));
    console.log(`sequence means, merged shards vs the single run: worst relative difference ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-4);
    // in steps: shards 3 and 1 merged first (concatenated, no single run to follow), then shard 2: the run's order again
    const stepwise = mergeStatsInOrder([mergeStatsInOrder([shards[0]!, shards[1]!], ['3', '1']), shards[2]!], ['3+1', '2']);
    expect(Array.from(stepwise.sites.get('act')!.seqMeans!)).toEqual(Array.from(a));
    // two of three shards: concatenated in the order given
    const partial = mergeStatsInOrder(shards.slice(1), ['1', '2']);
    expect(partial.sequences).toBe(shards[1]!.sequences + shards[2]!.sequences);
    expect(Array.from(partial.sites.get('act')!.seqMeans!.subarray(0, 5))).toEqual(Array.from(shards[1]!.sites.get('act')!.seqMeans!.subarray(0, 5)));
  });

  it('resumes a killed run from its checkpoint without counting anything twice, to the same bits', async () => {
    const [whole, killed] = [await tmp(), await tmp()];
    const corpus = udhrCorpus(['en'], { split: 'train' });
    const opts = { languages: ['en'], scope, batchTokens: 300, checkpointTokens: 600, sites: ['act', 'up'] as Site[], seqMeans: true, histEdges: Float64Array.of(-1, 0, 0.5, 2) };
    await profileCorpus(model, corpus, { ...opts, outDir: whole });
    let batches = 0;
    await expect(profileCorpus(model, corpus, { ...opts, outDir: killed, onProgress: () => { if (++batches === 5) throw new Error('killed'); } }))
      .rejects.toThrow('killed');
    expect(existsSync(path.join(killed, '.en.checkpoint.safetensors'))).toBe(true);
    expect(existsSync(statsFileFor(killed, 'en'))).toBe(false); // no half-written result
    const [r] = await profileCorpus(model, corpus, { ...opts, outDir: killed });
    expect(r!.resumed).toBe(true);
    expect(existsSync(path.join(killed, '.en.checkpoint.safetensors'))).toBe(false);
    // The float64 sums too: the run continued from the checkpoint's totals, not added to them afterwards (the sums
    // differed from the uninterrupted run's in the last bits).
    const resumed = await readStats(statsFileFor(killed, 'en')), single = await readStats(statsFileFor(whole, 'en'));
    expect(resumed.tokens).toBe(single.tokens);
    expect(resumed.sequences).toBe(single.sequences);
    for (const site of ['act', 'up'] as Site[]) {
      const x = resumed.sites.get(site)!, y = single.sites.get(site)!;
      for (const k of ['overZero', 'sum', 'sumSq', 'absSum', 'seqMeans'] as const) expect(Buffer.from(x[k]!.buffer).equals(Buffer.from(y[k]!.buffer)), `${site}.${k}`).toBe(true);
      expect(Array.from(x.histogram!.counts)).toEqual(Array.from(y.histogram!.counts));
    }
    expect(resumed.meta.parts).toHaveLength(1);
    // a second run finds the language done and does nothing
    const [again] = await profileCorpus(model, corpus, { ...opts, outDir: killed });
    expect(again!.skipped).toBe(true);
  });

  it('refuses to resume a checkpoint made with other options, and starts over with resume: false', async () => {
    const out = await tmp();
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    let n = 0;
    await expect(profileCorpus(model, corpus, { languages: ['sw'], outDir: out, scope, batchTokens: 300, checkpointTokens: 300, onProgress: () => { if (++n === 3) throw new Error('killed'); } })).rejects.toThrow();
    await expect(profileCorpus(model, corpus, { languages: ['sw'], outDir: out, scope: { ...scope, maxLen: 32 }, batchTokens: 300 }))
      .rejects.toThrow(/checkpoint was made with other options/);
    const [r] = await profileCorpus(model, corpus, { languages: ['sw'], outDir: out, scope: { ...scope, maxLen: 32 }, batchTokens: 300, resume: false });
    expect(r!.resumed).toBe(false);
    expect((await readStats(statsFileFor(out, 'sw'))).meta.scope.maxLen).toBe(32);
  });

  it('cuts the next batch while the runtime computes the current one, counting what the plain loop counts', async () => {
    const m = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 });
    let inFlight = 0, encodedDuringForward = 0, forwards = 0;
    const forward = m.forward.bind(m);
    m.forward = (async (...args: Parameters<typeof m.forward>) => {
      inFlight++;
      forwards++;
      try { return await forward(...args); } finally { inFlight--; }
    }) as typeof m.forward;
    const tok = m.requireTokenizer();
    const encode = tok.encode.bind(tok);
    tok.encode = ((...args: Parameters<typeof tok.encode>) => { if (inFlight) encodedDuringForward++; return encode(...args); }) as typeof tok.encode;
    const [overlapped, plain] = [await tmp(), await tmp()];
    const corpus = udhrCorpus(['en'], { split: 'train' });
    await profileCorpus(m, corpus, { languages: ['en'], outDir: overlapped, scope, batchTokens: 300 });
    expect(forwards).toBe(Math.ceil(3000 / 48 / Math.floor(300 / 48)));
    expect(encodedDuringForward).toBeGreaterThan(forwards / 2);
    await profileCorpus(model, corpus, { languages: ['en'], outDir: plain, scope, batchTokens: 300 });
    expectSameCounts(await readStats(statsFileFor(overlapped, 'en')), await readStats(statsFileFor(plain, 'en')));
    m.dispose();
  });

  it('stops at the last profiled layer and refuses windows longer than the context', async () => {
    const out = await tmp();
    await profileCorpus(model, udhrCorpus(['en'], { split: 'train' }), { languages: ['en'], outDir: out, scope, layers: 1 });
    const s = await readStats(statsFileFor(out, 'en'));
    expect(s.meta.layers).toEqual([0]);
    expect(s.sites.get('act')!.overZero.length).toBe(model.config.intermediateSize);
    await expect(profileCorpus(model, udhrCorpus(['en']), { languages: ['en'], outDir: out, scope: { ...scope, maxLen: model.contextLength + 1 } }))
      .rejects.toThrow(new RegExp(`exceed the model's context of ${model.contextLength}: give a maxLen \\(--max-len\\) of at most ${model.contextLength}$`));
    await expect(profileCorpus(model, udhrCorpus(['en']), { languages: ['en'], outDir: out, scope: { ...scope, maxLen: model.contextLength, bos: true } }))
      .rejects.toThrow(new RegExp(`plus BOS exceed the model's context of ${model.contextLength}: give a maxLen \\(--max-len\\) of at most ${model.contextLength - 1}$`));
    await expect(profileCorpus(model, udhrCorpus(['en']), { languages: ['xx-unknown'], outDir: out, scope })).rejects.toThrow(/xx-unknown/);
  });
});

describe('stats merge of every shard of a run whose corpus is smaller than its budget', () => {
  it('says so once, at the merge (each shard holds part of the budget and says nothing)', async () => {
    const { runCli } = await import('./helpers/cli.js');
    const out = await tmp();
    const files: string[] = [];
    for (const k of [1, 2]) {
      const r = await runCli('profile', fixturePath('tiny-qwen2'), '--corpus', 'udhr:train', '--langs', 'sw', '--tokens', '1M', '--max-len', '48',
        '--shard', `${k}/2`, '--threads', '1', '--out', path.join(out, `s${k}`));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/budget/);
      files.push(path.join(out, `s${k}`, 'sw.safetensors'));
    }
    const m = await runCli('stats', 'merge', ...files, '--out', path.join(out, 'sw.safetensors'));
    expect(m.code, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/^warning: sw: the 2 shards counted \d+ tokens, fewer than their run's budget of 1000000: the corpus holds no more\n$/);
  }, 60_000);
});

describe('--seq-means with a budget whose mean vectors would not fit in memory', () => {
  it('is told before the run, with the size per sequence and in all; a budget that fits says nothing', async () => {
    const os = await import('node:os');
    const { runCli } = await import('./helpers/cli.js');
    const c = model.config;
    // act and q on the first 2 layers: 4 bytes x 2 x (intermediate + heads x head_dim) per sequence
    const perSequence = 4 * 2 * (c.intermediateSize + c.numHeads * c.headDim);
    const maxLen = 48;
    const sequences = Math.ceil(os.totalmem() / 4 / perSequence) * 2; // twice what a quarter of the memory holds
    const budget = sequences * maxLen;
    const warned: string[] = [];
    const out = await tmp();
    await profileCorpus(model, udhrCorpus(['sw'], { split: 'train' }), {
      languages: ['sw'], outDir: out, scope: { ...scope, maxLen, tokenBudget: budget }, sites: ['act', 'q'], layers: 2, seqMeans: true,
      onWarning: (m) => warned.push(m),
    });
    const heavy = warned.filter((m) => m.startsWith('--seq-means'));
    expect(heavy).toHaveLength(1);
    const gib = (sequences * perSequence / 2 ** 30).toFixed(1);
    expect(heavy[0]).toContain(`(${(perSequence / 2 ** 20).toFixed(1)} MiB each: 2 layers of act, q): a budget of ${budget} tokens in windows of up to 48 tokens is about ${sequences} sequences, ${gib} GiB per language`);
    // the file was still written (the corpus holds far fewer tokens than the budget)
    expect((await readStats(statsFileFor(out, 'sw'))).sites.get('act')!.seqMeans).toBeDefined();
    // the CLI prints it as a warning; a small budget, or no --seq-means, prints none
    const r = await runCli('profile', fixturePath('tiny-qwen2'), '--corpus', 'udhr:train', '--langs', 'sw', '--tokens', String(budget), '--max-len', String(maxLen),
      '--sites', 'act,q', '--layers', '2', '--seq-means', '--shard', '1/2', '--threads', '1', '--out', path.join(out, 'cli'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`warning: --seq-means keeps every sequence's mean vector`);
    expect(r.stderr).toContain(`(shard 1/2) is about ${Math.ceil(sequences / 2)} sequences`);
    for (const extra of [['--tokens', '2000', '--seq-means'], ['--tokens', String(budget)]]) {
      const q = await runCli('profile', fixturePath('tiny-qwen2'), '--corpus', 'udhr:train', '--langs', 'sw', '--max-len', String(maxLen), ...extra,
        '--threads', '1', '--out', path.join(out, `quiet${extra.length}${extra[2] ?? ''}`));
      expect(q.code, q.stderr).toBe(0);
      expect(q.stderr).not.toMatch(/seq-means/);
    }
  }, 60_000);
});
