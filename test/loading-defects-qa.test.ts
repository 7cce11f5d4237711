// Loading checkpoints and the library API: defects found by QA. Expected values come from transformers' config classes
// (their documented defaults), from the fixtures' transformers reference logits, or are worked out by hand.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { LangneuronsError } from '../src/errors.js';
import { loadModel } from '../src/engine/model.js';
import { parseModelConfig } from '../src/model/config.js';
import { loadAddon } from '../src/native/addon.js';
import { copyFixture, fixturePath, removeDir, type FixtureName } from './helpers/fixtures.js';
import { loadReference, relativeError } from './helpers/reference.js';

const temps: string[] = [];
afterEach(async () => {
  await Promise.all(temps.splice(0).map(removeDir));
});
async function copy(name: FixtureName, edit: (dir: string) => Promise<void>): Promise<string> {
  const dir = await copyFixture(name);
  temps.push(dir);
  await edit(dir);
  return dir;
}
async function editJson(file: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  await fsp.writeFile(file, JSON.stringify(json, null, 2));
}
async function errorOf(call: () => Promise<unknown> | unknown): Promise<unknown> {
  try {
    await call();
  } catch (e) {
    return e;
  }
  throw new Error('expected a refusal');
}

// A config.json reduced to the fields every family requires (what a hand-written or converted config may hold).
const minimal = { hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 8, vocab_size: 300 };

describe('config.json fields left out take the defaults of transformers\' config class', () => {
  it('mistral without sliding_window runs MistralConfig\'s 4096-token window; an explicit null is none', () => {
    // MistralConfig: sliding_window defaults to 4096, max_position_embeddings to 4096 * 32.
    const absent = parseModelConfig({ ...minimal, model_type: 'mistral' });
    expect(absent.maxPositions).toBe(131072);
    expect(absent.slidingWindow).toBe(4096);
    expect(parseModelConfig({ ...minimal, model_type: 'mistral', sliding_window: null }).slidingWindow).toBeNull();
  });

  it('qwen2 / qwen3 use_sliding_window without sliding_window: the default 4096, so longer sequences are refused', () => {
    for (const model_type of ['qwen2', 'qwen3']) {
      const c = parseModelConfig({ ...minimal, model_type, max_position_embeddings: 32768, use_sliding_window: true });
      expect(c.exactUpTo).toBe(4096);
    }
  });

  it('num_key_value_heads: MistralConfig defaults it to 8 and Gemma2Config to 4, not num_attention_heads', () => {
    const heads = { ...minimal, hidden_size: 512, num_attention_heads: 32 };
    expect(parseModelConfig({ ...heads, model_type: 'mistral' }).numKvHeads).toBe(8);
    expect(parseModelConfig({ ...heads, model_type: 'gemma2' }).numKvHeads).toBe(4);
    expect(parseModelConfig({ ...heads, model_type: 'llama' }).numKvHeads).toBe(32);
  });

  it('qwen3 max_position_embeddings defaults to 32768 (Qwen3Config), not the 40960 of the released checkpoints', () => {
    expect(parseModelConfig({ ...minimal, model_type: 'qwen3' }).maxPositions).toBe(32768);
  });
});

describe('config.json in transformers 5 form', () => {
  it('rope_parameters.partial_rotary_factor (RoPE on part of each head) is refused as the top-level field is', () => {
    const e = errorOf(() => parseModelConfig({
      ...minimal, model_type: 'llama', rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.5 },
    }));
    return e.then((err) => {
      expect(err).toBeInstanceOf(LangneuronsError);
      expect((err as LangneuronsError).code).toBe('E_CONFIG');
      expect((err as LangneuronsError).field).toBe('rope_parameters.partial_rotary_factor');
      expect((err as Error).message).toMatch(/partial_rotary_factor" 0\.5 .*not implemented/);
    });
  });
});

describe('gemma2 runs hidden_activation, never the legacy hidden_act', () => {
  it('a config with hidden_act "gelu" and no hidden_activation loads and matches the transformers reference', async () => {
    const dir = await copy('tiny-gemma2', (d) => editJson(path.join(d, 'config.json'), (j) => {
      delete j['hidden_activation'];
      j['hidden_act'] = 'gelu';
    }));
    const ref = await loadReference('tiny-gemma2');
    const model = await loadModel(dir, { threads: 1, device: 'cpu', compute: 'f32' });
    try {
      expect(model.config.hiddenAct).toBe('gelu_pytorch_tanh');
      const out = await model.forward([ref.inputIds], { logits: 'all' });
      expect(relativeError(out.logits, ref.logits)).toBeLessThan(1e-4);
    } finally {
      await model.dispose();
    }
  });
});

