#!/usr/bin/env node
// One measurement of benchmarks/gpu-finetune/run.mjs in a fresh Node process (the device memory of one trainer,
// nothing left from the previous method):
//   { dir, method, recompute (the trainer's activation recomputation, CUDA only), maskFile, lang, batch, seqLen, warmup,
//     steps, device (CUDA index, or null: the CPU trainer), compute, threads, seed }
// method: full | mlp | neurons | random | lora | neuron-lora (src/train/methods.ts; lora: r 32, alpha 64, dropout
// 0.1 on gate/up/down; neuron-lora: r 8 on q/k/v/o + a LoRA on gate_proj whose B holds the mask's rows).
// A step is zeroGrad + forward/backward of batch x seqLen random tokens + AdamW (the method's defaults, clip 1.0),
// timed to the end of AdamW (the trainer's calls return when the device has finished). `warmup` steps first,
// then `steps` timed ones; on a GPU one more step clocked by kind of work (stepTimes: the forward's steps, the loss
// head, the dX and dW GEMMs, the attention backward, AdamW, ...); then one forward without backward. Memory: the trainer's report after the steps (it
// allocates once per batch shape, so this is its peak).
import { childMain, median, rss } from '../common/proc.mjs';

const dist = new URL('../../dist/src/', import.meta.url);
const { openCheckpoint } = await import(new URL('model/checkpoint.js', dist).href);
const { readMask } = await import(new URL('identify/masks.js', dist).href);
const { selectTrainable, METHOD_DEFAULTS, LORA_DEFAULTS } = await import(new URL('train/methods.js', dist).href);
const { createNativeTrainer } = await import(new URL('train/native.js', dist).href);

async function main(t) {
  const ckpt = await openCheckpoint(t.dir);
  const c = ckpt.config;
  const mask = t.maskFile ? await readMask(t.maskFile) : undefined;
  const lora = t.method === 'lora' || t.method === 'neuron-lora' ? { lora: LORA_DEFAULTS[t.method] } : {};
  const { trainable } = selectTrainable(t.method, ckpt, { ...(mask ? { mask, maskFile: t.maskFile, langs: [t.lang] } : {}), seed: t.seed, ...lora });
  const t0 = performance.now();
  const onGpu = t.device !== null && t.device !== undefined;
  const tr = createNativeTrainer(ckpt, t.threads, trainable, { seed: t.seed,
    ...(onGpu ? { device: t.device, compute: t.compute, ...(t.recompute ? { recompute: true } : {}) } : {}) });
  const info0 = tr.info();
  const want = onGpu ? `cuda:${t.device}` : 'cpu';
  if ((info0.device ?? 'cpu') !== want) throw new Error(`the trainer runs on ${info0.device ?? 'the CPU (a binding without the CUDA trainer)'}, not ${want}`);
  const setupSeconds = (performance.now() - t0) / 1000;

  // batch sequences of seqLen random tokens (a fixed LCG), each token's target the next one.
  let s = (t.seed * 2654435761) >>> 0 || 1;
  const n = t.batch * t.seqLen;
  const stream = new Int32Array(n + t.batch);
  for (let i = 0; i < stream.length; i++) stream[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % c.vocabSize;
  const tokens = new Int32Array(n), targets = new Int32Array(n), lens = new Int32Array(t.batch).fill(t.seqLen);
  for (let b = 0; b < t.batch; b++) {
    tokens.set(stream.subarray(b * (t.seqLen + 1), b * (t.seqLen + 1) + t.seqLen), b * t.seqLen);
    targets.set(stream.subarray(b * (t.seqLen + 1) + 1, (b + 1) * (t.seqLen + 1)), b * t.seqLen);
  }
  const d = METHOD_DEFAULTS[t.method];
  const adam = { lr: d.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: d.weightDecay, clip: 1.0 };

  let step = 0, loss = NaN;
  const runStep = async () => {
    const a = performance.now();
    tr.zeroGrad();
    const r = await tr.forwardBackward(tokens, targets, lens, { backward: true, step, micro: 0 });
    await tr.step(adam);
    step++;
    loss = r.lossSum / r.count;
    return (performance.now() - a) / 1000;
  };
  const warm = [];
  for (let i = 0; i < t.warmup; i++) warm.push(await runStep());
  const times = [];
  for (let i = 0; i < t.steps; i++) times.push(await runStep());
  // One more step with the trainer's clock (CUDA events between its kinds of work): where a step's time goes.
  // After the timed ones, so that the events' own cost is in none of them.
  let stepTimes = null;
  if (onGpu && typeof tr.clockSteps === 'function') {
    tr.clockSteps(true);
    await runStep();
    stepTimes = tr.stepTimes();
    tr.clockSteps(false);
  }
  const f0 = performance.now();
  await tr.forwardBackward(tokens, targets, lens, { backward: false });
  const forwardSeconds = (performance.now() - f0) / 1000;
  const info = tr.info();
  const stepSeconds = median(times);
  return {
    method: t.method, recompute: !!t.recompute, device: info.device ?? 'cpu', compute: onGpu ? t.compute : 'f32', describe: info.describe ?? null,
    batch: t.batch, seqLen: t.seqLen, tokens: n, setupSeconds, warmupSeconds: warm, stepSecondsAll: times, stepSeconds,
    forwardSeconds, tokensPerSecond: n / stepSeconds, loss, stepTimes, trainable: info.trainable, lowestLayer: info.lowestLayer,
    // The trained values' float32 gradient + Adam m and v (the CPU benchmark's grad+opt), and the master copies.
    gradOptBytes: info.memory ? info.memory.grad + info.memory.adam : info.trainable * 12,
    masterBytes: info.memory ? info.memory.master : info.trainable * 4,
    memory: info.memory ?? null,
    heldBytes: info.memory ? ['weights', 'master', 'grad', 'adam', 'activations', 'scratch'].reduce((a, k) => a + info.memory[k], 0) : null,
    params: tr.params().filter((p) => p.size > 0).map((p) => ({ role: p.role, layer: p.layer, mode: p.mode, rows: p.rows, cols: p.cols, size: p.size })),
    rss: rss(),
  };
}

await childMain(main);
