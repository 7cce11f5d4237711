// Methods lora and neuron-lora end to end on fixture models: the loss falls on UDHR text; neuron-lora changes only
// the mask's rows of gate_proj and the attention projections (every other byte of the merged checkpoint is the
// base model's); the PEFT adapter has PEFT's names, shapes and config; the merged checkpoint reproduces the
// trainer's validation loss; `delta apply` merges an adapter folder into the same checkpoint; a stopped and resumed
// run equals an uninterrupted one (with dropout and --reset-optimizer-on-save); bad input is refused clearly.
import { mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { udhrArticles } from '../src/corpus/udhr.js';
import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { readAllTensors, readSafetensorsHeader } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { targetModules } from '../src/train/adapter.js';
import { finetune, resume } from '../src/train/finetune.js';
import { randomNeurons } from '../src/train/methods.js';
import { createNativeTrainer, tensorName } from '../src/train/native.js';
import { fileLoss } from './helpers/loss.js';

const FIX = path.resolve(__dirname, '../../shared/fixtures/models');
const STORIES = path.join(FIX, 'stories260k');
const LLAMA3 = path.join(FIX, 'tiny-llama3');
const MISTRAL = path.join(FIX, 'tiny-mistral');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-lora-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const arts = udhrArticles('mt');
const trainFile = path.join(tmp, 'mt-train.txt');
const validFile = path.join(tmp, 'mt-valid.txt');
writeFileSync(trainFile, arts.filter((a) => a.number >= 1 && a.number <= 3).map((a) => a.text).join('\n') + '\n');
writeFileSync(validFile, arts.filter((a) => a.number >= 25 && a.number <= 26).map((a) => a.text).join('\n') + '\n');

async function maskFor(dir: string, file: string): Promise<string> {
  const ck = await openCheckpoint(dir);
  const L = ck.config.numLayers, I = ck.config.intermediateSize;
  const mask: NeuronMask = {
    format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [], layers: L, width: I,
    languages: { mt: randomNeurons(L, I, Math.round(0.05 * L * I), 99), en: randomNeurons(L, I, Math.round(0.05 * L * I), 7) },
  };
  const f = path.join(tmp, file);
  await writeMask(f, mask);
  return f;
}


function sameBytes(a: string, b: string): boolean {
  return readFileSync(a).equals(readFileSync(b));
}

const fast = { chunk: 64, batch: 2, evalEvery: 0, threads: 2 };

describe('finetune --method lora / neuron-lora', () => {
  it.each(['lora', 'neuron-lora'] as const)('the training loss falls on UDHR Maltese: %s', async (method) => {
    const masks = method === 'neuron-lora' ? await maskFor(STORIES, 'mask-nl.json') : undefined;
    const r = await finetune(STORIES, { ...fast, method, ...(masks ? { masks, langs: ['mt'] } : {}), train: trainFile, steps: 12, lr: 1e-2, writeModel: false },
      path.join(tmp, `run-${method}`));
    console.log(`${method}: trainable ${r.trainableParameters}, loss ${r.firstLoss!.toFixed(4)} -> ${r.lastLoss!.toFixed(4)}`);
    expect(r.lastLoss!).toBeLessThan(r.firstLoss! - 0.05);
    const run = JSON.parse(readFileSync(path.join(tmp, `run-${method}`, 'run.json'), 'utf8'));
    expect(run.options.lora).toEqual(method === 'lora'
      ? { r: 32, alpha: 64, dropout: 0.1, targets: ['gate_proj', 'up_proj', 'down_proj'] }
      : { r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], initStd: 0.01 });
    expect(run.options.resetOptimizerOnBest).toBe(false);
    expect(run.options.resetOptimizerOnSave).toBeUndefined();
    // PEFT adapter folder: names, shapes, config.
    const ad = path.join(tmp, `run-${method}`, 'adapter');
    const cfg = JSON.parse(readFileSync(path.join(ad, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', bias: 'none', fan_in_fan_out: false,
      r: run.options.lora.r, lora_alpha: run.options.lora.alpha, lora_dropout: run.options.lora.dropout, base_model_name_or_path: STORIES });
    const header = await readSafetensorsHeader(path.join(ad, 'adapter_model.safetensors'));
    const shapes = Object.fromEntries(header.tensors.map((t) => [t.name, t.shape]));
    const ck = await openCheckpoint(STORIES);
    const H = ck.config.hiddenSize, I = ck.config.intermediateSize, q = ck.config.numHeads * ck.config.headDim;
    const kv = ck.config.numKvHeads * ck.config.headDim, R = run.options.lora.r;
    const want: Record<string, [number, number]> = method === 'lora'
      ? { 'mlp.gate_proj': [I, H], 'mlp.up_proj': [I, H], 'mlp.down_proj': [H, I] }
      : { 'self_attn.q_proj': [q, H], 'self_attn.k_proj': [kv, H], 'self_attn.v_proj': [kv, H], 'self_attn.o_proj': [H, q], 'mlp.gate_proj': [I, H] };
    for (let l = 0; l < ck.config.numLayers; l++)
      for (const [m, [out, inp]] of Object.entries(want)) {
        expect(shapes[`base_model.model.model.layers.${l}.${m}.lora_A.weight`]).toEqual([R, inp]);
        expect(shapes[`base_model.model.model.layers.${l}.${m}.lora_B.weight`]).toEqual([out, R]);
      }
    expect(header.tensors.length).toBe(ck.config.numLayers * Object.keys(want).length * 2);
    expect(header.tensors.every((t) => t.dtype === 'F32')).toBe(true);
    if (method === 'lora') expect(cfg.target_modules).toEqual(['down_proj', 'gate_proj', 'up_proj']);
  }, 120_000);

  it('neuron-lora: only the mask\'s gate_proj rows and q/k/v/o change (BF16); B is zero outside the mask; the checkpoint reproduces the validation loss', async () => {
    const masks = await maskFor(LLAMA3, 'mask-llama3.json');
    const run = path.join(tmp, 'run-nl-llama3');
    const r = await finetune(LLAMA3, { ...fast, method: 'neuron-lora', masks, langs: ['mt'], train: trainFile, valid: validFile, steps: 6, evalEvery: 2, lr: 1e-2 }, run);
    expect(r.bestStep).not.toBeNull();
    const base = await openCheckpoint(LLAMA3);
    const out = await readAllTensors(path.join(run, 'model', 'model.safetensors'));
    const mask = JSON.parse(readFileSync(masks, 'utf8')) as NeuronMask;
    const H = base.config.hiddenSize;
    let changedGate = 0, changedAttn = 0;
    for (const [name, info] of base.tensors) {
      const got = out.get(name)!;
      expect(got.info.dtype).toBe(info.dtype);
      const a = Buffer.from(readFileSync(info.file).subarray(info.byteOffset, info.byteOffset + info.byteLength));
      const b = Buffer.from((got.data as Uint16Array).buffer, (got.data as Uint16Array).byteOffset, info.byteLength);
      if (/self_attn\.[qkvo]_proj\.weight$/.test(name)) { if (!a.equals(b)) changedAttn++; continue; }
      const m = /^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/.exec(name);
      if (!m) { expect(a.equals(b), name).toBe(true); continue; }
      const sel = new Set(mask.languages['mt']![Number(m[1])]!);
      for (let i = 0; i < info.byteLength / 2; i++) {
        const row = Math.floor(i / H);
        const same = a.readUInt16LE(2 * i) === b.readUInt16LE(2 * i);
        if (!sel.has(row)) expect(same, `${name}[${row}] outside the mask`).toBe(true);
        else if (!same) changedGate++;
      }
    }
    expect(changedGate).toBeGreaterThan(0);
    expect(changedAttn).toBe(4 * base.config.numLayers);
    // The adapter's B of gate_proj is zero outside the mask's rows (and non-zero inside).
    const ad = await readAllTensors(path.join(run, 'adapter', 'adapter_model.safetensors'));
    for (let l = 0; l < base.config.numLayers; l++) {
      const B = ad.get(`base_model.model.model.layers.${l}.mlp.gate_proj.lora_B.weight`)!.data as Float32Array;
      const sel = new Set(mask.languages['mt']![l]!);
      for (let row = 0; row < B.length / 8; row++) {
        const nz = B.subarray(row * 8, row * 8 + 8).some((x) => x !== 0);
        expect(nz, `layer ${l} row ${row}`).toBe(sel.has(row));
      }
    }
    const loss = await fileLoss(path.join(run, 'model'), validFile);
    console.log(`neuron-lora merged BF16 checkpoint loss ${loss.toFixed(6)} vs best validation loss ${r.bestValid!.toFixed(6)}`);
    expect(Math.abs(loss - r.bestValid!)).toBeLessThan(2e-2);
  }, 120_000);

  it('lora on an F32 model: the merged checkpoint reproduces the validation loss; delta apply merges the adapter folder into the same bytes; F16 merges too', async () => {
    const run = path.join(tmp, 'run-lora-f32');
    const r = await finetune(STORIES, { ...fast, method: 'lora', loraTargets: ['q_proj', 'v_proj', 'down_proj'], loraR: 4, loraAlpha: 8,
      train: trainFile, valid: validFile, steps: 4, evalEvery: 2, lr: 1e-2 }, run);
    const loss = await fileLoss(path.join(run, 'model'), validFile);
    console.log(`lora merged F32 checkpoint loss ${loss} vs best validation loss ${r.bestValid} (rel ${(Math.abs(loss - r.bestValid!) / r.bestValid!).toExponential(2)})`);
    expect(Math.abs(loss - r.bestValid!) / r.bestValid!).toBeLessThan(1e-5);
    const merged = path.join(tmp, 'merged-lora');
    const quiet = captureStdout();
    const code = await main(['node', 'langneurons', 'delta', 'apply', STORIES, path.join(run, 'adapter'), '--out', merged, '--json']);
    quiet.restore();
    expect(code).toBe(0);
    expect(JSON.parse(quiet.out.join('')).patched).toHaveLength(3 * 5);
    expect(sameBytes(path.join(merged, 'model.safetensors'), path.join(run, 'model', 'model.safetensors'))).toBe(true);
    // An adapter made on another model is refused (fingerprint).
    const err = captureStderr();
    const bad = await main(['node', 'langneurons', 'delta', 'apply', LLAMA3, path.join(run, 'adapter'), '--out', path.join(tmp, 'merged-x')]);
    err.restore();
    expect(bad).toBe(1);
    expect(err.out.join('')).toMatch(/adapter was made for stories260k \(\w+\), not for tiny-llama3/);
    // F16 weights (tiny-mistral): train, merge, the checkpoint loads and is close to the validation loss.
    const rm = await finetune(MISTRAL, { ...fast, method: 'lora', train: trainFile, valid: validFile, steps: 3, evalEvery: 3, lr: 1e-2 }, path.join(tmp, 'run-lora-f16'));
    const lm = await fileLoss(path.join(tmp, 'run-lora-f16', 'model'), validFile);
    expect(Math.abs(lm - rm.bestValid!)).toBeLessThan(2e-2);
  }, 120_000);

  it('a stopped and resumed lora run (dropout, accumulation, --reset-optimizer-on-save) equals an uninterrupted one bit for bit', async () => {
    const masks = await maskFor(STORIES, 'mask-resume.json');
    const o = { ...fast, method: 'neuron-lora' as const, masks, langs: ['mt'], train: trainFile, valid: validFile, steps: 6, evalEvery: 2, saveEvery: 2,
      lr: 5e-3, accum: 2, warmup: 2, schedule: 'cosine' as const, loraDropout: 0.3, resetOptimizerOnSave: true };
    const a = path.join(tmp, 'run-ra'), b = path.join(tmp, 'run-rb');
    await finetune(STORIES, o, a);
    const part = await finetune(STORIES, o, b, { stopAfterStep: 4 });
    expect(part.steps).toBe(4);
    const strip = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => { const e = JSON.parse(l); delete e.tokensPerSecond; delete e.seconds; return e; });
    // The optimizer restarts after each better model: AdamW's step count is the steps since the last one.
    const bestUpTo = (run: string, n: number) => strip(path.join(run, 'train.jsonl')).filter((e) => e.best && e.step <= n).map((e) => e.step as number).at(-1) ?? 0;
    const st = JSON.parse(readFileSync(path.join(b, 'state', 'state.json'), 'utf8'));
    expect(st).toMatchObject({ step: 4, optimizerStep: 4 - bestUpTo(b, 4) });
    await resume(b);
    for (const f of ['adapter/adapter_model.safetensors', 'state/state.safetensors', 'model/model.safetensors'])
      expect(sameBytes(path.join(a, f), path.join(b, f)), f).toBe(true);
    expect(JSON.parse(readFileSync(path.join(a, 'run.json'), 'utf8')).options.resetOptimizerOnBest).toBe(true);
    // Zeroed moments when the last step saved a better model (else AdamW's count of the steps since).
    const state = await readAllTensors(path.join(a, 'state', 'state.safetensors'));
    const m = [...state].filter(([k]) => k.endsWith('.m'));
    expect(m.length).toBeGreaterThan(0);
    expect(m.every(([, t]) => (t.data as Float32Array).every((x) => x === 0))).toBe(bestUpTo(a, 6) === 6);
    expect(JSON.parse(readFileSync(path.join(a, 'state', 'state.json'), 'utf8')).optimizerStep).toBe(6 - bestUpTo(a, 6));
    expect(strip(path.join(b, 'train.jsonl'))).toEqual(strip(path.join(a, 'train.jsonl')));
  }, 120_000);

  it('refuses bad input with clear errors', async () => {
    const t = (o: Record<string, unknown>, dir: string) => finetune(STORIES, { ...fast, method: 'lora', train: trainFile, ...o } as never, path.join(tmp, dir));
    await expect(t({ loraR: 0 }, 'bad1')).rejects.toThrow(/--lora-r must be an integer >= 1, got 0/);
    await expect(t({ loraR: 2.5 }, 'bad2')).rejects.toThrow(/--lora-r must be an integer >= 1, got 2.5/);
    await expect(t({ loraR: 100 }, 'bad3')).rejects.toThrow(/LoRA rank 100 exceeds the weight's smaller side 64/);
    await expect(t({ loraTargets: ['gate_proj', 'mlp_proj'] }, 'bad4')).rejects.toThrow(/unknown --lora-targets module 'mlp_proj' \(modules: q_proj, k_proj/);
    await expect(t({ loraDropout: 1 }, 'bad5')).rejects.toThrow(/--lora-dropout must be in \[0, 1\)/);
    await expect(t({ method: 'full', loraR: 8 }, 'bad6')).rejects.toThrow(/apply to methods lora and neuron-lora/);
    const other = await maskFor(LLAMA3, 'mask-other.json');
    await expect(t({ method: 'neuron-lora', masks: other, langs: ['mt'] }, 'bad7')).rejects.toThrow(/mask was made for tiny-llama3/);
    await expect(t({ method: 'neuron-lora', langs: ['mt'] }, 'bad8')).rejects.toThrow(/neuron-lora with --lang needs --masks/);
    const mine = await maskFor(STORIES, 'mask-mine.json');
    await expect(t({ method: 'neuron-lora', masks: mine, langs: ['mt'], loraTargets: ['gate_proj'] }, 'bad9')).rejects.toThrow(/leave gate_proj out of --lora-targets/);
    for (const d of ['bad1', 'bad2', 'bad3', 'bad4', 'bad7']) await expect(fsp.access(path.join(tmp, d, 'run.json'))).rejects.toThrow();
    // CLI: a non-numeric rank names its option.
    const err = captureStderr();
    const code = await main(['node', 'langneurons', 'finetune', STORIES, '--method', 'lora', '--lora-r', 'big', '--train', trainFile, '--out', path.join(tmp, 'bad10')]);
    err.restore();
    expect(code).toBe(1);
    expect(err.out.join('')).toMatch(/--lora-r must be a number, got 'big'/);
  }, 120_000);

  it('the binding: LoRA parameters, PEFT names, dropout masks keyed by { step, micro } and off in validation', async () => {
    const ck = await openCheckpoint(STORIES);
    const tr = createNativeTrainer(ck, 2, [{ role: 'w_up', layer: 2, mode: 'lora', r: 4, alpha: 8, dropout: 0.5 },
      { role: 'w_gate', layer: 3, mode: 'lora', r: 2, alpha: 2, index: Int32Array.of(1, 5, 9) }], { seed: 5 });
    const ps = tr.params().filter((p) => p.size > 0);
    expect(ps.map((p) => [p.role, p.layer, p.mode, p.rows, p.cols, p.size])).toEqual([
      ['w_up.lora_A', 2, 'lora_a', 4, 64, 256], ['w_up.lora_B', 2, 'lora_b', 172, 4, 688],
      ['w_gate.lora_A', 3, 'lora_a', 2, 64, 128], ['w_gate.lora_B', 3, 'lora_b', 172, 2, 6]]);
    expect(tensorName('w_gate.lora_B', 3)).toBe('model.layers.3.mlp.gate_proj.lora_B.weight');
    expect(tr.info()).toMatchObject({ trainable: 256 + 688 + 128 + 6, adapters: 2, numLabels: 0, lowestLayer: 2 });
    tr.write('master', ps[1]!.id, Float32Array.from({ length: 688 }, (_, i) => Math.cos(i)));
    const tokens = Int32Array.from({ length: 20 }, (_, i) => (i * 37) % 512), lens = Int32Array.of(12, 8);
    const targets = Int32Array.from(tokens, (_, i) => (i === 11 || i === 19 ? -1 : tokens[i + 1]!));
    const grad = async (o: { step?: number; micro?: number }) => {
      tr.zeroGrad();
      const r = await tr.forwardBackward(tokens, targets, lens, { backward: true, ...o });
      return { loss: r.lossSum, g: tr.read('grad', ps[0]!.id) };
    };
    const a = await grad({ step: 3, micro: 0 }), b = await grad({ step: 3, micro: 0 }), c = await grad({ step: 3, micro: 1 });
    expect(Buffer.from(b.g.buffer).equals(Buffer.from(a.g.buffer))).toBe(true);
    expect(c.loss).not.toBe(a.loss);
    // Validation (no backward) has no dropout: the same loss whatever the key.
    const v1 = await tr.forwardBackward(tokens, targets, lens, { backward: false, step: 1 });
    const v2 = await tr.forwardBackward(tokens, targets, lens, { backward: false, step: 2, micro: 7 });
    expect(v1.lossSum).toBe(v2.lossSum);
    // initStd: A ~ N(0, 0.01) (Mondal et al.'s LoRALayer) instead of uniform(±1/sqrt(K)) = ±0.125 here
    const normal = createNativeTrainer(ck, 1, [{ role: 'w_up', layer: 2, mode: 'lora', r: 8, alpha: 16, initStd: 0.01 }], { seed: 5 });
    const A = normal.read('master', normal.params().find((p) => p.role === 'w_up.lora_A')!.id);
    const sd = Math.sqrt(A.reduce((s, x) => s + x * x, 0) / A.length);
    expect(sd).toBeGreaterThan(0.009);
    expect(sd).toBeLessThan(0.011); // 512 draws
    const uniform = tr.read('master', ps[0]!.id);
    expect(Math.max(...uniform.map(Math.abs))).toBeGreaterThan(0.1);
    expect(() => createNativeTrainer(ck, 1, [{ role: 'w_up', layer: 0, mode: 'lora', r: 4, alpha: 8, initStd: -1 }])).toThrow(/LoRA init std must be a number >= 0/);
    expect(() => createNativeTrainer(ck, 1, [{ role: 'w_up', layer: 0, mode: 'lora', r: 4, alpha: 8, dropout: 1.5 }])).toThrow(/LoRA dropout must be in \[0, 1\)/);
    expect(() => createNativeTrainer(ck, 1, [{ role: 'embed', layer: -1, mode: 'lora', r: 4, alpha: 8 }])).toThrow(/mode 'lora' is supported for/);
    expect(() => tr.forwardBackwardCls(tokens, lens, Int32Array.of(0, 1), { backward: false })).toThrow(/no classification head/);
  });

  it('target_modules: a list when every layer is adapted, else a regular expression of exactly the adapted modules', () => {
    expect(targetModules([0, 1].flatMap((layer) => [{ layer, role: 'wq' }, { layer, role: 'w_down' }]), 2)).toEqual(['down_proj', 'q_proj']);
    const re = targetModules([{ layer: 0, role: 'wq' }, { layer: 1, role: 'wq' }, { layer: 1, role: 'w_gate' }], 2) as string;
    const match = (s: string) => new RegExp(`^(?:${re})$`).test(s);
    expect(match('model.layers.0.self_attn.q_proj')).toBe(true);
    expect(match('model.layers.1.mlp.gate_proj')).toBe(true);
    expect(match('model.layers.0.mlp.gate_proj')).toBe(false);
    expect(match('model.layers.10.mlp.gate_proj')).toBe(false);
  });
});

function captureStdout(): { out: string[]; restore: () => void } {
  const out: string[] = [];
  const w = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
  return { out, restore: () => { process.stdout.write = w; } };
}

function captureStderr(): { out: string[]; restore: () => void } {
  const out: string[] = [];
  const w = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stderr.write;
  return { out, restore: () => { process.stderr.write = w; } };
}
