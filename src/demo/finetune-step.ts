// Step 5: fine-tune the low-resource language's neurons against the baselines (METHODS.md §5): the same data,
// steps and loop for every method; training text = the language's train articles the model never saw,
// validation = its held-out articles. Recorded per method: the training loss per step, the validation loss every
// `evalEvery` steps (and at step 0, the model before training, the same for every method), the step time and
// the number of trainable parameters.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';

import { udhrArticles } from '../corpus/udhr.js';
import { logLikelihoodTokens } from '../engine/score.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDir } from '../io/outdir.js';
import { finetune, type FinetuneOptions } from '../train/finetune.js';
import type { FinetuneMethod } from '../train/methods.js';
import type { DemoContext } from './context.js';
import type { IdentifyResult } from './neurons-step.js';

export interface FinetuneData { language: string; trainFile: string; validFile: string; trainArticles: number[]; validArticles: number[]; baseValidLoss: number; validTokens: number }

export interface MethodRun {
  method: string;
  lr: number;
  trainableParameters: number;
  /** Share of the model's parameters that are trained. */
  trainableShare: number;
  steps: number;
  /** [step, training loss]. */
  trainLoss: [number, number][];
  /** [step, validation loss], from step 0 (the model before training). */
  validLoss: [number, number][];
  bestValid: number;
  bestStep: number;
  /** Median seconds per optimizer step (the first step left out: it warms caches up). */
  stepSeconds: number;
  tokensPerSecond: number;
  runDir: string;
}

/** Writes the training and validation texts (one article per line) and scores the validation text before training. */
export async function finetuneDataStep(ctx: DemoContext) {
  const low = ctx.recipe.lowResource!;
  const o = ctx.options;
  const held = new Set(ctx.recipe.heldoutArticles), unseen = new Set(low.unseenArticles);
  const dir = path.join(ctx.outDir, 'finetune', 'data');
  const inputs = { step: 'finetune-data', model: ctx.modelDigest, low, heldout: [...held], chunk: o.chunk };
  return ctx.runner.run<FinetuneData>('finetune-data', inputs, async () => {
    const articles = udhrArticles(low.language);
    const train = articles.filter((a) => unseen.has(a.number)), valid = articles.filter((a) => held.has(a.number));
    const trainFile = path.join(dir, `${low.language}-train.txt`), validFile = path.join(dir, `${low.language}-heldout.txt`);
    await ensureOutputDir(dir);
    await writeFileAtomic(trainFile, train.map((a) => a.text).join('\n') + '\n');
    await writeFileAtomic(validFile, valid.map((a) => a.text).join('\n') + '\n');
    const { loss, tokens } = await chunkedLoss(ctx, valid.map((a) => a.text), o.chunk);
    return { language: low.language, trainFile, validFile, trainArticles: train.map((a) => a.number), validArticles: valid.map((a) => a.number), baseValidLoss: loss, validTokens: tokens };
  });
}

/** The trainer's validation loss (src/train/finetune.ts: lines tokenised with BOS, concatenated, cut into chunks), by the engine. */
async function chunkedLoss(ctx: DemoContext, lines: string[], chunk: number): Promise<{ loss: number; tokens: number }> {
  const model = await ctx.model();
  const tok = model.requireTokenizer();
  const ids = lines.filter((l) => l.trim()).flatMap((l) => tok.encode(l));
  const pairs: { context: number[]; continuation: number[] }[] = [];
  for (let i = 0; i < ids.length; i += chunk) {
    const c = ids.slice(i, i + chunk);
    if (c.length >= 2) pairs.push({ context: c.slice(0, 1), continuation: c.slice(1) });
  }
  const scores = await logLikelihoodTokens(model, pairs);
  let nll = 0, n = 0;
  for (const s of scores) { nll -= s.logprob; n += s.tokens; }
  return { loss: nll / n, tokens: n };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };

export async function finetuneMethodStep(ctx: DemoContext, method: string, data: { key: string; result: FinetuneData }, identify: { key: string; result: IdentifyResult }) {
  const o = ctx.options;
  const runDir = path.join(ctx.outDir, 'finetune', method);
  const settings: FinetuneOptions = {
    method: method as FinetuneMethod, masks: identify.result.maskFile, langs: [data.result.language], train: data.result.trainFile, valid: data.result.validFile,
    lr: o.learningRates[method]!, steps: o.steps, chunk: o.chunk, batch: o.batch, evalEvery: o.evalEvery, saveEvery: o.steps, seed: o.seed,
    threads: o.threads, writeModel: false, ...(o.device === 'auto' ? {} : { device: o.device }),
  };
  const inputs = { step: 'finetune', model: ctx.modelDigest, data: data.key, identify: identify.key, settings };
  return ctx.runner.run<MethodRun>(`finetune-${method}`, inputs, async () => {
    await fsp.rm(runDir, { recursive: true, force: true }); // an unfinished run of an earlier attempt
    const r = await finetune(ctx.modelDir, settings, runDir, {
      onLog: (e) => { if (typeof e['loss'] === 'number') ctx.runner.progress(`finetune-${method}`, `step ${String(e['step'])}/${o.steps} loss ${(e['loss']).toFixed(3)}`); },
    });
    const log = readFileSync(path.join(runDir, 'train.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, number>);
    const steps = log.filter((e) => typeof e['loss'] === 'number');
    const valid = log.filter((e) => typeof e['validLoss'] === 'number');
    const seconds = steps.slice(1).map((e) => e['seconds']!);
    return {
      method, lr: settings.lr!, trainableParameters: r.trainableParameters, trainableShare: r.trainableParameters / ctx.checkpoint.parameterCount,
      steps: r.steps, trainLoss: steps.map((e) => [e['step']!, e['loss']!]),
      validLoss: [[0, data.result.baseValidLoss], ...valid.map((e) => [e['step']!, e['validLoss']!] as [number, number])],
      bestValid: r.bestValid!, bestStep: r.bestStep!, stepSeconds: median(seconds.length ? seconds : steps.map((e) => e['seconds']!)),
      tokensPerSecond: median(steps.slice(1).map((e) => e['tokensPerSecond']!)), runDir,
    };
  });
}
