// Thresholds from an earlier pass (Mondal's act-prob-75p/90p/95p): per language, per-unit quantiles read off the
// earlier pass's histograms, then counts of value > threshold. Checked against a float64 recomputation from the
// engine's captured activations, end to end from the command line (two passes, then identify --method act-prob-90p),
// and for the refusals (no histogram, another model / language, options given alone).
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { udhrCorpus } from '../src/corpus/udhr.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { histogramQuantile } from '../src/identify/act-prob.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { profileCorpus, statsFileFor } from '../src/profile/profile.js';
import { readStats, writeStats, type Site, type StatsMeta } from '../src/profile/stats.js';
import { quantileLabel, thresholdsFromEarlierPass } from '../src/profile/thresholds.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const dirs: string[] = [];
const tmp = async () => { const d = await makeTempDir('ln-thresholds-'); dirs.push(d); return d; };
afterAll(async () => { for (const d of dirs) await removeDir(d); });

describe('thresholds from an earlier pass', () => {
  let model: LanguageModel;
  beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); });

  it('labels quantiles as act-prob.ts reads them', () => {
    expect(quantileLabel(0.9)).toBe('p90');
    expect(quantileLabel(0.75)).toBe('p75');
    expect(quantileLabel(0.95)).toBe('p95');
    expect(quantileLabel(0.975)).toBe('p97.5');
  });

  it('counts value > the histogram quantile of the earlier pass exactly as a float64 recomputation does', async () => {
    const L = model.config.numLayers, I = model.config.intermediateSize;
    const identity = modelIdentity(model.checkpoint);
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) % model.vocabSize;
    const batch = [Array.from({ length: 40 }, rnd), Array.from({ length: 23 }, rnd), Array.from({ length: 31 }, rnd)];
    const countMask = batch.map((s) => s.map((_, t) => (t === 0 ? 0 : 1)));
    const mask = countMask.flat();
    const T = mask.length;
    const edges = Array.from({ length: 97 }, (_, i) => -2 + (5 * i) / 96);
    const sites: Site[] = ['act', 'gate'];
    const q = 0.9;

    // pass 1: histograms, written as the earlier pass's file of language 'xx'
    const s1 = model.createStats({ sites, histEdges: edges });
    await model.forward(batch, { logits: 'none', stats: s1, countMask });
    const meta: StatsMeta = {
      format: 'langneurons-stats/1', model: identity, language: 'xx',
      scope: { mode: 'windows', maxLen: 64, bos: false, countPadding: false, tokenBudget: 0 },
      layers: Array.from({ length: L }, (_, i) => i), corpus: { files: [], fingerprint: 'c' }, toolVersion: 'test', shards: 1,
    };
    const pass1 = await tmp();
    await writeStats(path.join(pass1, 'xx.safetensors'), s1.toActivationStats(meta));
    const th = await thresholdsFromEarlierPass(pass1, { language: 'xx', model: identity, sites, layers: L, quantile: q });
    expect(th.source).toBe('p90');

    // pass 2: the same tokens, counting value > threshold
    const s2 = model.createStats({ sites, thresholds: th.thresholds, thresholdSource: th.source });
    await model.forward(batch, { logits: 'none', stats: s2, countMask });
    const r2 = s2.read();
    const B = edges.length - 1;
    for (const site of sites) {
      const thr = th.thresholds[site]!;
      const above = r2.sites.get(site)!.above!;
      expect(above.source).toBe('p90');
      let badThresholds = 0, badCounts = 0, fracSum = 0, outsideBin = 0;
      for (let l = 0; l < L; l++) {
        const cap = (await model.forward(batch, { logits: 'none', capture: { site, layer: l } })).capture!;
        for (let j = 0; j < I; j++) {
          const vals: number[] = [];
          for (let t = 0; t < T; t++) if (mask[t]) vals.push(cap[t * I + j]!);
          // float64 histogram over the same edges, its quantile, then the count above it
          const h = new Float64Array(B);
          for (const v of vals) { let b = 0; while (b + 1 < B && v >= edges[b + 1]!) b++; h[b]!++; }
          const want = Math.fround(histogramQuantile(h, Float64Array.from(edges), q));
          const u = l * I + j;
          if (thr[u] !== want) badThresholds++;
          let n = 0;
          for (const v of vals) if (v > thr[u]!) n++;
          if (above.counts[u] !== n) badCounts++;
          fracSum += n / vals.length;
          // the threshold lies in the bin of the exact empirical quantile (values within the edges)
          const sorted = [...vals].sort((a, b) => a - b);
          const exact = sorted[Math.ceil(q * sorted.length) - 1]!;
          if (exact > edges[0]! && exact < edges[B]!) {
            const width = edges[1]! - edges[0]!;
            if (Math.abs(thr[u]! - exact) > width + 1e-6) outsideBin++;
          }
        }
      }
      expect(badThresholds, site).toBe(0);
      expect(badCounts, site).toBe(0);
      expect(outsideBin, site).toBe(0);
      // same data: about 1 - q of the tokens are above their own p90 (not exactly: interpolation inside bins)
      expect(Math.abs(fracSum / (L * I) - (1 - q))).toBeLessThan(0.03);
    }
  });

  it('profileCorpus refuses an earlier pass without histograms, of another model or language, or missing', async () => {
    const scope = { mode: 'windows' as const, maxLen: 32, bos: false, countPadding: false, tokenBudget: 500 };
    const corpus = udhrCorpus(['en', 'sw'], { split: 'train' });
    const plain = await tmp();
    await profileCorpus(model, corpus, { languages: ['en', 'sw'], outDir: plain, scope });
    const out = await tmp();
    const from = (dir: string, langs = ['en']) => profileCorpus(model, corpus, { languages: langs, outDir: out, scope, thresholdsFrom: { from: dir, quantile: 0.9 } });
    await expect(from(plain)).rejects.toThrow(/en\.safetensors: the earlier pass has no histogram at site "act"/);
    const other = await loadModel(fixturePath('tiny-llama3'), { threads: 2 });
    const otherDir = await tmp();
    await profileCorpus(other, corpus, { languages: ['en'], outDir: otherDir, scope, histEdges: [-1, 0, 1, 2] });
    await expect(from(otherDir)).rejects.toThrow(/the earlier pass profiled another model/);
    const hist = await tmp();
    await profileCorpus(model, corpus, { languages: ['sw'], outDir: hist, scope, histEdges: [-1, 0, 1, 2] });
    await fsp.copyFile(statsFileFor(hist, 'sw'), statsFileFor(hist, 'en'));
    await expect(from(hist)).rejects.toThrow(/the earlier pass is of language 'sw', not 'en'/);
    await expect(from(otherDir, ['sw'])).rejects.toThrow(/sw\.safetensors: no statistics of language 'sw' from the earlier pass/);
    await expect(profileCorpus(model, corpus, { languages: ['en'], outDir: out, scope, thresholdsFrom: { from: hist, quantile: 1.5 } }))
      .rejects.toThrow(/quantile in \(0, 1\)/);
    await expect(profileCorpus(model, corpus, { languages: ['sw'], outDir: out, scope, sites: ['act', 'gate'], thresholdsFrom: { from: hist, quantile: 0.9 } }))
      .rejects.toThrow(/did not profile site "gate"/);
  });
});

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};
const json = (...args: string[]) => {
  const r = cli(...args, '--json');
  if (r.code !== 0) throw new Error(`langneurons ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

describe('act-prob-90p from the command line', () => {
  it('profiles twice (histograms, then counts above each language\'s p90) and identifies with act-prob-90p; a first pass too narrow is warned about', async () => {
    const dir = await tmp();
    const model = fixturePath('tiny-llama3');
    const common = ['--corpus', 'udhr:train', '--langs', 'en,sw', '--max-len', '32', '--tokens', '2k', '--threads', '2'];
    const p1 = path.join(dir, 'pass1'), p2 = path.join(dir, 'pass2');
    json('profile', model, ...common, '--histogram', '-1:3:128', '--out', p1);
    const second = cli('profile', model, ...common, '--above-quantile', '0.9', '--thresholds-from', p1, '--out', p2);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toMatch(/open end/); // the range holds every p90
    // a first pass whose range ends below many units' values: their p90 lies in the last bin (which also holds every
    // value past it), so the thresholds are too low and the counts too high; said, with how many units (was silent)
    const narrow = path.join(dir, 'pass1-narrow');
    json('profile', model, ...common, '--histogram', '-1:0.05:64', '--out', narrow);
    const warned = cli('profile', model, ...common, '--above-quantile', '0.9', '--thresholds-from', narrow, '--out', path.join(dir, 'pass2-narrow'));
    expect(warned.code, warned.stderr).toBe(0);
    const th = await thresholdsFromEarlierPass(narrow, { language: 'en', model: modelIdentity(await openCheckpoint(model)), sites: ['act'], layers: 3, quantile: 0.9 });
    const last = th.openBins.find((b) => b.site === 'act')!.high;
    expect(last).toBeGreaterThan(0);
    expect(warned.stderr).toContain(`warning: en: the 0.9 quantile read from ${statsFileFor(narrow, 'en')} lies in an open end of its histogram for site act: ${last} of 480 units in the last bin (it also holds every value above 0.05`);
    for (const lang of ['en', 'sw']) {
      const s = await readStats(statsFileFor(p2, lang));
      const above = s.sites.get('act')!.above!;
      expect(above.source).toBe('p90');
      expect(s.sites.get('act')!.absSum).toBeDefined();
      let frac = 0;
      for (const c of above.counts) frac += c / s.tokens;
      expect(Math.abs(frac / above.counts.length - 0.1)).toBeLessThan(0.03); // same corpus: ~10% above its own p90
    }
    const maskFile = path.join(dir, 'mask.json');
    const id = json('identify', p2, '--method', 'act-prob-90p', '--top-rate', '0.05', '--out', maskFile);
    expect(id.method).toBe('act-prob-90p');
    const units = 3 * 160; // tiny-llama3: layers × intermediate
    for (const l of ['en', 'sw']) expect(id.total[l]).toBe(Math.round(0.05 * units));
    // the counts are above p90: act-prob-75p refuses them
    const wrong = cli('identify', p2, '--method', 'act-prob-75p', '--out', path.join(dir, 'm75.json'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/"p90", this variant needs p75/);
    // act-prob-mean-abs reads the exact Σ|value| of either pass
    const mean = json('identify', p1, '--method', 'act-prob-mean-abs', '--top-rate', '0.05', '--out', path.join(dir, 'mabs.json'));
    expect(mean.total.en).toBe(Math.round(0.05 * units));
  });

  it.each([
    [['--above-quantile', '0.9'], /--above-quantile and --thresholds-from go together/],
    [['--thresholds-from', '/tmp'], /--above-quantile and --thresholds-from go together/],
    [['--above-quantile', '90', '--thresholds-from', '/tmp'], /--above-quantile must be a quantile in \(0, 1\)/],
    [['--above-quantile', '0.9', '--thresholds-from', '/nonexistent/pass1'], /\/nonexistent\/pass1\/en\.safetensors: no statistics of language 'en'/],
  ])('refuses %j with a clear message', (args, pattern) => {
    const r = cli('profile', fixturePath('tiny-llama3'), '--corpus', 'udhr:train', '--langs', 'en', '--tokens', '1k', '--out', '/tmp/never-ln', ...args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
  });
});
