// `analyze delta` and `analyze activations` on hand-made inputs with hand-worked answers: a sparse delta, a LoRA
// adapter (against the explicitly formed s·B·A) and two checkpoints agree on the change and its share on a mask;
// hand-made statistics give the activation probabilities, histogram shares, sequence-mean quantiles and the
// polysemantic neurons worked out below.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { analyzeActivations, readStatsInputs } from '../src/analyze/activations.js';
import { adapterChanges, analyzeWeightUpdates, readChanges, resolveDeltaSource } from '../src/analyze/weights.js';
import { MASK_FORMAT, writeMaskJson } from '../src/identify/masks.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { writeStats, type ActivationStats, type ModelIdentity } from '../src/profile/stats.js';
import { applyDelta } from '../src/train/delta.js';
import { runCli } from './helpers/cli.js';
import { makeDelta } from './helpers/delta.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';
import { decodePng, inkOf } from './helpers/png.js';

let tmp: string;
const model = fixturePath('stories260k');  // F32 weights: new − base is exact to float32 rounding
beforeAll(async () => { tmp = await makeTempDir('ln-weights-'); });
afterAll(async () => { await removeDir(tmp); });

describe('analyze delta', () => {
  // gate_proj of layer 1: rows 2 and 7 + 0.1 (64 columns each): ‖Δ‖² = 2·64·0.01 = 1.28;
  // down_proj of layer 1: column 2 + 0.2 (64 rows): ‖Δ‖² = 64·0.04 = 2.56. Total 3.84.
  const changes = [
    { name: 'model.layers.1.mlp.gate_proj.weight', mode: 'rows' as const, indices: [2, 7], add: (v: number) => v + 0.1 },
    { name: 'model.layers.1.mlp.down_proj.weight', mode: 'cols' as const, indices: [2], add: (v: number) => v + 0.2 },
  ];

  it('a sparse delta: norms per layer and projection, and the share on a mask (all of it on {2, 7}, 1/6 on {7})', async () => {
    const run = path.join(tmp, 'runs', 'mt-neurons');
    await makeDelta(model, run, changes);
    await fsp.writeFile(path.join(run, 'run.json'), JSON.stringify({ model: { dir: model } }));
    const src = await resolveDeltaSource(run);
    expect(src).toEqual({ kind: 'delta', file: path.join(run, 'delta.safetensors'), base: model });
    const ch = await readChanges(src);
    const a = analyzeWeightUpdates(ch, 5, run, 'delta', { source: 'm', layers: [[], [2, 7], [], [], []] });
    expect(a.projections).toEqual(['gate', 'down']);
    expect(a.norm[0]![1]).toBeCloseTo(Math.sqrt(1.28), 5);
    expect(a.norm[1]![1]).toBeCloseTo(Math.sqrt(2.56), 5);
    expect(a.norm[0]![0]).toBe(0);
    expect(a.totalNorm).toBeCloseTo(Math.sqrt(3.84), 5);
    expect(a.mask!.fraction).toBeCloseTo(1, 6);
    expect(a.mask!.fractionPerLayer).toEqual([null, expect.closeTo(1, 6), null, null, null]);
    expect(a.relative[0]![1]).toBeGreaterThan(0);
    const only7 = analyzeWeightUpdates(ch, 5, run, 'delta', { source: 'm', layers: [[], [7], [], [], []] });
    expect(only7.mask!.fraction).toBeCloseTo(0.64 / 3.84, 5);

    // The same change as two checkpoints: identical numbers.
    const merged = path.join(tmp, 'merged');
    await applyDelta(model, path.join(run, 'delta.safetensors'), merged);
    const b = analyzeWeightUpdates(await readChanges(await resolveDeltaSource(merged, model)), 5, merged, 'checkpoints');
    expect(b.norm).toEqual(a.norm);

    // The CLI, with the mask of one language; the run's base model found in run.json.
    const maskFile = path.join(tmp, 'mask.json');
    const id = modelIdentity(await openCheckpoint(model));
    await writeMaskJson(maskFile, { format: MASK_FORMAT, method: 'lape', parameters: {}, site: 'act', model: id, sources: [], layers: 5, width: id.intermediate,
      languages: { mt: [[], [7], [], [], []], en: [[0], [2], [], [], []] } });
    const out = path.join(tmp, 'fig-delta');
    const r = await runCli('analyze', 'delta', run, '--mask', `${maskFile}:mt`, '--out', out, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).figures['delta-mask'].data.fraction).toBeCloseTo(1 / 6, 5);
    expect(inkOf(decodePng(await fsp.readFile(path.join(out, 'delta.png')))).inkShare).toBeGreaterThan(0.02);
    const all = await runCli('analyze', 'delta', run, '--mask', maskFile, '--out', path.join(tmp, 'fig-delta-all'), '--json');
    expect(JSON.parse(all.stdout).figures['delta-mask'].data.fraction).toBeCloseTo(1, 5);  // the union {2, 7} of layer 1
    // a run trained on two languages (finetune --lang mt,en) is checked against their union: {7} ∪ {2} of layer 1
    const two = await runCli('analyze', 'delta', run, '--mask', `${maskFile}:mt,en`, '--out', path.join(tmp, 'fig-delta-two'), '--json');
    expect(two.code, two.stderr).toBe(0);
    expect(JSON.parse(two.stdout).figures['delta-mask'].data.fraction).toBeCloseTo(1, 5);
    const bad = await runCli('analyze', 'delta', merged, '--out', out);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/merged: a checkpoint is compared with its base: give --base/);
  });

  it('a LoRA adapter: row, column and total squared norms of s·B·A equal the explicitly formed matrix\u2019s', async () => {
    const dir = path.join(tmp, 'adapter');
    await fsp.mkdir(dir, { recursive: true });
    const r = 2, K = 6, N = 5, alpha = 6;
    const A = Float32Array.from({ length: r * K }, (_, i) => Math.sin(i + 1));
    const B = Float32Array.from({ length: N * r }, (_, i) => Math.cos(2 * i));
    await fsp.writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, lora_dropout: 0, target_modules: ['up_proj'], bias: 'none', fan_in_fan_out: false }));
    await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), {
      'base_model.model.model.layers.3.mlp.up_proj.lora_A.weight': { dtype: 'F32', shape: [r, K], data: A },
      'base_model.model.model.layers.3.mlp.up_proj.lora_B.weight': { dtype: 'F32', shape: [N, r], data: B },
    });
    const [c] = await adapterChanges(dir);
    expect([c!.layer, c!.projection, c!.rows, c!.cols]).toEqual([3, 'up', N, K]);
    const s = alpha / r;
    let total = 0;
    for (let n = 0; n < N; n++) {
      let row = 0;
      for (let k = 0; k < K; k++) {
        let d = 0;
        for (let j = 0; j < r; j++) d += B[n * r + j]! * A[j * K + k]!;
        row += (s * d) ** 2;
      }
      expect(c!.rowSq[n]).toBeCloseTo(row, 9);
      total += row;
    }
    for (let k = 0; k < K; k++) {
      let col = 0;
      for (let n = 0; n < N; n++) { let d = 0; for (let j = 0; j < r; j++) d += B[n * r + j]! * A[j * K + k]!; col += (s * d) ** 2; }
      expect(c!.colSq[k]).toBeCloseTo(col, 9);
    }
    expect(c!.totalSq).toBeCloseTo(total, 9);
    // rows of up_proj are neurons: a mask on {1, 3} of layer 3 holds rows 1 and 3 of the change.
    const a = analyzeWeightUpdates([c!], 5, dir, 'adapter', { source: 'm', layers: [[], [], [], [1, 3], []] });
    expect(a.mask!.fraction).toBeCloseTo((c!.rowSq[1]! + c!.rowSq[3]!) / total, 12);
    // The relative change divides by the base's weights: an adapter for a [5, 6] up_proj is refused against a model
    // whose up_proj is another shape (it was divided by that model's norms)
    await expect(adapterChanges(dir, fixturePath('stories260k'))).rejects.toThrow(/module model\.layers\.3\.mlp\.up_proj: adapter is for a \[5, 6\] weight, the model's is \[172, 64\]/);
  });

  it("a LoRA run folder: its base is the run's (run.json), so the relative changes are there without --base", async () => {
    const base = fixturePath('stories260k');
    const run = path.join(tmp, 'lora-run');
    const trainText = path.join(tmp, 'train.txt');
    await fsp.writeFile(trainText, 'Once upon a time there was a little girl named Lily. She loved to play outside in the park.\n'.repeat(8));
    const r = await runCli('finetune', base, '--method', 'lora', '--train', trainText, '--steps', '2', '--chunk', '32', '--lr', '1e-2', '--device', 'cpu', '--out', run, '--json');
    expect(r.code, r.stderr).toBe(0);
    const src = await resolveDeltaSource(run);
    expect(src).toMatchObject({ kind: 'adapter', base: path.resolve(base) });
    const changes = await readChanges(src);
    expect(changes.length).toBeGreaterThan(0);
    for (const c of changes) expect(c.baseSq).toBeGreaterThan(0);
    expect((await resolveDeltaSource(path.join(run, 'adapter'))).base).toBe(path.resolve(base)); // the adapter folder of a run too
  });
});

