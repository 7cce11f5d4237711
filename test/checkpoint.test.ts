import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import { readAllTensors, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { estimateMemory, expectedTensors, openCheckpoint } from '../src/model/checkpoint.js';
import { copyFixture, fixturePath, FIXTURE_NAMES, removeDir } from './helpers/fixtures.js';

const temps: string[] = [];
afterEach(async () => {
  await Promise.all(temps.splice(0).map(removeDir));
});
async function copy(name: Parameters<typeof copyFixture>[0]): Promise<string> {
  const dir = await copyFixture(name);
  temps.push(dir);
  return dir;
}

/** Rewrites a safetensors file after letting `mutate` edit its tensors. */
async function rewrite(file: string, mutate: (t: Record<string, TensorToWrite>) => void): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, { info, data }] of await readAllTensors(file)) tensors[name] = { dtype: info.dtype, shape: info.shape, data };
  mutate(tensors);
  await writeSafetensors(file, tensors, { format: 'pt' });
}

async function refusal(dir: string, pattern: RegExp): Promise<LangneuronsError> {
  const err = await openCheckpoint(dir).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(LangneuronsError);
  expect((err as Error).message).toMatch(pattern);
  return err as LangneuronsError;
}

describe('fixture checkpoints', () => {
  it.each(FIXTURE_NAMES)('%s matches its config', async (name) => {
    const ckpt = await openCheckpoint(fixturePath(name));
    const expected = expectedTensors(ckpt.config);
    expect(ckpt.tensors.size).toBe(expected.length);
    for (const e of expected) expect(ckpt.tensors.get(e.name)?.shape).toEqual(e.shape);
    expect(ckpt.parameterCount).toBe(expected.reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0));
    expect(ckpt.warnings).toEqual([]);
    const dtype = {
      'stories260k': 'F32', 'tiny-llama3': 'BF16', 'tiny-qwen2': 'F32', 'tiny-mistral': 'F16',
      'tiny-gemma2': 'BF16', 'tiny-cohere': 'F32', 'tiny-qwen3': 'BF16', 'tiny-qwen2-yarn': 'F32',
    }[name];
    expect(ckpt.dtypeCounts).toEqual({ [dtype]: expected.length });
    for (const t of ckpt.tensors.values()) expect(path.isAbsolute(t.file)).toBe(true);
  });

  it('sharded tiny-llama3 spreads tensors over two files', async () => {
    const ckpt = await openCheckpoint(fixturePath('tiny-llama3'));
    expect(ckpt.files.map((f) => path.basename(f)).sort()).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const index = JSON.parse(await fsp.readFile(fixturePath('tiny-llama3', 'model.safetensors.index.json'), 'utf8'));
    expect(ckpt.totalBytes).toBe(index.metadata.total_size);
    expect(ckpt.tensors.has('lm_head.weight')).toBe(true);
    expect(ckpt.tensors.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([16, 64]);
  });

  it('qwen2 expects q/k/v biases, no lm_head when tied', () => {
    return openCheckpoint(fixturePath('tiny-qwen2')).then((ckpt) => {
      expect(ckpt.tensors.get('model.layers.1.self_attn.k_proj.bias')!.shape).toEqual([16]);
      expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
    });
  });

  it('estimateMemory', async () => {
    const ckpt = await openCheckpoint(fixturePath('tiny-mistral'));
    const m = estimateMemory(ckpt.config, { weightBytes: ckpt.totalBytes, batchTokens: 10, contextTokens: 100 });
    expect(m.weightBytes).toBe(ckpt.totalBytes);
    expect(m.kvCacheBytesPerToken).toBe(2 * 2 * 2 * 32 * 4);
    expect(m.kvCacheBytes).toBe(m.kvCacheBytesPerToken * 100);
    // tiny-mistral: hidden 80, 4 heads / 2 KV heads of 32, 128 FFN neurons, vocab 280; 10 tokens, context 100, 1 thread.
    // per token: h, x (2·80) + q, att (2·4·32) + k, v (2·2·32) + gate, up (2·128) = 800 floats
    // + one attention row (100) + LM head chunk (64·280) + gathered rows (10·80) + RoPE tables (100·32)
    expect(m.activationBytes).toBe(4 * (10 * 800 + 100 + 64 * 280 + 10 * 80 + 100 * 32));
    expect(m.totalBytes).toBe(m.weightBytes + m.kvCacheBytes + m.activationBytes);
    expect(estimateMemory(ckpt.config).weightBytes).toBe(ckpt.parameterCount * 2); // float16 from torch_dtype
  });
});

