// The CUDA runtime against the fixtures' references and against the CPU engine, through the public API and the
// CLI. Skipped (and reported as skipped) without a usable CUDA device; `scripts/gpu-check.sh` runs it on a GPU.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { generateTokens } from '../src/generate/generate.js';
import { writeMaskJson, MASK_FORMAT, type NeuronMask } from '../src/identify/masks.js';
import { resolveIntervention } from '../src/intervene/index.js';
import { modelIdentity } from '../src/profile/identity.js';
import type { Site } from '../src/profile/stats.js';
import { cudaDeviceProblem } from '../src/engine/device.js';
import { loadAddon } from '../src/native/addon.js';
import { FIXTURE_NAMES, fixturePath, makeTempDir, removeDir, repoRoot, type FixtureName } from './helpers/fixtures.js';
import { loadReference, relativeError, rowArgmax, type FixtureReference } from './helpers/reference.js';

const cuda = loadAddon().cudaInfo();
const gpuProblem = cudaDeviceProblem(cuda);  // none, or a GPU this build has no code for: skipped
const noGpu = gpuProblem !== '';
if (noGpu) console.log(`gpu-runtime tests skipped: ${gpuProblem}`);

// The CPU engine's bf16 bound (test/engine-fixtures.test.ts); the GPU's bf16 mode rounds at the same points.
const BF16_TOLERANCE = 5e-2;

