import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel } from '../src/engine/model.js';
import { LangneuronsError } from '../src/errors.js';
import { readAllTensors } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { initModel, initTensors, parameterCount, type InitOptions } from '../src/pretrain/init.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

const SHAPE: InitOptions = { layers: 2, hidden: 32, heads: 4, kvHeads: 2, ffn: 48, vocab: 300, context: 64, seed: 7, bosTokenId: 0, eosTokenId: 1 };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('random initialization of a small Llama', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('langneurons-init-');
    await initModel(dir, SHAPE);
  });
  afterAll(async () => removeDir(dir));

  it('writes a checkpoint the engine loads, with the stated shapes', async () => {
    const ckpt = await openCheckpoint(dir);
    const c = ckpt.config;
    expect([c.modelType, c.numLayers, c.hiddenSize, c.numHeads, c.numKvHeads, c.intermediateSize, c.vocabSize, c.maxPositions])
      .toEqual(['llama', 2, 32, 4, 2, 48, 300, 64]);
    expect(c.tieWordEmbeddings).toBe(true);
    const shapes = Object.fromEntries([...ckpt.tensors].map(([n, t]) => [n, t.shape]));
    expect(shapes['model.embed_tokens.weight']).toEqual([300, 32]);
    expect(shapes['model.layers.1.self_attn.k_proj.weight']).toEqual([16, 32]);
    expect(shapes['model.layers.0.mlp.down_proj.weight']).toEqual([32, 48]);
    expect(shapes['lm_head.weight']).toBeUndefined();
    const total = [...ckpt.tensors.values()].reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    expect(total).toBe(parameterCount(SHAPE));

    const model = await loadModel(dir, { threads: 1 });
    const out = await model.forward([[0, 5, 9, 200]], { logits: 'all' });
    const logits = out.logits!;
    expect(logits.length).toBe(4 * 300);
    expect(logits.every(Number.isFinite)).toBe(true);
    // tiny random weights: the prediction is close to uniform
    const row = Array.from(logits.subarray(0, 300));
    expect(Math.max(...row) - Math.min(...row)).toBeLessThan(2);
  });

  it('draws normal(0, 0.02) weights, residual projections scaled by 1/sqrt(2L), norms at 1', async () => {
    const t = await readAllTensors(path.join(dir, 'model.safetensors'));
    const std = (name: string) => {
      const x = t.get(name)!.data as Float32Array;
      const m = x.reduce((s, v) => s + v, 0) / x.length;
      return Math.sqrt(x.reduce((s, v) => s + (v - m) * (v - m), 0) / x.length);
    };
    expect(std('model.embed_tokens.weight')).toBeCloseTo(0.02, 3);
    expect(std('model.layers.0.mlp.down_proj.weight')).toBeCloseTo(0.02 / 2, 3);
    expect(Array.from(t.get('model.norm.weight')!.data as Float32Array).every((v) => v === 1)).toBe(true);
  });

  it('is reproducible from the seed (fixed checksum)', async () => {
    const bytes = await fsp.readFile(path.join(dir, 'model.safetensors'));
    const again = await makeTempDir('langneurons-init-');
    try {
      await initModel(again, SHAPE);
      expect(sha(await fsp.readFile(path.join(again, 'model.safetensors')))).toBe(sha(bytes));
    } finally {
      await removeDir(again);
    }
    const weights = Buffer.concat(Object.values(initTensors(SHAPE)).map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength)));
    expect(sha(weights)).toBe(EXPECTED_WEIGHTS_SHA256);
    const other = Object.values(initTensors({ ...SHAPE, seed: 8 }))[0]!.data as Float32Array;
    expect(other).not.toEqual(Object.values(initTensors(SHAPE))[0]!.data);
  });

  it('stores BF16 when asked', () => {
    const t = initTensors({ ...SHAPE, dtype: 'BF16' });
    expect(t['model.embed_tokens.weight']!.dtype).toBe('BF16');
    expect(t['model.embed_tokens.weight']!.data.byteLength).toBe(300 * 32 * 2);
  });

  it('refuses impossible shapes', () => {
    expect(() => initTensors({ ...SHAPE, hidden: 30 })).toThrow(LangneuronsError);
    expect(() => initTensors({ ...SHAPE, kvHeads: 3 })).toThrow(/multiple of --kv-heads/);
    expect(() => initTensors({ ...SHAPE, layers: 0 })).toThrow(/--layers/);
  });
});

/** sha256 of the concatenated tensors of SHAPE (seed 7), in initTensors' order: embeddings, layers, final norm. */
const EXPECTED_WEIGHTS_SHA256 = '51273902ab7d1816936d500c225d96af0365d469f6be54c6cd0ebec6113b0cde';
