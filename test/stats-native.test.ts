// Activation statistics accumulated by the native forward (NativeStats / StatsAccumulator) on the fixtures:
// the recorded active_counts reproduced, every statistic against a float64 recomputation from the engine's own
// captured activations, shard-then-merge equal to one pass, and clear errors for bad inputs.
import { beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import type { StatsAccumulator, StatsOptions } from '../src/engine/stats.js';
import { loadAddon } from '../src/native/addon.js';
import { mergeStats, type ActivationStats, type Site, type StatsMeta } from '../src/profile/stats.js';
import { FIXTURE_NAMES, fixturePath, type FixtureName } from './helpers/fixtures.js';
import { loadReference, type FixtureReference } from './helpers/reference.js';

const EDGES = [-3, -1, -0.3, -0.05, 0, 0.05, 0.3, 1, 3];

function meta(layers: number): StatsMeta {
  return {
    format: 'langneurons-stats/1',
    model: { name: 'fixture', modelType: 'llama', layers, hidden: 0, intermediate: 0, fingerprint: 'f' },
    language: 'xx',
    scope: { mode: 'windows', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
    layers: Array.from({ length: layers }, (_, i) => i),
    corpus: { files: [], fingerprint: 'c' },
    toolVersion: 'test',
    shards: 1,
  };
}

const sumArr = (a: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i]!; return s; };

describe.each(FIXTURE_NAMES)('fixture %s', (name: FixtureName) => {
  let ref: FixtureReference;
  let model: LanguageModel;
  let L: number, I: number;
  beforeAll(async () => {
    ref = await loadReference(name);
    model = await loadModel(fixturePath(name), { threads: 2 });
    L = model.config.numLayers;
    I = model.config.intermediateSize;
  });

  it('reproduces the reference active_counts with site act', async () => {
    const stats = model.createStats({ sites: ['act'] });
    await model.forward([ref.inputIds], { logits: 'none', stats });
    const s = stats.read();
    const T = ref.inputIds.length;
    expect(s.tokens).toBe(T);
    expect(s.sequences).toBe(1);
    const oz = s.sites.get('act')!.overZero;
    expect(oz.length).toBe(ref.activeCounts.length);
    expect(oz.length).toBe(L * I);
    let diff = 0;
    for (let i = 0; i < oz.length; i++) diff += Math.abs(oz[i]! - ref.activeCounts[i]!);
    console.log(`${name}: active_counts total |difference| ${diff} of ${L * I * T}`);
    expect(diff).toBeLessThan(0.001 * L * I * T);
    // Not vacuous: some neurons fire on some tokens, not all on all.
    expect(sumArr(oz)).toBeGreaterThan(0);
    expect(sumArr(oz)).toBeLessThan(L * I * T);
  });

  it('matches a float64 recomputation from the captured activations (sums, squares, |values|, histogram, thresholds, sequence means)', async () => {
    const ids = ref.inputIds;
    const cut = (f: number) => Math.round(f * ids.length);
    const batch = [ids.slice(0, cut(0.35)), ids.slice(cut(0.35), cut(0.6)), ids.slice(cut(0.6))];
    // The first token of each sequence plays BOS (fed, not counted); the middle sequence is counted entirely.
    const countMask = batch.map((s, k) => s.map((_, t) => (k !== 1 && t === 0 ? 0 : 1)));
    const layers = L > 2 ? L - 1 : L;  // profile all but the last layer where there are enough
    const sites: Site[] = ['act', 'gate', 'h', 'up', 'q', 'k', 'v', 'o', 'down'];
    const width = (site: Site) => ({ act: I, gate: I, h: I, up: I, q: model.config.numHeads * model.config.headDim,
      k: model.config.numKvHeads * model.config.headDim, v: model.config.numKvHeads * model.config.headDim,
      o: model.config.hiddenSize, down: model.config.hiddenSize })[site];
    const thr = new Float32Array(layers * I).map((_, i) => ((i * 7919) % 101) / 100 - 0.5);
    const opts: StatsOptions = { sites, layers, histEdges: EDGES, thresholds: { act: thr }, seqMeans: true };
    const stats = model.createStats(opts);
    await model.forward(batch, { logits: 'none', stats, countMask });
    const s = stats.read();
    const T = ids.length, counted = T - 2;
    expect(s.tokens).toBe(counted);
    expect(s.sequences).toBe(3);
    const mask = countMask.flat();
    const seqOf = batch.flatMap((b, k) => b.map(() => k));
    const B = EDGES.length - 1;
    for (const site of sites) {
      const st = s.sites.get(site)!;
      const W = width(site);
      expect(st.width).toBe(W);
      let badCounts = 0, worstSum = 0, worstMean = 0;
      for (let l = 0; l < layers; l++) {
        // The same recording set as above (a throwaway accumulator), so the same arithmetic path.
        const shadow = model.createStats(opts);
        const out = await model.forward(batch, { logits: 'none', stats: shadow, countMask, capture: { site, layer: l } });
        const cap = out.capture!;
        expect(cap.length).toBe(T * W);
        for (let j = 0; j < W; j++) {
          let over = 0, sum = 0, sq = 0, abs = 0, above = 0;
          const hist = new Array<number>(B).fill(0);
          const seqSum = [0, 0, 0], seqN = [0, 0, 0];
          for (let t = 0; t < T; t++) {
            if (!mask[t]) continue;
            const v = cap[t * W + j]!;
            if (v > 0) over++;
            sum += v; sq += v * v; abs += Math.abs(v);
            if (site === 'act' && v > thr[l * W + j]!) above++;
            let b = 0;
            while (b + 1 < B && v >= EDGES[b + 1]!) b++;
            hist[b]!++;
            seqSum[seqOf[t]!]! += v; seqN[seqOf[t]!]!++;
          }
          const u = l * W + j;
          if (st.overZero[u] !== over) badCounts++;
          for (let b = 0; b < B; b++) if (st.histogram!.counts[u * B + b] !== hist[b]) badCounts++;
          if (site === 'act' && st.above!.counts[u] !== above) badCounts++;
          worstSum = Math.max(worstSum, Math.abs(st.sum[u]! - sum) / (Math.abs(sum) + 1e-30), Math.abs(st.sumSq[u]! - sq) / (sq + 1e-30),
            Math.abs(st.absSum![u]! - abs) / (abs + 1e-30));
          for (let k = 0; k < 3; k++) {
            const want = seqSum[k]! / seqN[k]!;
            const got = st.seqMeans![(k * layers + l) * W + j]!;
            worstMean = Math.max(worstMean, Math.abs(got - want) / (Math.abs(want) + 1e-3));
          }
        }
      }
      expect(badCounts, `site ${site}`).toBe(0);
      expect(worstSum, `site ${site}`).toBeLessThan(1e-12);
      expect(worstMean, `site ${site}`).toBeLessThan(1e-6);
      expect(st.histogram!.edges).toEqual(Float64Array.from(EDGES));
    }
    expect(s.sites.get('act')!.above!.thresholds).toBe(thr);
    // takeSeqMeans drains them; reset zeroes the rest.
    expect(stats.takeSeqMeans().get('act')!.length).toBe(3 * layers * I);
    expect(stats.read().sites.get('act')!.seqMeans!.length).toBe(0);
    stats.reset();
    const z = stats.read();
    expect(z.tokens).toBe(0);
    expect(sumArr(z.sites.get('act')!.overZero)).toBe(0);
  });

  it('shard-then-merge equals one pass, counts bit for bit (one accumulator, and mergeStats)', async () => {
    const ids = ref.inputIds;
    const cut = (f: number) => Math.round(f * ids.length);
    const batch = [ids.slice(0, cut(0.3)), ids.slice(cut(0.3), cut(0.5)), ids.slice(cut(0.5), cut(0.8)), ids.slice(cut(0.8))];
    const mask = batch.map((s) => s.map((_, t) => (t === 0 ? 0 : 1)));
    const opts: StatsOptions = { sites: ['act', 'down'], histEdges: EDGES, seqMeans: true };
    const one = model.createStats(opts), acc = model.createStats(opts), a = model.createStats(opts), b = model.createStats(opts);
    await model.forward(batch, { logits: 'none', stats: one, countMask: mask });
    await model.forward(batch.slice(0, 2), { logits: 'none', stats: acc, countMask: mask.slice(0, 2) });
    await model.forward(batch.slice(2), { logits: 'none', stats: acc, countMask: mask.slice(2) });
    await model.forward(batch.slice(0, 2), { logits: 'none', stats: a, countMask: mask.slice(0, 2) });
    await model.forward(batch.slice(2), { logits: 'none', stats: b, countMask: mask.slice(2) });
    const whole = one.toActivationStats(meta(L));
    const merged: ActivationStats = mergeStats(a.toActivationStats(meta(L)), b.toActivationStats(meta(L)));
    for (const other of [acc.toActivationStats(meta(L)), merged]) {
      expect(other.tokens).toBe(whole.tokens);
      expect(other.sequences).toBe(4);
      for (const site of ['act', 'down'] as Site[]) {
        const x = other.sites.get(site)!, y = whole.sites.get(site)!;
        expect(x.overZero).toEqual(y.overZero);
        expect(x.histogram!.counts).toEqual(y.histogram!.counts);
        let worst = 0;
        for (let i = 0; i < x.sum.length; i++) worst = Math.max(worst, Math.abs(x.sum[i]! - y.sum[i]!) / (Math.abs(y.sum[i]!) + 1e-6));
        expect(worst).toBeLessThan(1e-5);
        expect(x.seqMeans!.length).toBe(y.seqMeans!.length);
      }
    }
  });

  it("restore: an accumulator continued from another's totals equals one accumulator through every batch, bit for bit", async () => {
    const ids = ref.inputIds;
    const cut = (f: number) => Math.round(f * ids.length);
    const batches = [[ids.slice(0, cut(0.4))], [ids.slice(cut(0.4), cut(0.7))], [ids.slice(cut(0.7))]];
    const opts: StatsOptions = { sites: ['act', 'q'], histEdges: EDGES, thresholds: { act: new Float32Array(L * I).fill(0.01) } };
    const one = model.createStats(opts), first = model.createStats(opts), rest = model.createStats(opts);
    for (const b of batches) await model.forward(b, { logits: 'none', stats: one });
    await model.forward(batches[0]!, { logits: 'none', stats: first });
    rest.restore(first.toActivationStats(meta(L)));
    for (const b of batches.slice(1)) await model.forward(b, { logits: 'none', stats: rest });
    const x = rest.read(), y = one.read();
    expect([x.tokens, x.sequences]).toEqual([y.tokens, y.sequences]);
    for (const site of ['act', 'q'] as Site[]) {
      const a = x.sites.get(site)!, b = y.sites.get(site)!;
      for (const k of ['overZero', 'sum', 'sumSq', 'absSum'] as const) expect(Buffer.from(a[k]!.buffer).equals(Buffer.from(b[k]!.buffer)), `${site}.${k}`).toBe(true);
      expect(a.histogram!.counts).toEqual(b.histogram!.counts);
    }
    expect(x.sites.get('act')!.above!.counts).toEqual(y.sites.get('act')!.above!.counts);
  });

  it('lastLayer stops early with the same statistics for the profiled layers', async () => {
    const half = Math.max(0, Math.floor(L / 2) - 1);
    const full = model.createStats({ sites: ['act', 'q'], layers: half + 1 });
    const early = model.createStats({ sites: ['act', 'q'], layers: half + 1 });
    await model.forward([ref.inputIds], { logits: 'none', stats: full });
    await model.forward([ref.inputIds], { stats: early, lastLayer: half });
    const x = full.read(), y = early.read();
    for (const site of ['act', 'q'] as Site[]) {
      expect(y.sites.get(site)!.overZero).toEqual(x.sites.get(site)!.overZero);
      expect(y.sites.get(site)!.sum).toEqual(x.sites.get(site)!.sum);
    }
    // with logits: the logit lens (test/resid-site.test.ts); the last layer's lens is the forward's own logits
    const plain = await model.forward([ref.inputIds], { logits: 'last' });
    expect((await model.forward([ref.inputIds], { logits: 'last', lastLayer: L - 1 })).logits).toEqual(plain.logits);
    await expect(model.forward([ref.inputIds], { logits: 'none', stats: model.createStats({ sites: ['act'] }), lastLayer: half }))
      .rejects.toThrow(/stops after layer/);
  });
});

describe('bad inputs', () => {
  let model: LanguageModel;
  let other: LanguageModel;
  beforeAll(async () => {
    model = await loadModel(fixturePath('tiny-qwen2'), { threads: 1 });
    other = await loadModel(fixturePath('tiny-mistral'), { threads: 1 });
  });

  it('NativeStats options are checked with TypeError / RangeError', () => {
    const addon = loadAddon();
    const mk = (o: unknown) => () => new addon.NativeStats(model.native, o as never);
    expect(mk({ sites: ['act', 'nope'], layers: 1 })).toThrow(RangeError);
    expect(mk({ sites: ['act', 'nope'], layers: 1 })).toThrow(/unknown site 'nope'/);
    expect(mk({ sites: [3], layers: 1 })).toThrow(TypeError);
    expect(mk({ sites: 'act', layers: 1 })).toThrow(/'sites' must be an array/);
    expect(mk({ sites: [], layers: 1 })).toThrow(/'sites' is empty/);
    expect(mk({ sites: ['act', 'act'], layers: 1 })).toThrow(/listed twice/);
    expect(mk({ sites: ['act'], layers: 3 })).toThrow(/'layers' must be an integer in \[1, 2\]/);
    expect(mk({ sites: ['act'], layers: 0 })).toThrow(RangeError);
    expect(mk({ sites: ['act'] })).toThrow(/missing field 'layers'/);
    expect(mk({ sites: ['act'], layers: 1, histEdges: Float64Array.of(0) })).toThrow(/at least 2 edges/);
    expect(mk({ sites: ['act'], layers: 1, histEdges: Float64Array.of(0, 1, 0.5) })).toThrow(/strictly ascending/);
    expect(mk({ sites: ['act'], layers: 1, histEdges: [0, 1] })).toThrow(/must be a Float64Array/);
    expect(mk({ sites: ['act'], layers: 2, thresholds: { act: new Float32Array(10) } })).toThrow(/2 x 96 = 192 values, got 10/);
    expect(mk({ sites: ['act'], layers: 2, thresholds: { q: new Float32Array(96) } })).toThrow(/not in 'sites'/);
    expect(mk({ sites: ['act'], layers: 2, thresholds: { act: new Float64Array(192) } })).toThrow(/must be a Float32Array/);
    expect(() => new addon.NativeStats({} as never, { sites: ['act'], layers: 1 })).toThrow(/model must be a NativeModel/);
    expect(() => model.createStats({ sites: ['bogus' as Site] })).toThrow(/unknown site 'bogus'/);
    expect(() => model.createStats({ layers: 9 })).toThrow(/layers/);
  });

  it('restore refuses totals that do not fit, and changes nothing then', async () => {
    const stats = model.createStats({ sites: ['act'], histEdges: [0, 1] });
    await model.forward([[1, 5, 9, 12]], { logits: 'none', stats });
    const good = stats.toActivationStats(meta(2));
    const act = good.sites.get('act')!;
    const fresh = () => model.createStats({ sites: ['act'], histEdges: [0, 1] });
    const withAct = (o: object) => ({ ...good, sites: new Map([['act' as Site, { ...act, ...o }]]) });
    const refused = (from: Parameters<StatsAccumulator['restore']>[0], why: RegExp) => {
      const s = fresh();
      expect(() => s.restore(from)).toThrow(why);
      expect(s.read().tokens).toBe(0);
      expect(Array.from(s.read().sites.get('act')!.sum).every((v) => v === 0)).toBe(true);
    };
    refused({ ...good, sites: new Map() }, /lack site 'act'$/);
    refused(withAct({ absSum: undefined }), /lack the sums of site 'act'$/);
    refused(withAct({ sum: new Float64Array(3) }), /sites\.act\.sum must hold 192 values, got 3/);
    refused(withAct({ overZero: new Float64Array(192).fill(0.5) }), /sites\.act\.overZero\[0\] is 0\.5; counts must be whole numbers/);
    refused(withAct({ histogram: undefined }), /sites\.act\.histCounts must be a Float64Array/);
    refused({ ...good, sequences: good.tokens + 1 }, /'sequences' must be an integer in \[0, 4\]/);
    const ok = fresh();
    ok.restore(good);
    expect(ok.read().sites.get('act')!.sum).toEqual(act.sum);
    expect(ok.read().tokens).toBe(4);
  });

  it('forward options are checked', async () => {
    const addon = loadAddon();
    const stats = model.createStats({ sites: ['act'] });
    const tokens = Int32Array.of(1, 5, 9, 12), lens = Int32Array.of(4);
    const fwd = (o: object) => model.native.forward(tokens, lens, { logits: 0, ...o });
    expect(() => fwd({ stats: {} })).toThrow(/options.stats must be a NativeStats/);
    const foreign = new addon.NativeStats(other.native, { sites: ['act'], layers: 1 });
    expect(() => fwd({ stats: foreign })).toThrow(/belongs to another model/);
    expect(() => fwd({ stats: stats.native, countMask: new Uint8Array(3) })).toThrow(/one entry per token \(4\), got 3/);
    expect(() => fwd({ stats: stats.native, countMask: [1, 1, 1, 1] })).toThrow(/must be a Uint8Array/);
    expect(() => fwd({ countMask: new Uint8Array(4) })).toThrow(/countMask needs options.stats/);
    expect(() => fwd({ lastLayer: 2 })).toThrow(/'lastLayer' must be an integer in \[-1, 1\]/);
    expect(() => fwd({ capture: { site: 'x', layer: 0 } })).toThrow(/unknown site 'x'/);
    expect(() => fwd({ capture: { site: 'act', layer: 5 } })).toThrow(RangeError);
    await expect(fwd({ capture: { site: 'act', layer: 1 }, lastLayer: 0 })).rejects.toThrow(/capture layer must be in \[0, 1\)/);
    await expect(model.forward([[1, 2]], { stats, countMask: [[1]] })).rejects.toThrow(/countMask of sequence 0 has 1 entries, expected 2/);
    await expect(model.forward([[1, 2]], { stats: other.createStats() })).rejects.toThrow(/another model/);
    // read() while a forward using the stats is in flight is refused, afterwards it works.
    const p = model.native.forward(tokens, lens, { logits: 0, stats: stats.native });
    expect(() => stats.read()).toThrow(/still running; await them first/);
    await p;
    expect(stats.read().tokens).toBe(4);
    // A rejected request leaves nothing behind.
    expect(() => fwd({ stats: stats.native, countMask: new Uint8Array(3) })).toThrow();
    expect(stats.read().tokens).toBe(4);
  });
});
