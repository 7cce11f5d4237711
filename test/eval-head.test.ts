// XNLI scored by a trained classification head (`eval --task xnli --prompt head --head runs/x/`): accuracy of a
// fake scorer's hand-set logits exactly; then a head trained by `finetune --head classification` on hand-made items,
// evaluated through the CLI, against logits computed independently in the test from the inference engine (final
// residual = embedding + every layer's o_proj and down_proj outputs, captured; RMSNorm and score.weight here in
// float64); and `eval --delta` with a PEFT adapter folder (merged like a delta).
import { mkdirSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { LanguageModel } from '../src/engine/model.js';
import { runPlan, type ItemResult } from '../src/eval/run.js';
import type { GenOptions, Pair, Scorer } from '../src/eval/scorer.js';
import { prepareTask } from '../src/eval/tasks.js';
import { readTensor, toFloat32 } from '../src/io/safetensors.js';
import { encodeItem, readHead } from '../src/train/head.js';
import { finetune } from '../src/train/finetune.js';
import { captureStdout } from './helpers/cli.js';

const FIX = path.resolve(__dirname, '../../shared/fixtures/models');
const STORIES = path.join(FIX, 'stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-evalhead-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const ITEMS = [
  { premise: 'The cat sat on the mat.', hypothesis: 'A cat sat on a mat.', label: 0 },
  { premise: 'The dog ran to the park.', hypothesis: 'The dog was very happy.', label: 1 },
  { premise: 'Lily had a red ball.', hypothesis: 'Lily had no ball at all.', label: 2 },
  { premise: 'Tom ate a big apple.', hypothesis: 'Tom ate an apple.', label: 0 },
  { premise: 'The sun was hot today.', hypothesis: 'They went to the beach.', label: 1 },
  { premise: 'Mom baked a cake.', hypothesis: 'Nobody baked anything.', label: 2 },
  { premise: 'The bird sang in the tree.', hypothesis: 'A bird sang.', label: 0 },
  { premise: 'The door was open.', hypothesis: 'The door was shut.', label: 2 },
];
const data = path.join(tmp, 'xnli');
mkdirSync(path.join(data, 'en'), { recursive: true });
writeFileSync(path.join(data, 'en', 'test.jsonl'), ITEMS.map((x) => JSON.stringify(x)).join('\n') + '\n');
const trainFile = path.join(tmp, 'train.jsonl');
writeFileSync(trainFile, ITEMS.map((x) => JSON.stringify(x)).join('\n') + '\n');

class FakeHeadScorer implements Scorer {
  seen: string[][] = [];
  constructor(private readonly z: (texts: string[]) => number[]) {}
  async logLikelihood(_p: Pair[]): Promise<never> { throw new Error('not used'); }
  async generate(_p: string[], _o: GenOptions): Promise<never> { throw new Error('not used'); }
  async nll(_t: string[]): Promise<never> { throw new Error('not used'); }
  async classify(items: string[][]) { this.seen.push(...items); return items.map((t) => Float32Array.from(this.z(t))); }
}

describe('eval --task xnli --prompt head', () => {
  it('plans cls items (premise, hypothesis, gold) and scores argmax(logits) against the gold label', async () => {
    const plan = await prepareTask('xnli', { dir: data, lang: 'en', prompt: 'head' });
    expect(plan.items.map((it) => it.kind)).toEqual(ITEMS.map(() => 'cls'));
    // Logits: class 0 when the hypothesis is short, 2 when it contains "no"/"shut"/"Nobody", else 1.
    const z = ([, h]: string[]) => /\b(no|shut|Nobody)\b/.test(h!) ? [0, 1, 3] : h!.split(' ').length <= 5 ? [2, 1, 0] : [0, 2, 1];
    const expected = ITEMS.filter((x) => z([x.premise, x.hypothesis]).indexOf(Math.max(...z([x.premise, x.hypothesis]))) === x.label).length / ITEMS.length;
    const s = new FakeHeadScorer(z);
    const r = await runPlan(plan, { scorer: s, outDir: path.join(tmp, 'fake'), model: 'fake', modelFingerprint: 'fp-fake', variant: { name: 'head' }, batchItems: 3 });
    expect(s.seen).toEqual(ITEMS.map((x) => [x.premise, x.hypothesis]));
    const right = (k: number) => { const of = ITEMS.filter((x) => x.label === k); return of.filter((x) => z([x.premise, x.hypothesis]).indexOf(Math.max(...z([x.premise, x.hypothesis]))) === k).length / of.length; };
    expect(r.metrics).toEqual({ acc: expected, acc_entailment: right(0), acc_neutral: right(1), acc_contradiction: right(2) });
    expect(expected).toBeGreaterThan(0);
    expect(expected).toBeLessThan(1);
  });

  it('a trained head, through the CLI, reaches the accuracy computed independently from engine captures; --delta takes the adapter folder', async () => {
    const run = path.join(tmp, 'run');
    await finetune(STORIES, { method: 'lora', loraR: 4, loraAlpha: 8, loraTargets: ['v_proj', 'down_proj'], head: 'classification', headBias: true,
      train: trainFile, batch: 4, chunk: 64, steps: 16, lr: 1e-2, evalEvery: 0, threads: 2 }, run);
    const head = await readHead(run);
    expect(head.bias!.some((b) => Math.abs(b) > 1e-4)).toBe(true); // trained from 0
    const model = await LanguageModel.load(path.join(run, 'model'), { threads: 2 });
    const ck = model.checkpoint, tok = model.requireTokenizer();
    const H = ck.config.hiddenSize, L = ck.config.numLayers;
    const read = async (name: string) => { const t = ck.tensors.get(name)!; return toFloat32(t, await readTensor(t.file, t)); };
    const embed = await read('model.embed_tokens.weight'), norm = await read('model.norm.weight');
    let correct = 0;
    const logits: number[][] = [];
    for (const x of ITEMS) {
      const ids = Array.from(encodeItem([x.premise, x.hypothesis], (s) => tok.encode(s), head.info.maxLen));
      const last = ids.length - 1;
      const h = Array.from(embed.subarray(ids[last]! * H, (ids[last]! + 1) * H), Number);
      for (let l = 0; l < L; l++)
        for (const site of ['o', 'down'] as const) {
          const c = (await model.forward([ids], { logits: 'none', capture: { site, layer: l } })).capture!;
          for (let i = 0; i < H; i++) h[i]! += c[last * H + i]!;
        }
      const rms = 1 / Math.sqrt(h.reduce((s, v) => s + v * v, 0) / H + ck.config.rmsNormEps);
      const z = Array.from({ length: head.info.numLabels }, (_, k) => h.reduce((s, v, i) => s + head.weight[k * H + i]! * v * rms * norm[i]!, head.bias![k]!));
      logits.push(z);
      if (z.indexOf(Math.max(...z)) === x.label) correct++;
    }
    const expected = correct / ITEMS.length;
    const out = path.join(tmp, 'results');
    const { value: code, out: json } = await captureStdout(() => main(['node', 'langneurons', 'eval', path.join(run, 'model'), '--task', 'xnli', '--langs', 'en',
      '--data', data, '--prompt', 'head', '--head', run, '--out', out, '--threads', '2', '--json']));
    expect(code).toBe(0);
    const res = JSON.parse(json).results[0];
    console.log(`head accuracy ${res.metrics.acc} (independent: ${expected}), variant ${res.variant.name}`);
    expect(res.metrics.acc).toBe(expected);
    expect(res.variant.name).toBe('head-run');
    expect(expected).toBeGreaterThan(1 / 3); // the head learned something on its own training items
    const items = readFileSync(path.join(out, readdirSync(out).find((n) => /^xnli__en__head-run__head__[0-9a-f]{12}\.items\.jsonl$/.test(n))!), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as ItemResult);
    let worst = 0;
    items.forEach((it, i) => (it.logits as number[]).forEach((v, k) => { worst = Math.max(worst, Math.abs(v - logits[i]![k]!)); }));
    expect(worst).toBeLessThan(1e-4);
    // The same through the base model + --delta <adapter folder> (merged once, like a delta): same logits.
    const out2 = path.join(tmp, 'results2');
    const r2 = await captureStdout(() => main(['node', 'langneurons', 'eval', STORIES, '--task', 'xnli', '--langs', 'en', '--data', data, '--head', run,
      '--delta', path.join(run, 'adapter'), '--variant', 'adapter-head', '--out', out2, '--threads', '2', '--json']));
    expect(r2.value).toBe(0);
    expect(JSON.parse(r2.out).results[0].metrics.acc).toBe(expected);
    // Bad combinations.
    await expect(main(['node', 'langneurons', 'eval', STORIES, '--task', 'xnli', '--langs', 'en', '--data', data, '--prompt', 'head', '--out', out2])).resolves.toBe(1);
    await expect(main(['node', 'langneurons', 'eval', STORIES, '--task', 'xnli', '--langs', 'en', '--data', data, '--head', tmp, '--out', out2])).resolves.toBe(1);
  }, 120_000);

  it('eval --delta accepts a PEFT adapter folder: perplexity of the merged model', async () => {
    const run = path.join(tmp, 'run-lm');
    const text = path.join(tmp, 'ppl');
    mkdirSync(text, { recursive: true });
    writeFileSync(path.join(text, 'en.txt'), ITEMS.map((x) => `${x.premise} ${x.hypothesis}`).join('\n') + '\n');
    await finetune(STORIES, { method: 'lora', loraR: 4, loraAlpha: 8, train: path.join(text, 'en.txt'), batch: 2, chunk: 64, steps: 3,
      evalEvery: 0, lr: 1e-2, threads: 2 }, run);
    const ppl = async (model: string, extra: string[]) => {
      const { value: code, out } = await captureStdout(() => main(['node', 'langneurons', 'eval', model, '--task', 'ppl', '--text', text, '--langs', 'en',
        ...extra, '--out', path.join(tmp, 'res-ppl'), '--threads', '2', '--json']));
      expect(code).toBe(0);
      return JSON.parse(out).results[0];
    };
    const viaAdapter = await ppl(STORIES, ['--delta', path.join(run, 'adapter')]);
    expect(viaAdapter.variant.name).toBe('delta-run-lm');
    const merged = await ppl(path.join(run, 'model'), ['--variant', 'merged']);
    const base = await ppl(STORIES, []);
    console.log(`mean nll: base ${base.metrics.mean_nll}, --delta adapter ${viaAdapter.metrics.mean_nll}, run's model/ ${merged.metrics.mean_nll}`);
    expect(viaAdapter.metrics.mean_nll).toBe(merged.metrics.mean_nll); // the same merge, byte for byte
    expect(viaAdapter.metrics.mean_nll).not.toBe(base.metrics.mean_nll);
  }, 120_000);
});
