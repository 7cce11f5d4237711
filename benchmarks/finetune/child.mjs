#!/usr/bin/env node
// One measurement of benchmarks/finetune/run.mjs in a fresh Node process (see README.md next to this file):
//   { dir, method, maskFile, lang, tokens, steps, threads, seed }
// method: full | mlp | neurons | random | lora | neuron-lora (src/train/methods.ts: lora with LORA_DEFAULTS.lora,
// r 32, alpha 64, dropout 0.1 on gate/up/down; neuron-lora with r 8, alpha 16, no dropout on q/k/v/o plus a LoRA on
// gate_proj whose B is masked to the mask's neurons) or dense-then-mask (the MLP weights of every
// layer trained dense, their full dW computed, then the gradient zeroed outside the selected rows of gate/up and
// columns of down before AdamW: what a PyTorch reference with gradient masks does; the mask is applied in JS
// through read/write of the grad arena, and that time is reported separately as `maskSeconds`), or
// dense-then-mask-native (the neurons spec with the native trainer's `denseThenMask` option: the full dW of each
// gate/up/down computed natively into a scratch buffer, then the selected rows/columns kept; sparse optimizer
// state; refused when the binding does not pass the option through).
// Runs one warm-up step (forward + backward + AdamW), then `steps` timed steps, then one forward-only pass (to
// split the step into forward / backward / optimizer). Peak RSS is VmHWM of this process at the end.
import { childMain, rss } from '../common/proc.mjs';

const dist = new URL('../../dist/src/', import.meta.url);
const { openCheckpoint } = await import(new URL('model/checkpoint.js', dist).href);
const { readMask } = await import(new URL('identify/masks.js', dist).href);
const { selectTrainable, maskNeurons, METHOD_DEFAULTS } = await import(new URL('train/methods.js', dist).href);
const { createNativeTrainer } = await import(new URL('train/native.js', dist).href);
const { loadAddon } = await import(new URL('native/addon.js', dist).href);

async function main(t) {
  const ckpt = await openCheckpoint(t.dir);
  const c = ckpt.config;
  const mask = await readMask(t.maskFile);
  let trainable, neurons = null, selected;
  const t0 = performance.now();
  if (t.method === 'dense-then-mask') {
    neurons = maskNeurons(mask, [t.lang], ckpt, t.maskFile);
    trainable = [];
    neurons.forEach((units, l) => {
      if (units.length) for (const role of ['w_gate', 'w_up', 'w_down']) trainable.push({ role, layer: l, mode: 'dense' });
    });
    selected = neurons.reduce((s, u) => s + u.length, 0) * 3 * c.hiddenSize;
  } else if (t.method === 'dense-then-mask-native') {
    trainable = selectTrainable('neurons', ckpt, { mask, maskFile: t.maskFile, langs: [t.lang] }).trainable;
  } else {
    trainable = selectTrainable(t.method, ckpt, { mask, maskFile: t.maskFile, langs: [t.lang], seed: t.seed }).trainable;
  }
  const native = t.method === 'dense-then-mask-native';
  const tr = createNativeTrainer(ckpt, t.threads, trainable, native ? { denseThenMask: true } : {});
  if (native && tr.info().denseThenMask !== true)
    throw new Error('the addon does not pass the denseThenMask option to the trainer (js_trainer.cpp)');
  const setupSeconds = (performance.now() - t0) / 1000;
  const info0 = tr.info();
  if (selected === undefined) selected = info0.trainable;

  // Which elements of each dense MLP grad slice survive the mask (dense-then-mask only).
  const keep = [];
  if (neurons) {
    for (const p of tr.params()) {
      if (p.size === 0 || !['w_gate', 'w_up', 'w_down'].includes(p.role)) continue;
      keep.push({ id: p.id, rows: p.rows, cols: p.cols, byRow: p.role !== 'w_down', units: neurons[p.layer] });
    }
  }
  const maskGrads = () => {
    for (const k of keep) {
      const g = tr.read('grad', k.id);
      const out = new Float32Array(g.length);
      if (k.byRow) for (const j of k.units) out.set(g.subarray(j * k.cols, (j + 1) * k.cols), j * k.cols);
      else for (let r = 0; r < k.rows; r++) for (const j of k.units) out[r * k.cols + j] = g[r * k.cols + j];
      tr.write('grad', k.id, out);
    }
  };

  let s = (t.seed * 2654435761) >>> 0 || 1;
  const tokens = new Int32Array(t.tokens + 1);
  for (let i = 0; i <= t.tokens; i++) tokens[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % c.vocabSize;
  const ids = tokens.subarray(0, t.tokens), targets = tokens.slice(1), lens = Int32Array.of(t.tokens);
  const d = METHOD_DEFAULTS[t.method] ?? METHOD_DEFAULTS.neurons;
  const adam = { lr: d.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 0 };

  const runStep = async () => {
    const c0 = process.cpuUsage();
    const a = performance.now();
    tr.zeroGrad();
    await tr.forwardBackward(ids, targets, lens, { backward: true });
    const b = performance.now();
    if (neurons) maskGrads();
    const m = performance.now();
    await tr.step(adam);
    const e = performance.now();
    const c = process.cpuUsage(c0);
    return { cpu: (c.user + c.system) / 1e6, step: (e - a) / 1000, fb: (b - a) / 1000, mask: (m - b) / 1000, opt: (e - m) / 1000 };
  };
  const warm = await runStep();
  const runs = [];
  for (let i = 0; i < t.steps; i++) runs.push(await runStep());
  const f0 = performance.now();
  await tr.forwardBackward(ids, targets, lens, { backward: false });
  const forwardSeconds = (performance.now() - f0) / 1000;
  const best = runs.reduce((x, y) => (y.step < x.step ? y : x));
  const info = tr.info();
  return {
    method: t.method, tokens: t.tokens, steps: t.steps, threads: t.threads, kernel: loadAddon().kernelInfo().kernel,
    setupSeconds, warmup: warm, runs,
    stepSeconds: best.step, stepCpuSeconds: best.cpu, loadavg: (await import('node:os')).loadavg(), fbSeconds: best.fb, maskSeconds: best.mask, optSeconds: best.opt, forwardSeconds,
    backwardSeconds: best.fb - forwardSeconds,
    tokensPerSecond: t.tokens / best.step,
    trainable: selected, arenaFloats: info.trainable,
    gradOptBytes: info.trainable * 12, stateBytes: info.stateBytes, activationBytes: info.activationBytes,
    lowestLayer: info.lowestLayer, rss: rss(),
  };
}

await childMain(main);