describe('analyze activations', () => {
  const identity: ModelIdentity = { name: 'toy', modelType: 'llama', layers: 2, hidden: 4, intermediate: 4, fingerprint: 'f'.repeat(64) };
  // 2 layers × 4 units, 10 tokens each; P(act > 0) per unit (layer 0 then layer 1):
  //   en [1, 0, 0, 0 | .5, 0, 0, 0]   de [1, 0, 0, 0 | 0, 0, 0, .8]   fr [0, 1, 0, 0 | 0, 0, 0, 0]
  // 0.95 quantile of the 8: en .5 + .65·.5 = .825, de .8 + .65·.2 = .93, fr 0 + .65·1 = .65 → unit 0:0 is active for en
  // and de (polysemantic), 0:1 for fr only.
  const over: Record<string, number[]> = { en: [10, 0, 0, 0, 5, 0, 0, 0], de: [10, 0, 0, 0, 0, 0, 0, 8], fr: [0, 10, 0, 0, 0, 0, 0, 0] };
  const stats = (lang: string): ActivationStats => ({
    meta: { format: 'langneurons-stats/1', model: identity, language: lang, scope: { mode: 'windows', maxLen: 8, bos: false, countPadding: false, tokenBudget: 0 },
      layers: [0, 1], corpus: { files: [], fingerprint: 'c' }, toolVersion: 't', shards: 1 },
    tokens: 10, sequences: 2,
    sites: new Map([['act', {
      site: 'act', width: 4, overZero: Float64Array.from(over[lang]!), sum: Float64Array.from(over[lang]!, (v) => v * 0.3), sumSq: new Float64Array(8),
      // bins [-1, 0), [0, 1), [1, 2]: unit 0:0 has 2/6/2 in en, units 0:1 all in bin 1
      histogram: { edges: Float64Array.from([-1, 0, 1, 2]), counts: Float64Array.from({ length: 24 }, (_, i) => (i < 3 ? [2, 6, 2][i]! : i < 6 ? [0, 10, 0][i - 3]! : 0)) },
      // 2 sequences: means of units 0:0 and 0:1 are (1, 3) and (2, 6): averaged over the two neurons 2 and 4
      seqMeans: Float32Array.from({ length: 16 }, (_, i) => (i === 0 ? 1 : i === 1 ? 3 : i === 8 ? 2 : i === 9 ? 6 : 0)),
    }]]),
  });

  it('probabilities, polysemantic neurons, histogram shares and sequence-mean quantiles by hand', async () => {
    const dir = path.join(tmp, 'stats');
    await fsp.mkdir(dir, { recursive: true });
    for (const l of ['en', 'de', 'fr']) await writeStats(path.join(dir, `${l}.safetensors`), stats(l));
    const inputs = await readStatsInputs([dir]);
    expect(inputs.map((x) => x.stats.meta.language)).toEqual(['de', 'en', 'fr']);
    const a = analyzeActivations(inputs, [{ layer: 0, unit: 0 }, { layer: 0, unit: 1 }], { site: 'act', neuronsSource: 'm' });
    expect(a.probability).toEqual([[1, 1, 0], [0, 0, 1]]);
    expect(a.mean).toEqual([[0.3, 0.3, 0], [0, 0, 0.3]]);  // sum / tokens
    expect(a.chosenProbability).toEqual([0.5, 0.5, 0.5]);
    expect(a.allProbability[1]).toBeCloseTo(1.5 / 8, 12);
    expect(a.activeThreshold[0]).toBeCloseTo(0.93, 12);
    expect(a.activeThreshold[1]).toBeCloseTo(0.825, 12);
    expect(a.activeThreshold[2]).toBeCloseTo(0.65, 12);
    expect(a.polysemantic).toEqual([{ layer: 0, unit: 0, languages: ['de', 'en'] }]);
    expect(a.histogram!.share[0]).toEqual([2 / 20, 16 / 20, 2 / 20]);
    expect(a.sequenceMeans!.values[0]![2]).toBeCloseTo(3, 6);  // median of the sequences' means 2 and 4
    expect(a.sequenceMeans!.values[0]![0]).toBeCloseTo(2.2, 6);  // 10% quantile
  });

  it('analyze activations --neurons mask:lang writes the figures; two files of one language refused', async () => {
    const dir = path.join(tmp, 'stats');
    const maskFile = path.join(tmp, 'act-mask.json');
    await writeMaskJson(maskFile, { format: MASK_FORMAT, method: 'lape', parameters: {}, site: 'act', model: identity, sources: [], layers: 2, width: 4,
      languages: { en: [[0, 1], []], fr: [[1], [3]] } });
    const out = path.join(tmp, 'fig-act');
    const r = await runCli('analyze', 'activations', dir, '--neurons', `${maskFile}:en`, '--out', out, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j.figures)).toEqual(['activations', 'activations-neurons', 'activations-histogram', 'activations-sequences']);
    expect(j.figures.activations.data.polysemantic).toHaveLength(1);
    expect(await fsp.readFile(path.join(out, 'activations-neurons.svg'), 'utf8')).toMatch(/0:0 \*/);
    for (const f of ['activations', 'activations-neurons', 'activations-histogram', 'activations-sequences'])
      expect(inkOf(decodePng(await fsp.readFile(path.join(out, `${f}.png`)))).inkShare).toBeGreaterThan(0.01);
    await writeStats(path.join(tmp, 'en2.safetensors'), stats('en'));
    const dup = await runCli('analyze', 'activations', dir, path.join(tmp, 'en2.safetensors'), '--neurons', maskFile, '--out', out);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/en2\.safetensors: a second statistics file of language 'en'/);
  });
});