describe('loadModel and forward refuse what they cannot read, naming it', () => {
  it('a token id that is a string, a bigint or a fraction is named as such, not as outside the vocabulary', async () => {
    const model = await loadModel(fixturePath('tiny-llama3'), { threads: 1, device: 'cpu' });
    try {
      // Vocabulary of 300: "1" and 1n look like the valid id 1, and 1.5 lies inside [0, 300).
      for (const [id, shown] of [['1', '"1" (a string)'], [1n, '1 (a bigint)'], [1.5, '1.5']] as const) {
        const e = await errorOf(() => model.forward([[1, id as unknown as number]]));
        expect(e).toBeInstanceOf(LangneuronsError);
        expect((e as LangneuronsError).code).toBe('E_INPUT');
        expect((e as Error).message).toContain(`token ${shown} at position 1 of sequence 0 is not an integer token id`);
        expect((e as Error).message).not.toMatch(/outside the vocabulary/);
      }
      const target = await errorOf(() => model.forward([[1, 2]], { targets: [[2, '3' as unknown as number]] }));
      expect((target as Error).message).toContain('target "3" (a string) at position 1');
    } finally {
      await model.dispose();
    }
  });

  it('options that are not an object (untyped callers) are refused rather than run with every default', async () => {
    const load = await errorOf(() => loadModel(fixturePath('tiny-llama3'), 'cpu' as never));
    expect(load).toBeInstanceOf(LangneuronsError);
    expect((load as LangneuronsError).code).toBe('E_OPTIONS');
    expect((load as Error).message).toMatch(/loadModel: options must be an object .*got "cpu"/);
    const model = await loadModel(fixturePath('tiny-llama3'), { threads: 1, device: 'cpu' });
    try {
      // 'all' in place of { logits: 'all' } returned one row (the default 'last') for a 3-token sequence.
      const e = await errorOf(() => model.forward([[1, 2, 3]], 'all' as never));
      expect((e as LangneuronsError).code).toBe('E_OPTIONS');
      expect((e as Error).message).toMatch(/forward: options must be an object .*got "all"/);
    } finally {
      await model.dispose();
    }
  });

  it('cacheSlots without a cache is refused (as countMask without stats), not run as a fresh forward', async () => {
    const model = await loadModel(fixturePath('tiny-llama3'), { threads: 1, device: 'cpu' });
    try {
      const e = await errorOf(() => model.forward([[1, 2]], { cacheSlots: [0] }));
      expect(e).toBeInstanceOf(LangneuronsError);
      expect((e as LangneuronsError).code).toBe('E_INPUT');
      expect((e as Error).message).toMatch(/cacheSlots needs a cache/);
    } finally {
      await model.dispose();
    }
  });

  it('a tokenizer that fails to load leaves no native runtime behind (weights mapped, on a GPU uploaded)', async () => {
    const dir = await copy('tiny-llama3', (d) => fsp.writeFile(path.join(d, 'tokenizer.json'), JSON.stringify({ version: '1.0' })));
    const addon = loadAddon() as unknown as { NativeModel: new (spec: unknown) => { dispose(): void } };
    const Original = addon.NativeModel;
    let live = 0;
    addon.NativeModel = class extends Original {
      constructor(spec: unknown) { super(spec); live++; }
      override dispose(): void { live--; super.dispose(); }
    };
    try {
      const e = await errorOf(() => loadModel(dir, { threads: 1, device: 'cpu' }));
      expect(e).toBeInstanceOf(LangneuronsError);
      expect((e as LangneuronsError).code).toBe('E_TOKENIZER');
      expect(live).toBe(0);
      const model = await loadModel(dir, { threads: 1, device: 'cpu', tokenizer: false });
      expect(live).toBe(1);
      await model.dispose();
      expect(live).toBe(0);
    } finally {
      addon.NativeModel = Original;
    }
  });
});

describe('weights that are Git LFS pointers (a clone without git-lfs)', () => {
  // The pointer format of the Git LFS specification: three "key value" lines.
  const pointer = 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 323456\n';

  it('are refused naming Git LFS and the remedy, for a single file and for a shard', async () => {
    const single = await copy('tiny-qwen2', (d) => fsp.writeFile(path.join(d, 'model.safetensors'), pointer));
    const shard = await copy('tiny-llama3', (d) => fsp.writeFile(path.join(d, 'model-00002-of-00002.safetensors'), pointer));
    for (const [dir, file] of [[single, 'model.safetensors'], [shard, 'model-00002-of-00002.safetensors']] as const) {
      const e = await errorOf(() => loadModel(dir, { threads: 1, device: 'cpu' }));
      expect(e).toBeInstanceOf(LangneuronsError);
      expect((e as LangneuronsError).code).toBe('E_CHECKPOINT');
      expect((e as Error).message).toContain(`${file}: is a Git LFS pointer, not the weights`);
      expect((e as Error).message).toContain('git lfs pull');
    }
  });
});
