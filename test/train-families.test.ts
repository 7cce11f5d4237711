// Fine-tuning the family fixtures (Gemma 2, Cohere, Qwen3, YaRN) end to end: the loss falls with every kind of
// method (dense `full`, sparse `neurons`, `lora`), and the checkpoint a `full` run writes (Hugging Face names of the
// family tensors, e.g. Gemma 2's pre/post feed-forward norms) loads in the inference engine and reproduces the
// trainer's validation loss: the trainer's forward and the engine's agree on every family feature. The gradients
// themselves are checked against float64 finite differences per family in native/tests/test_train.cpp.
import { mkdtempSync, promises as fsp, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { finetune } from '../src/train/finetune.js';
import { randomNeurons } from '../src/train/methods.js';
import { FAMILY_FIXTURES, fixturePath } from './helpers/fixtures.js';
import { fileLoss } from './helpers/loss.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-families-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const arts = udhrArticles('mt');
const trainFile = path.join(tmp, 'mt-train.txt');
const validFile = path.join(tmp, 'mt-valid.txt');
writeFileSync(trainFile, arts.filter((a) => a.number >= 1 && a.number <= 3).map((a) => a.text).join('\n') + '\n');
writeFileSync(validFile, arts.filter((a) => a.number === 25).map((a) => a.text).join('\n') + '\n');
const fast = { chunk: 64, batch: 2, evalEvery: 0, threads: 2 };

async function maskFor(dir: string, file: string): Promise<string> {
  const ck = await openCheckpoint(dir);
  const I = ck.config.intermediateSize, L = ck.config.numLayers;
  const mask: NeuronMask = {
    format: MASK_FORMAT, method: 'test', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [], layers: L, width: I,
    languages: { mt: randomNeurons(L, I, Math.round(0.05 * L * I), 99) },
  };
  const f = path.join(tmp, file);
  await writeMask(f, mask);
  return f;
}

describe.each(FAMILY_FIXTURES)('fine-tuning %s', (name) => {
  const dir = fixturePath(name);

  it('full: the loss falls, and the written checkpoint reproduces the trainer\'s validation loss in the engine', async () => {
    const run = path.join(tmp, `${name}-full`);
    const r = await finetune(dir, { ...fast, method: 'full', train: trainFile, valid: validFile, steps: 6, evalEvery: 3, lr: 3e-3 }, run);
    console.log(`${name} full: loss ${r.firstLoss!.toFixed(4)} -> ${r.lastLoss!.toFixed(4)}, best validation ${r.bestValid!.toFixed(6)}`);
    expect(r.lastLoss!).toBeLessThan(r.firstLoss! - 0.05);
    const got = await fileLoss(path.join(run, 'model'), validFile, fast.chunk);
    const bf16 = (await openCheckpoint(dir)).config.torchDtype === 'bfloat16';
    console.log(`${name}: checkpoint loss in the engine ${got.toFixed(6)} (trained weights stored as ${bf16 ? 'BF16' : 'F32'})`);
    // F32 checkpoints hold the trained values exactly: trainer and engine agree to float rounding. BF16 ones round them.
    expect(Math.abs(got - r.bestValid!) / r.bestValid!).toBeLessThan(bf16 ? 2e-2 : 1e-5);
  }, 120_000);

  it.each(['neurons', 'lora'] as const)('%s: the loss falls', async (method) => {
    const masks = method === 'neurons' ? await maskFor(dir, `${name}-mask.json`) : undefined;
    const r = await finetune(dir, { ...fast, method, ...(masks ? { masks, langs: ['mt'] } : {}), train: trainFile, steps: 6, lr: 1e-2, writeModel: false },
      path.join(tmp, `${name}-${method}`));
    console.log(`${name} ${method}: trainable ${r.trainableParameters}, loss ${r.firstLoss!.toFixed(4)} -> ${r.lastLoss!.toFixed(4)}`);
    expect(r.lastLoss!).toBeLessThan(r.firstLoss!);
  }, 120_000);
});
