// The classification head (--head classification) end to end: its gradient through the binding against finite
// differences of the trainer's own loss (the float64 reference check is native/tests/test_train_lora.cpp
// train_head_fd_gradients); the loss falls on hand-made NLI items along neuron-lora with Mondal's preset recorded;
// score.weight is saved; a stopped and resumed run equals an uninterrupted one; bad items and options are refused.
import { mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { readAllTensors } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { modelIdentity } from '../src/profile/identity.js';
import { finetune, resume } from '../src/train/finetune.js';
import { encodeItem, packItems, readHead } from '../src/train/head.js';
import { randomNeurons } from '../src/train/methods.js';
import { createNativeTrainer } from '../src/train/native.js';

const FIX = path.resolve(__dirname, '../../shared/fixtures/models');
const STORIES = path.join(FIX, 'stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-head-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

/** Hand-made NLI items (XNLI layout: premise, hypothesis, label 0 entailment / 1 neutral / 2 contradiction). */
export const NLI_ITEMS = [
  { premise: 'The cat sat on the mat.', hypothesis: 'A cat sat on a mat.', label: 0 },
  { premise: 'The dog ran to the park.', hypothesis: 'The dog was very happy.', label: 1 },
  { premise: 'Lily had a red ball.', hypothesis: 'Lily had no ball at all.', label: 2 },
  { premise: 'Tom ate a big apple.', hypothesis: 'Tom ate an apple.', label: 0 },
  { premise: 'The sun was hot today.', hypothesis: 'They went to the beach.', label: 1 },
  { premise: 'Mom baked a cake.', hypothesis: 'Nobody baked anything.', label: 2 },
  { premise: 'The bird sang in the tree.', hypothesis: 'A bird sang.', label: 0 },
  { premise: 'Ben found a shiny stone.', hypothesis: 'Ben kept the stone in a box.', label: 1 },
  { premise: 'The boat was on the lake.', hypothesis: 'There was no boat.', label: 2 },
  { premise: 'Sue and Max played with toys.', hypothesis: 'Sue played.', label: 0 },
  { premise: 'The frog jumped high.', hypothesis: 'The frog was green.', label: 1 },
  { premise: 'The door was open.', hypothesis: 'The door was shut.', label: 2 },
];
const itemsFile = path.join(tmp, 'nli.jsonl');
writeFileSync(itemsFile, NLI_ITEMS.map((x) => JSON.stringify(x)).join('\n') + '\n');

async function maskFor(file: string): Promise<string> {
  const ck = await openCheckpoint(STORIES);
  const L = ck.config.numLayers, I = ck.config.intermediateSize;
  const mask: NeuronMask = {
    format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [], layers: L, width: I,
    languages: { en: randomNeurons(L, I, Math.round(0.05 * L * I), 3) },
  };
  const f = path.join(tmp, file);
  await writeMask(f, mask);
  return f;
}

const fast = { batch: 4, evalEvery: 0, threads: 2, chunk: 64 };

describe('finetune --head classification', () => {
  it('the head gradient through the binding equals finite differences of the loss', async () => {
    const ck = await openCheckpoint(STORIES);
    const tok = await loadTokenizer(STORIES, ck.config);
    const tr = createNativeTrainer(ck, 2, [{ role: 'wq', layer: 4, mode: 'lora', r: 4, alpha: 8 }], { numLabels: 3, seed: 1 });
    const head = tr.params().find((p) => p.role === 'score')!;
    expect([head.rows, head.cols, head.size]).toEqual([3, ck.config.hiddenSize, 3 * ck.config.hiddenSize]);
    const w0 = tr.read('master', head.id);
    const std = Math.sqrt(w0.reduce((s, x) => s + x * x, 0) / w0.length);
    expect(std).toBeGreaterThan(0.015); // normal(0, 0.02) init
    expect(std).toBeLessThan(0.025);
    const w = w0.map((_, i) => Math.sin(i) * 0.3); // larger than the init: visible gradients
    tr.write('master', head.id, w);
    const b = packItems(NLI_ITEMS.slice(0, 5).map((x) => ({ ids: encodeItem([x.premise, x.hypothesis], (s) => tok.encode(s), 64), label: x.label })));
    const loss = async () => (await tr.forwardBackwardCls(b.tokens, b.lens, b.labels, { backward: false })).lossSum / 5;
    tr.zeroGrad();
    const r = await tr.forwardBackwardCls(b.tokens, b.lens, b.labels, { backward: true });
    expect(r.count).toBe(5);
    expect(r.logits.length).toBe(15);
    const g = tr.read('grad', head.id);
    let num = 0, den = 0;
    for (const i of [0, 7, 64, 100, 150, 191]) {
      const h = 1e-2, x = w[i]!;
      w[i] = x + h; tr.write('master', head.id, w); const lp = await loss();
      w[i] = x - h; tr.write('master', head.id, w); const lm = await loss();
      w[i] = x; tr.write('master', head.id, w);
      const fd = (lp - lm) / (2 * h);
      num += (g[i]! - fd) ** 2; den += fd ** 2;
    }
    // float32 logits, h = 1e-2: the differences are good to ~1e-4 relative (the float64 check is native).
    console.log(`head gradient vs finite differences: rel ${Math.sqrt(num / den).toExponential(2)}`);
    expect(Math.sqrt(num / den)).toBeLessThan(2e-3);
    // With a bias (headBias): initialised to 0, its gradient is the sum over items of softmax - onehot (/ items).
    const tb = createNativeTrainer(ck, 2, [], { numLabels: 3, seed: 1, headBias: true });
    const bias = tb.params().find((p) => p.role === 'score_bias')!;
    expect([bias.rows, bias.cols, Array.from(tb.read('master', bias.id))]).toEqual([3, 1, [0, 0, 0]]);
    tb.zeroGrad();
    const rb = await tb.forwardBackwardCls(b.tokens, b.lens, b.labels, { backward: true });
    const want = [0, 0, 0];
    for (let s = 0; s < 5; s++) {
      const z = Array.from(rb.logits.subarray(s * 3, s * 3 + 3)), mx = Math.max(...z), e = z.map((v) => Math.exp(v - mx)), sum = e.reduce((x, y) => x + y);
      e.forEach((v, c) => { want[c]! += (v / sum - (c === b.labels[s] ? 1 : 0)) / 5; });
    }
    Array.from(tb.read('grad', bias.id)).forEach((g, c) => expect(g).toBeCloseTo(want[c]!, 6));
  });

  it('neuron-lora + head (CLI): Mondal\'s preset recorded, the loss falls on hand-made items, score.weight saved', async () => {
    const masks = await maskFor('mask-cli.json');
    const run = path.join(tmp, 'run-cli');
    const out: string[] = [];
    const w = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['node', 'langneurons', 'finetune', STORIES, '--method', 'neuron-lora', '--masks', masks, '--lang', 'en',
        '--head', 'classification', '--num-labels', '3', '--train', itemsFile, '--valid', itemsFile, '--out', run,
        '--batch', '4', '--accum', '1', '--chunk', '64', '--steps', '24', '--eval-every', '12', '--lr', '1e-2', '--json']);
    } finally {
      process.stdout.write = w;
    }
    expect(code).toBe(0);
    const opts = JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8')).options;
    expect(opts).toMatchObject({ lr: 1e-2, beta1: 0.95, beta2: 0.999, weightDecay: 0.1, warmupRatio: 0.01, clip: 10, schedule: 'linear',
      warmupRamp: 'hf', batch: 4, accum: 1, chunk: 64, head: { numLabels: 3, textFields: ['premise', 'hypothesis'], labelField: 'label', bias: true } });
    const log = readFileSync(path.join(run, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // Mondal's get_linear_schedule_with_warmup(int(0.01 * 24) = 0 warm-up steps, 24): lr (24 - s) / 24 at step s
    const lrs = log.filter((e) => 'loss' in e).map((e) => e.lr as number);
    expect(lrs).toHaveLength(24);
    lrs.forEach((lr, s) => expect(lr).toBeCloseTo((1e-2 * (24 - s)) / 24, 15));
    const steps = log.filter((e) => 'loss' in e).map((e) => e.loss as number);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(steps.slice(0, 3)), last = mean(steps.slice(-3)); // one epoch = 3 steps
    const valid = log.filter((e) => 'validLoss' in e);
    console.log(`neuron-lora + head: loss ${first.toFixed(4)} -> ${last.toFixed(4)}, valid ${valid.map((e) => `${e.validLoss.toFixed(4)} (acc ${e.validAccuracy.toFixed(2)})`).join(', ')}`);
    expect(last).toBeLessThan(first - 0.3);
    expect(valid.at(-1).validAccuracy).toBeGreaterThan(0.5);
    const h = await readHead(run);
    expect(h.info).toMatchObject({ numLabels: 3, hidden: 64, method: 'neuron-lora', maxLen: 64, bias: true });
    const t = await readAllTensors(path.join(run, 'head', 'head.safetensors'));
    expect(t.get('score.weight')!.info.shape).toEqual([3, 64]);
    expect(t.get('score.bias')!.info.shape).toEqual([3]); // Mondal's head is an nn.Linear: a bias, trained from 0
    expect(Array.from(h.bias!).some((x) => Math.abs(x) > 1e-4)).toBe(true);
    // The adapter and the merged model are written as for neuron-lora without a head; the checkpoint has no score.
    const m = await readAllTensors(path.join(run, 'model', 'model.safetensors'));
    expect(m.has('score.weight')).toBe(false);
    await fsp.access(path.join(run, 'adapter', 'adapter_config.json'));
    // Without neuron-lora the preset does not apply.
    const r2 = await finetune(STORIES, { ...fast, method: 'mlp', head: 'classification', train: itemsFile, steps: 2, writeModel: false }, path.join(tmp, 'run-mlp'));
    expect(r2.steps).toBe(2);
    const o2 = JSON.parse(readFileSync(path.join(tmp, 'run-mlp', 'run.json'), 'utf8')).options;
    expect(o2).toMatchObject({ lr: 1e-5, beta1: 0.9, weightDecay: 0.01, warmupRatio: 0, clip: 1, schedule: 'constant', batch: 4, accum: 1 });
    expect(o2.head.bias).toBeUndefined(); // transformers' score layer: no bias
    expect((await readAllTensors(path.join(tmp, 'run-mlp', 'head', 'head.safetensors'))).has('score.bias')).toBe(false);
    // Mondal's batching when not given: 1 item a micro-batch, 8 accumulated, items of at most 256 tokens (the
    // model's context where shorter)
    await finetune(STORIES, { ...fast, method: 'neuron-lora', masks, langs: ['en'], head: 'classification', train: itemsFile, steps: 1, writeModel: false, batch: undefined, accum: undefined, chunk: undefined }, path.join(tmp, 'run-preset'));
    const o3 = JSON.parse(readFileSync(path.join(tmp, 'run-preset', 'run.json'), 'utf8')).options;
    expect(o3).toMatchObject({ batch: 1, accum: 8, chunk: 256, schedule: 'linear', weightDecay: 0.1 });
    // --no-head-bias overrides the preset's bias.
    await finetune(STORIES, { ...fast, method: 'neuron-lora', masks, langs: ['en'], head: 'classification', headBias: false, train: itemsFile, steps: 1, writeModel: false }, path.join(tmp, 'run-nobias'));
    expect(JSON.parse(readFileSync(path.join(tmp, 'run-nobias', 'run.json'), 'utf8')).options.head.bias).toBeUndefined();
    expect((await readHead(path.join(tmp, 'run-nobias'))).bias).toBeNull();
    // head.json and head.safetensors must agree on the bias.
    const hj = path.join(tmp, 'run-nobias', 'head', 'head.json');
    writeFileSync(hj, JSON.stringify({ ...JSON.parse(readFileSync(hj, 'utf8')), bias: true }));
    await expect(readHead(path.join(tmp, 'run-nobias'))).rejects.toThrow(/head\.safetensors: score\.bias missing or not F32 \[3\] \(head\.json says the head has a bias\)/);
    writeFileSync(hj, JSON.stringify({ ...JSON.parse(readFileSync(hj, 'utf8')), bias: 'yes' }));
    await expect(readHead(path.join(tmp, 'run-nobias'))).rejects.toThrow(/head\.json: bias must be true or false, got "yes"/);
    const withBias = path.join(run, 'head');
    const hj2 = path.join(withBias, 'head.json');
    writeFileSync(hj2, JSON.stringify({ ...JSON.parse(readFileSync(hj2, 'utf8')), bias: undefined }));
    await expect(readHead(run)).rejects.toThrow(/holds a score\.bias, but head\.json does not say the head has a bias/);
    const d = JSON.parse(readFileSync(path.join(tmp, 'run-mlp', 'delta.json'), 'utf8'));
    expect(d.tensors.map((x: { name: string }) => x.name)).not.toContain('score.weight');
  }, 120_000);

  it('a stopped and resumed head run (with a bias) equals an uninterrupted one', async () => {
    const o = { ...fast, method: 'lora' as const, loraR: 4, loraAlpha: 8, loraTargets: ['v_proj'], head: 'classification' as const, headBias: true,
      train: itemsFile, steps: 6, saveEvery: 2, lr: 5e-3, accum: 2, batch: 2 };
    const a = path.join(tmp, 'run-ha'), b = path.join(tmp, 'run-hb');
    await finetune(STORIES, o, a);
    await finetune(STORIES, o, b, { stopAfterStep: 2 });
    await resume(b);
    for (const f of ['head/head.safetensors', 'adapter/adapter_model.safetensors', 'state/state.safetensors'])
      expect(readFileSync(path.join(a, f)).equals(readFileSync(path.join(b, f))), f).toBe(true);
  }, 120_000);

  it('refuses bad items and options with clear errors', async () => {
    const bad = (name: string, text: string) => { const f = path.join(tmp, name); writeFileSync(f, text); return f; };
    const t = (o: Record<string, unknown>, dir: string) =>
      finetune(STORIES, { ...fast, method: 'mlp', head: 'classification', train: itemsFile, ...o } as never, path.join(tmp, dir));
    await expect(t({ train: bad('b1.jsonl', '{"premise": "a", "hypothesis": "b", "label": 3}\n') }, 'x1'))
      .rejects.toThrow(/line 1: label field "label" must be an integer in \[0, 3\), got 3/);
    await expect(t({ train: bad('b2.jsonl', '{"premise": "a", "label": 1}\n') }, 'x2')).rejects.toThrow(/line 1: field "hypothesis" is missing/);
    await expect(t({ train: bad('b3.jsonl', 'not json\n') }, 'x3')).rejects.toThrow(/line 1 is not JSON/);
    await expect(t({ train: bad('b4.jsonl', '{"text": "a", "y": "pos"}\n'), textFields: ['text'], labelField: 'y', numLabels: 2 }, 'x4'))
      .rejects.toThrow(/label field "y" must be an integer in \[0, 2\), got "pos"/);
    await expect(t({ numLabels: 1 }, 'x5')).rejects.toThrow(/--num-labels must be an integer >= 2/);
    await expect(t({ head: 'regression' }, 'x6')).rejects.toThrow(/--head must be 'classification'/);
    await expect(finetune(STORIES, { ...fast, method: 'mlp', numLabels: 3, train: itemsFile }, path.join(tmp, 'x7'))).rejects.toThrow(/need --head classification/);
    await expect(finetune(STORIES, { ...fast, method: 'mlp', headBias: true, train: itemsFile }, path.join(tmp, 'x9'))).rejects.toThrow(/--head-bias need --head classification/);
    // A --text-field / --label-field pair for other data.
    const other = bad('sst.jsonl', ['{"sentence": "I like it.", "y": 1}', '{"sentence": "I do not.", "y": 0}'].join('\n'));
    const r = await t({ train: other, textFields: ['sentence'], labelField: 'y', numLabels: 2, steps: 1, batch: 2, writeModel: false }, 'x8');
    expect(r.steps).toBe(1);
  }, 120_000);
});