describe('corrupted checkpoints', () => {
  it('missing tensor', async () => {
    const dir = await copy('stories260k');
    await rewrite(path.join(dir, 'model.safetensors'), (t) => delete t['model.layers.3.mlp.up_proj.weight']);
    const e = await refusal(dir, /model\.safetensors: checkpoint is missing 1 tensor\(s\).*"model\.layers\.3\.mlp\.up_proj\.weight"/);
    expect(e.code).toBe('E_CHECKPOINT');
    expect(e.field).toBe('model.layers.3.mlp.up_proj.weight');
  });

  it('wrong shape', async () => {
    const dir = await copy('tiny-llama3');
    await rewrite(path.join(dir, 'model-00001-of-00002.safetensors'), (t) => {
      t['model.layers.0.mlp.gate_proj.weight']!.shape = [64, 160];
    });
    await refusal(dir, /model-00001-of-00002\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[64, 160\], expected \[160, 64\]/);
  });

  it('unsupported weight dtype', async () => {
    const dir = await copy('stories260k');
    await rewrite(path.join(dir, 'model.safetensors'), (t) => {
      t['model.norm.weight']!.dtype = 'I32';
    });
    await refusal(dir, /"model\.norm\.weight" has dtype I32; weights must be F32, F16 or BF16/);
  });

  it('unexplained extra tensors are listed; harmless ones and a tied lm_head are accepted', async () => {
    const dir = await copy('stories260k');
    const file = path.join(dir, 'model.safetensors');
    await rewrite(file, (t) => {
      t['model.layers.0.self_attn.rotary_emb.inv_freq'] = { dtype: 'F32', shape: [4], data: new Float32Array(4) };
      t['lm_head.weight'] = { ...t['model.embed_tokens.weight']! };
    });
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.notes.join()).toMatch(/lm_head\.weight/);
    expect(ckpt.parameterCount).toBe((await openCheckpoint(fixturePath('stories260k'))).parameterCount);
    await rewrite(file, (t) => {
      t['model.layers.0.mlp.extra.weight'] = { dtype: 'F32', shape: [2], data: new Float32Array(2) };
      t['vision_tower.x'] = { dtype: 'F32', shape: [2], data: new Float32Array(2) };
    });
    await refusal(dir, /2 tensor\(s\) not used by a llama model.*"model\.layers\.0\.mlp\.extra\.weight", "vision_tower\.x"/);
  });

  it('no weights at all', async () => {
    const dir = await copy('tiny-qwen2');
    await fsp.rm(path.join(dir, 'model.safetensors'));
    await refusal(dir, /no model\.safetensors or model\.safetensors\.index\.json/);
  });

  it('corrupt safetensors header surfaces as a safetensors error naming the file', async () => {
    const dir = await copy('tiny-mistral');
    const file = path.join(dir, 'model.safetensors');
    const fd = await fsp.open(file, 'r+');
    await fd.write(Buffer.from('!!'), 0, 2, 8);
    await fd.close();
    const e = await refusal(dir, /model\.safetensors: header is not valid JSON/);
    expect(e.code).toBe('E_SAFETENSORS');
  });

  it('truncated shard', async () => {
    const dir = await copy('tiny-llama3');
    const file = path.join(dir, 'model-00002-of-00002.safetensors');
    await fsp.truncate(file, 2000);
    await refusal(dir, /model-00002-of-00002\.safetensors: tensor ".*" has byte range \[\d+, \d+\) outside the data section/);
  });
});

describe('broken index files', () => {
  const indexName = 'model.safetensors.index.json';
  async function editIndex(dir: string, edit: (weightMap: Record<string, string>) => void): Promise<void> {
    const file = path.join(dir, indexName);
    const index = JSON.parse(await fsp.readFile(file, 'utf8'));
    edit(index.weight_map);
    await fsp.writeFile(file, JSON.stringify(index));
  }

  it('invalid JSON / no weight_map', async () => {
    const dir = await copy('tiny-llama3');
    await fsp.writeFile(path.join(dir, indexName), '{"weight_map": {');
    await refusal(dir, /model\.safetensors\.index\.json: cannot parse/);
    await fsp.writeFile(path.join(dir, indexName), '{"metadata": {}}');
    await refusal(dir, /expected an object with a "weight_map" object/);
  });

  it('shard that does not exist / outside the directory', async () => {
    const dir = await copy('tiny-llama3');
    await editIndex(dir, (m) => (m['model.norm.weight'] = 'model-00003-of-00002.safetensors'));
    await refusal(dir, /shard "model-00003-of-00002\.safetensors" listed in weight_map does not exist/);
    await editIndex(dir, (m) => (m['model.norm.weight'] = '../model-00002-of-00002.safetensors'));
    await refusal(dir, /points outside the checkpoint directory/);
  });

  it('tensor mapped to the wrong shard', async () => {
    const dir = await copy('tiny-llama3');
    await editIndex(dir, (m) => (m['model.norm.weight'] = 'model-00001-of-00002.safetensors'));
    await refusal(dir, /maps "model\.norm\.weight" to model-00001-of-00002\.safetensors, but it is stored in model-00002-of-00002\.safetensors/);
  });

  it('tensor listed but absent, tensor not listed, tensor in two shards', async () => {
    let dir = await copy('tiny-llama3');
    await editIndex(dir, (m) => (m['model.ghost.weight'] = 'model-00001-of-00002.safetensors'));
    await refusal(dir, /"model\.ghost\.weight" is mapped to model-00001-of-00002\.safetensors, which does not contain it/);

    dir = await copy('tiny-llama3');
    await editIndex(dir, (m) => delete m['model.norm.weight']);
    await refusal(dir, /"model\.norm\.weight" in model-00002-of-00002\.safetensors is not listed in weight_map/);

    dir = await copy('tiny-llama3');
    await rewrite(path.join(dir, 'model-00001-of-00002.safetensors'), (t) => {
      t['model.norm.weight'] = { dtype: 'BF16', shape: [64], data: new Uint16Array(64) };
    });
    await refusal(dir, /"model\.norm\.weight" is stored in two shards/);
  });
});