// Every family the CPU engine runs, the CUDA runtime runs too: Llama (stories260k, tiny-llama3), Qwen2, Mistral,
// Gemma 2 (a sliding window of 8 on the fixture's 48 tokens), Cohere, Qwen3, YaRN.
describe.skipIf(noGpu).each(FIXTURE_NAMES)('cuda: fixture %s', (name: FixtureName) => {
  let ref: FixtureReference;
  let gpu: LanguageModel, gpu16: LanguageModel, cpu: LanguageModel, cpu16: LanguageModel;
  beforeAll(async () => {
    ref = await loadReference(name);
    gpu = await loadModel(fixturePath(name), { device: 'cuda', compute: 'f32' });
    gpu16 = await loadModel(fixturePath(name), { device: 'cuda', compute: 'bf16' });
    cpu = await loadModel(fixturePath(name), { device: 'cpu', compute: 'f32', threads: 2 });
    cpu16 = await loadModel(fixturePath(name), { device: 'cpu', compute: 'bf16', threads: 2 });
  });
  afterAll(async () => { for (const m of [gpu, gpu16, cpu, cpu16]) await m?.dispose(); });

  it('f32 logits within 1e-4 of the reference, same argmax; bf16 within the bound and close to the CPU bf16', async () => {
    const V = gpu.vocabSize, T = ref.inputIds.length;
    expect(gpu.info().device).toBe('cuda');
    const out = await gpu.forward([ref.inputIds], { logits: 'all' });
    const err = relativeError(out.logits, ref.logits);
    console.log(`${name}: cuda f32 relative error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-4);
    expect(rowArgmax(out.logits, T, V)).toEqual(rowArgmax(ref.logits, T, V));
    const o16 = await gpu16.forward([ref.inputIds], { logits: 'all' });
    const c16 = await cpu16.forward([ref.inputIds], { logits: 'all' });
    const e16 = relativeError(o16.logits, ref.logits), vsCpu = relativeError(o16.logits, c16.logits);
    console.log(`${name}: cuda bf16 relative error ${e16.toExponential(2)} (cpu bf16 ${relativeError(c16.logits, ref.logits).toExponential(2)}, cuda vs cpu bf16 ${vsCpu.toExponential(2)})`);
    expect(e16).toBeLessThan(BF16_TOLERANCE);
    expect(e16).toBeGreaterThan(0);
  });

  it('alone = packed = token by token through the device KV cache', async () => {
    const ids = ref.inputIds, V = gpu.vocabSize;
    const alone = await gpu.forward([ids], { logits: 'all' });
    const other1 = ids.slice(5, 17).reverse(), other2 = ids.slice(0, 9);
    const packed = await gpu.forward([other1, ids, other2], { logits: 'all' });
    const mine = packed.logits.subarray(packed.seqOffsets[1]! * V, (packed.seqOffsets[1]! + ids.length) * V);
    expect(relativeError(mine, alone.logits)).toBeLessThan(1e-5);
    const cache = gpu.createCache(2, ids.length);
    await gpu.forward([other2], { logits: 'none', cache, cacheSlots: [0] });
    const stepwise = new Float32Array(ids.length * V);
    for (let t = 0; t < ids.length; t++) {
      const r = await gpu.forward([[ids[t]!]], { logits: 'last', cache, cacheSlots: [1] });
      stepwise.set(r.logits, t * V);
    }
    expect(cache.length(1)).toBe(ids.length);
    expect(relativeError(stepwise, alone.logits)).toBeLessThan(1e-5);
    cache.copyPrefix(1, 0, 4);
    const cont = await gpu.forward([ids.slice(4, 8)], { logits: 'all', cache, cacheSlots: [0] });
    expect(relativeError(cont.logits, alone.logits.subarray(4 * V, 8 * V))).toBeLessThan(1e-5);
  });

  it('target log-probabilities (scoring, no full logits) equal the CPU within 1e-4', async () => {
    const ids = ref.inputIds;
    const targets = [...ids.slice(1), -1];
    const g = await gpu.forward([ids], { logits: 'none', targets: [targets] });
    const c = await cpu.forward([ids], { logits: 'none', targets: [targets] });
    expect(relativeError(g.targetLogprobs!, c.targetLogprobs!)).toBeLessThan(1e-4);
  });

  it('statistics: active_counts of the reference; every count equal to the CPU except values within rounding of zero', async () => {
    const sites = ['act', 'gate', 'h', 'up', 'q', 'down'] as const;
    const opts = { sites: [...sites], histEdges: [-1, -0.1, 0, 0.1, 1], seqMeans: true };
    const gs = gpu.createStats(opts), cs = cpu.createStats(opts);
    const batch = [ref.inputIds, ref.inputIds.slice(3, 20), [ref.inputIds[0]!]];
    const countMask = batch.map((s) => s.map((_, i) => (i === 0 ? 0 : 1)));
    await gpu.forward(batch, { logits: 'none', stats: gs, countMask, lastLayer: gpu.config.numLayers - 1 });
    await cpu.forward(batch, { logits: 'none', stats: cs, countMask, lastLayer: cpu.config.numLayers - 1 });
    const g = gs.read(), c = cs.read();
    expect(g.tokens).toBe(c.tokens);
    expect(g.sequences).toBe(c.sequences);
    for (const site of sites) {
      const a = g.sites.get(site)!, b = c.sites.get(site)!;
      let differ = 0;
      for (let i = 0; i < a.overZero.length; i++) differ += Math.abs(a.overZero[i]! - b.overZero[i]!);
      const total = b.overZero.reduce((x, y) => x + y, 0);
      console.log(`${name} ${site}: ${differ} of ${total} counts differ from the CPU (values within rounding of zero)`);
      expect(differ).toBeLessThanOrEqual(Math.max(2, total * 1e-3));
      expect(relativeError(a.sum, b.sum)).toBeLessThan(1e-4);
      expect(relativeError(a.sumSq, b.sumSq)).toBeLessThan(1e-4);
      expect(relativeError(a.histogram!.counts, b.histogram!.counts)).toBeLessThan(1e-3);
      expect(relativeError(a.seqMeans!, b.seqMeans!)).toBeLessThan(1e-4);
    }
    // active_counts of the reference: one sequence, every token counted.
    const one = gpu.createStats({ sites: ['act'] });
    await gpu.forward([ref.inputIds], { logits: 'none', stats: one, lastLayer: gpu.config.numLayers - 1 });
    const over = one.read().sites.get('act')!.overZero;
    let diff = 0;
    for (let i = 0; i < over.length; i++) diff += Math.abs(over[i]! - ref.activeCounts[i]!);
    expect(diff).toBeLessThanOrEqual(Math.max(1, over.reduce((x, y) => x + y, 0) * 1e-3));
  });

  it('statistics do not depend on how the tokens are split into forwards (counts exactly, sums to 1e-12)', async () => {
    const all = gpu.createStats({ sites: ['act', 'h'], layers: 1 }), split = gpu.createStats({ sites: ['act', 'h'], layers: 1 });
    const a = ref.inputIds.slice(0, 20), b = ref.inputIds.slice(20);
    await gpu.forward([a, b], { logits: 'none', stats: all, lastLayer: 0 });
    await gpu.forward([a], { logits: 'none', stats: split, lastLayer: 0 });
    await gpu.forward([b], { logits: 'none', stats: split, lastLayer: 0 });
    for (const site of ['act', 'h'] as const) {
      const x = all.read().sites.get(site)!, y = split.read().sites.get(site)!;
      expect(Array.from(x.overZero)).toEqual(Array.from(y.overZero));
      expect(relativeError(x.sum, y.sum)).toBeLessThan(1e-12);
    }
  });

  it('statistics restored from earlier totals and continued equal one accumulator through every forward, bit for bit (profile resume)', async () => {
    const batches = [[ref.inputIds.slice(0, 17)], [ref.inputIds.slice(17, 30)], [ref.inputIds.slice(30)]];
    const opts = { sites: ['act', 'h'] as Site[], histEdges: [-1, 0, 1] };
    const one = gpu.createStats(opts), first = gpu.createStats(opts), rest = gpu.createStats(opts);
    for (const b of batches) await gpu.forward(b, { logits: 'none', stats: one });
    await gpu.forward(batches[0]!, { logits: 'none', stats: first });
    rest.restore(first.read());
    for (const b of batches.slice(1)) await gpu.forward(b, { logits: 'none', stats: rest });
    for (const site of opts.sites) {
      const x = rest.read().sites.get(site)!, y = one.read().sites.get(site)!;
      for (const k of ['overZero', 'sum', 'sumSq', 'absSum'] as const) expect(Buffer.from(x[k]!.buffer).equals(Buffer.from(y[k]!.buffer)), `${site}.${k}`).toBe(true);
      expect(Array.from(x.histogram!.counts)).toEqual(Array.from(y.histogram!.counts));
    }
  });

  it('interventions give the CPU engine\'s logits (deactivate, scale at h, test-time set, edits of every projection site)', async () => {
    const layer = 0, I = gpu.config.intermediateSize;
    const neurons = [0, 3, Math.floor(I / 2), I - 1];
    const tmp = await makeTempDir('ln-gpu-iv-');
    try {
      const maskFile = path.join(tmp, 'mask.json');
      const L = gpu.config.numLayers;
      const languages = { en: Array.from({ length: L }, (_, l) => (l === layer ? neurons : [])) };
      await writeMaskJson(maskFile, { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: modelIdentity(cpu.checkpoint), sources: [], layers: L, width: I, languages } as NeuronMask);
      for (const spec of ['deactivate:MASK:en', 'scale:2:mask=MASK:lang=en:site=h', 'testtime:=:median:mask=MASK:lang=en',
        'scale:-1:mask=MASK:lang=en:site=up', 'scale:1.5:neurons=all:site=q:layers=0', 'set:0.2:neurons=all:site=k:layers=0',
        'zero:neurons=all:site=v:layers=1', 'add:0.1:neurons=all:site=o:layers=0', 'scale:0.5:neurons=all:site=down:layers=1']) {
        const s = spec.replace('MASK', maskFile);
        let ivG, ivC;
        try {
          ivG = await resolveIntervention(gpu, s);
          ivC = await resolveIntervention(cpu, s);
        } catch (e) {
          throw new Error(`${spec}: ${(e as Error).message}`);
        }
        const g = await gpu.forward([ref.inputIds], { logits: 'all', intervene: ivG });
        const c = await cpu.forward([ref.inputIds], { logits: 'all', intervene: ivC });
        expect(relativeError(g.logits, c.logits), spec).toBeLessThan(1e-4);
      }
    } finally {
      await removeDir(tmp);
    }
  });

  it('reports device memory: weights + KV cache + activations within what the device says is used', async () => {
    await gpu16.forward([ref.inputIds], { logits: 'last' });
    const m = gpu16.info().memory;
    expect(m.weights).toBeGreaterThan(0);
    expect(m.deviceTotal).toBeGreaterThan(m.deviceUsed);
    expect(m.deviceUsed).toBeGreaterThanOrEqual(m.weights + m.kvCache + m.activations);
    // A KV cache's device memory is freed by dispose(), not left to the garbage collector; generation disposes its own.
    const live = gpu16.info().memory.kvCache;
    const cache = gpu16.createCache(4, 64);
    expect(gpu16.info().memory.kvCache).toBe(live + cache.bytes);
    cache.dispose();
    expect(gpu16.info().memory.kvCache).toBe(live);
    await generateTokens(gpu16, [ref.inputIds.slice(0, 5), ref.inputIds.slice(0, 3)], { maxNewTokens: 3, concurrency: 1 });
    expect(gpu16.info().memory.kvCache).toBe(live);
  });
});

describe.skipIf(noGpu)('cuda: the commands', () => {
  let dir: string;
  beforeAll(async () => { dir = await makeTempDir('ln-gpu-cli-'); });
  afterAll(async () => { await removeDir(dir); });
  const bin = path.join(repoRoot, 'bin', 'langneurons.js');
  const json = (...args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args, '--json'], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`langneurons ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  it('profile on cuda and on the cpu agree, and a cuda shard merges with a cpu shard into the whole corpus', () => {
    const model = fixturePath('tiny-llama3');
    const common = ['--corpus', 'udhr:train', '--langs', 'sw', '--max-len', '32', '--tokens', '2k', '--compute', 'f32'];
    json('profile', model, ...common, '--device', 'cuda', '--out', path.join(dir, 'gpu'));
    json('profile', model, ...common, '--device', 'cpu', '--out', path.join(dir, 'cpu'));
    const g = json('stats', 'show', path.join(dir, 'gpu', 'sw.safetensors'));
    const c = json('stats', 'show', path.join(dir, 'cpu', 'sw.safetensors'));
    expect(g.tokens).toBe(c.tokens);
    expect(Math.abs(g.sites[0].meanActiveFraction - c.sites[0].meanActiveFraction)).toBeLessThan(1e-3);
    // Shard 1/2 on the GPU and 2/2 on the CPU merge into the whole corpus (two whole-corpus files are refused by
    // `stats merge`: they would count every token twice).
    json('profile', model, ...common, '--device', 'cuda', '--shard', '1/2', '--out', path.join(dir, 'gpu-1'));
    json('profile', model, ...common, '--device', 'cpu', '--shard', '2/2', '--out', path.join(dir, 'cpu-2'));
    const merged = path.join(dir, 'merged.safetensors');
    const m = json('stats', 'merge', path.join(dir, 'gpu-1', 'sw.safetensors'), path.join(dir, 'cpu-2', 'sw.safetensors'), '--out', merged);
    expect(m.tokens).toBe(c.tokens);
    const ms = json('stats', 'show', merged);
    expect(Math.abs(ms.sites[0].meanActiveFraction - c.sites[0].meanActiveFraction)).toBeLessThan(1e-3);
  }, 400_000); // six CLI runs: ~35 s on the CUDA simulator alone, over the default 120 s beside npm test on 2 cores

  it('info --device cuda, score, generate and eval run on the GPU', () => {
    const model = fixturePath('tiny-qwen2');
    const info = json('info', model, '--device', 'cuda');
    expect(info.device.runtime).toMatch(/^cuda:0 /);
    const s = json('score', model, '--text', 'Hello world, this is a test.', '--device', 'cuda', '--compute', 'f32');
    const sc = json('score', model, '--text', 'Hello world, this is a test.', '--device', 'cpu');
    expect(Math.abs(s.meanNll - sc.meanNll) / sc.meanNll).toBeLessThan(1e-4);
    const gen = json('generate', model, '--prompt', 'Hello', '--max-new-tokens', '8', '--device', 'cuda', '--compute', 'f32');
    const genc = json('generate', model, '--prompt', 'Hello', '--max-new-tokens', '8', '--device', 'cpu');
    expect(gen.generations[0].tokens.length).toBe(8);
    expect(gen.generations[0].text).toBe(genc.generations[0].text);
    // Greedy picks on the device with the repetition penalty (as FLORES runs), two prompts through one cache.
    const pen = ['--prompt', 'Hello', '--prompt', 'The cat', '--max-new-tokens', '12', '--repetition-penalty', '1.3'];
    const pg = json('generate', model, ...pen, '--device', 'cuda', '--compute', 'f32');
    const pc = json('generate', model, ...pen, '--device', 'cpu');
    const tokens = (j: { generations: { tokens: number[] }[] }) => j.generations.map((g) => g.tokens);
    expect(tokens(pg)).toHaveLength(2);
    expect(tokens(pg)).toEqual(tokens(pc));
    // Continuously batched: 2 cache slots for 5 prompts, outputs of different lengths (a stop string), so device
    // forwards pack sequences decoding one token with prompts prefilling into freed slots.
    const many = ['Hello', 'The cat', 'Once', 'A dog ran', 'Why'].flatMap((p) => ['--prompt', p]);
    const cont = [...many, '--max-new-tokens', '10', '--batch', '2', '--stop', 'e', '--repetition-penalty', '1.3'];
    const cg = json('generate', model, ...cont, '--device', 'cuda', '--compute', 'f32');
    expect(tokens(cg)).toEqual(tokens(json('generate', model, ...cont, '--device', 'cpu')));
    expect(new Set(tokens(cg).map((t) => t.length)).size).toBeGreaterThan(1);
    // eval (log-likelihood choices): the GPU's result is keyed and recorded as the GPU's (it once said cpu, so a GPU
    // and a CPU run shared one result), with the CPU's accuracy.
    const task = ['--task', 'xcopa', '--langs', 'sw', '--data', path.join(repoRoot, 'test', 'fixtures-eval')];
    const eg = json('eval', model, ...task, '--device', 'cuda', '--compute', 'f32', '--out', path.join(dir, 'eval'));
    const ec = json('eval', model, ...task, '--device', 'cpu', '--out', path.join(dir, 'eval'));
    // (the engine kind names the GPU model and cuBLASLt, not which of the machine's GPUs ran it)
    expect(eg.results[0].compute).toMatchObject({ device: 'cuda:0', mode: 'f32', engine: expect.stringMatching(/^(?!cuda:).*, f32, cuBLASLt \S+$/) });
    expect(ec.results[0].compute).toMatchObject({ device: 'cpu', mode: 'f32' });
    expect(eg.results[0].key).not.toBe(ec.results[0].key);
    expect(eg.results[0].metrics.acc).toBe(ec.results[0].metrics.acc);
  });
});
