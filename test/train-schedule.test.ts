// The fine-tuning loop's optimizer settings against the reference code (METHODS.md section 5): transformers'
// schedulers with warm-up (get_{constant,linear,cosine}_schedule_with_warmup, as Mondal et al. use it), AdamW weight
// decay 0.01 for every method (Gurgurov et al.'s scripts), and --reset-optimizer-on-save re-creating the optimizer
// after each save of a better model, as Gurgurov et al.'s finetune.py does (not at every state save).
import { mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { finetune, learningRate, resume } from '../src/train/finetune.js';
import { METHODS } from '../src/train/methods.js';

const STORIES = path.resolve(__dirname, '../../shared/fixtures/models/stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-schedule-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });
const trainFile = path.join(tmp, 'mt.txt');
writeFileSync(trainFile, udhrArticles('mt').filter((a) => a.number <= 3).map((a) => a.text).join('\n') + '\n');
const fast = { chunk: 64, batch: 2, evalEvery: 0, threads: 2, device: 'cpu', writeModel: false };
const logOf = (run: string) => readFileSync(path.join(run, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | boolean>);

/** transformers' lr_lambda of get_{constant,linear,cosine}_schedule_with_warmup (optimization.py), times lr. */
function hf(schedule: 'constant' | 'linear' | 'cosine', lr: number, warmup: number, total: number, s: number): number {
  if (s < warmup) return (lr * s) / Math.max(1, warmup);
  if (schedule === 'constant') return lr;
  const progress = (s - warmup) / Math.max(1, total - warmup);
  return schedule === 'linear' ? lr * Math.max(0, (total - s) / Math.max(1, total - warmup)) : lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
}

describe('learning-rate schedule', () => {
  it("equals transformers' schedulers with warm-up step for step (the first step at 0); 'from-step-1' is train's ramp", () => {
    for (const schedule of ['constant', 'linear', 'cosine'] as const)
      for (const [warmup, total] of [[0, 7], [2, 6], [3, 10], [1, 1], [5, 5]] as const)
        for (let s = 0; s < total; s++)
          expect(learningRate({ lr: 1e-4, warmup, schedule, ramp: 'hf' }, s, total), `${schedule} ${warmup}/${total} step ${s}`).toBeCloseTo(hf(schedule, 1e-4, warmup, total, s), 18);
    // the helper's hand-worked case: warm-up 2 of 6, linear
    expect([0, 1, 2, 3, 4, 5].map((s) => learningRate({ lr: 1e-4, warmup: 2, schedule: 'linear', ramp: 'hf' }, s, 6))).toEqual([0, 5e-5, 1e-4, 7.5e-5, 5e-5, 2.5e-5].map((x) => expect.closeTo(x, 18)));
    expect([0, 1, 2].map((s) => learningRate({ lr: 1e-4, warmup: 2, schedule: 'constant', ramp: 'from-step-1' }, s, 6))).toEqual([5e-5, 1e-4, 1e-4]);
  });

  it('a run logs those rates; --warmup-ratio rounds down (int(), as Mondal et al.)', async () => {
    const run = path.join(tmp, 'ratio');
    await finetune(STORIES, { ...fast, method: 'mlp', train: trainFile, steps: 10, warmupRatio: 0.25, schedule: 'linear', lr: 1e-3 }, run);
    const lrs = logOf(run).map((e) => e['lr'] as number);
    lrs.forEach((lr, s) => expect(lr).toBeCloseTo(hf('linear', 1e-3, 2, 10, s), 18)); // floor(2.5) = 2 warm-up steps
    expect(JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8')).options.warmupRamp).toBe('hf');
  }, 60_000);
});

describe('defaults', () => {
  it('AdamW weight decay 0.01 for every method (Gurgurov et al.: finetune.py, finetune_full.py, finetune_adapter.py, finetune_ablate.py)', async () => {
    const { METHOD_DEFAULTS } = await import('../src/train/methods.js');
    for (const m of METHODS) expect(METHOD_DEFAULTS[m].weightDecay, m).toBe(0.01);
    const run = path.join(tmp, 'full-wd');
    await finetune(STORIES, { ...fast, method: 'full', train: trainFile, steps: 1 }, run);
    expect(JSON.parse(readFileSync(path.join(run, 'run.json'), 'utf8')).options).toMatchObject({ weightDecay: 0.01, lr: 1e-5, clip: 0.5 });
  }, 60_000);
});

describe('run folders of earlier versions', () => {
  it('resume as they started: the from-step-1 warm-up, and the optimizer reset at every state save', async () => {
    const run = path.join(tmp, 'legacy');
    const o = { ...fast, method: 'mlp' as const, train: trainFile, steps: 6, saveEvery: 2, warmup: 4, lr: 1e-3, resetOptimizerOnSave: true };
    await finetune(STORIES, o, run, { stopAfterStep: 2 });
    // run.json as the version before warmupRamp and resetOptimizerOnBest wrote it
    const file = path.join(run, 'run.json');
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    delete doc.options.warmupRamp;
    delete doc.options.resetOptimizerOnBest;
    doc.options.resetOptimizerOnSave = true;
    writeFileSync(file, JSON.stringify(doc, null, 2));
    await resume(run);
    const lrs = logOf(run).map((e) => e['lr'] as number);
    expect(lrs.slice(2)).toEqual([3, 4, 4, 4].map((k) => expect.closeTo((1e-3 * k) / 4, 18))); // lr (s + 1) / 4 at s = 2, 3
    // reset at the state save of step 6 (no validation: the new rule would never reset)
    expect(JSON.parse(readFileSync(path.join(run, 'state', 'state.json'), 'utf8'))).toMatchObject({ step: 6, optimizerStep: 0 });
  }, 60_000);
});

describe('--reset-optimizer-on-save', () => {
  it('re-creates the optimizer after each save of a better model, and only then (not at state saves)', async () => {
    // Validation on the training text every step, at a high lr: the loss falls at every step up to some point.
    const o = { ...fast, method: 'mlp' as const, train: trainFile, valid: trainFile, steps: 6, evalEvery: 1, saveEvery: 6, lr: 3e-3, resetOptimizerOnSave: true };
    const run = path.join(tmp, 'reset');
    await finetune(STORIES, o, run);
    const bestSteps = logOf(run).filter((e) => 'validLoss' in e && e['best']).map((e) => e['step'] as number);
    expect(bestSteps.length).toBeGreaterThan(0);
    // AdamW's step count at the end: the steps since the last best save
    const counters = (r: string) => JSON.parse(readFileSync(path.join(r, 'state', 'state.json'), 'utf8')) as { step: number; optimizerStep: number };
    expect(counters(run)).toMatchObject({ step: 6, optimizerStep: 6 - bestSteps.at(-1)! });
    // without validation nothing is ever a better model: no reset, also at the state saves
    const plain = path.join(tmp, 'reset-no-valid');
    await finetune(STORIES, { ...o, valid: undefined, saveEvery: 2 }, plain);
    expect(counters(plain)).toMatchObject({ step: 6, optimizerStep: 6 });
  }, 120_000);
});
