import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import { assertSequenceFits, loadModelConfig, parseModelConfig } from '../src/model/config.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

const base = {
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  vocab_size: 300,
  max_position_embeddings: 512,
};

function refusal(json: unknown, field: string, pattern: RegExp): void {
  let err: unknown;
  try {
    parseModelConfig(json, '/some/dir/config.json');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LangneuronsError);
  const e = err as LangneuronsError;
  expect(e.code).toBe('E_CONFIG');
  expect(e.field).toBe(field);
  expect(e.message.startsWith('config.json: ')).toBe(true);
  expect(e.message).toMatch(pattern);
}

describe('fixture configs', () => {
  it('stories260k', async () => {
    const c = await loadModelConfig(fixturePath('stories260k'));
    expect(c).toMatchObject({
      modelType: 'llama', hiddenSize: 64, intermediateSize: 172, numLayers: 5, numHeads: 8, numKvHeads: 4, headDim: 8,
      vocabSize: 512, maxPositions: 512, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: true,
      qkvBias: false, hiddenAct: 'silu', bosTokenId: 1, eosTokenIds: [2], torchDtype: 'float32', slidingWindow: null,
    });
    expect(c.warnings).toEqual([]);
  });

  it('tiny-llama3 (llama3 rope scaling)', async () => {
    const c = await loadModelConfig(fixturePath('tiny-llama3'));
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
    expect(c).toMatchObject({ ropeTheta: 500000, numKvHeads: 2, headDim: 8, tieWordEmbeddings: false, torchDtype: 'bfloat16', maxPositions: 131072 });
  });

  it('tiny-qwen2 (qkv bias, tied)', async () => {
    const c = await loadModelConfig(fixturePath('tiny-qwen2'));
    expect(c).toMatchObject({ modelType: 'qwen2', qkvBias: true, tieWordEmbeddings: true, rmsNormEps: 1e-6, headDim: 8, numHeads: 6 });
  });

  it('tiny-mistral (explicit head_dim, sliding_window null)', async () => {
    const c = await loadModelConfig(fixturePath('tiny-mistral'));
    expect(c).toMatchObject({ modelType: 'mistral', hiddenSize: 80, headDim: 32, numHeads: 4, slidingWindow: null, torchDtype: 'float16' });
  });
});

describe('refusals', () => {
  it('unsupported architectures, with the reason', () => {
    refusal({ ...base, model_type: 'gemma' }, 'model_type', /embeddings/);
    refusal({ ...base, model_type: 'gemma3' }, 'model_type', /q\/k norms/);
    refusal({ ...base, model_type: 'cohere2' }, 'model_type', /sliding-window/);
    refusal({ ...base, model_type: 'mixtral' }, 'model_type', /mixture of experts/);
    refusal({ ...base, model_type: 'phi3' }, 'model_type', /qkv_proj/);
    refusal({ ...base, model_type: 'bert-ish' }, 'model_type', /unknown architecture.*supported: llama, mistral, qwen2, qwen3, gemma2, cohere/);
    refusal({ ...base, model_type: undefined }, 'model_type', /missing/);
  });

  it('activations, rope scaling types, biases, quantization', () => {
    refusal({ ...base, hidden_act: 'gelu' }, 'hidden_act', /"gelu" is not supported \(only silu/);
    for (const type of ['longrope', 'mrope']) {
      refusal({ ...base, rope_scaling: { type, factor: 2 } }, 'rope_scaling', new RegExp(`"${type}" is not implemented`));
    }
    refusal({ ...base, rope_scaling: { type: 'yarn', factor: 0.5 } }, 'rope_scaling.factor', />= 1/);
    refusal({ ...base, rope_scaling: { type: 'linear' } }, 'rope_scaling.factor', /finite number > 0, got undefined/);
    refusal({ ...base, model_type: 'gemma2', hidden_activation: 'gelu' }, 'hidden_activation', /only gelu_pytorch_tanh/);
    refusal({ ...base, model_type: 'qwen3', hidden_act: 'gelu' }, 'hidden_act', /only silu/);
    refusal({ ...base, model_type: 'cohere', use_qk_norm: true }, 'use_qk_norm', /not implemented/);
    refusal({ ...base, partial_rotary_factor: 0.5 }, 'partial_rotary_factor', /not implemented/);
    refusal({ ...base, model_type: 'qwen3', attention_bias: true }, 'attention_bias', /o_proj bias/);
    refusal({ ...base, rope_scaling: { rope_type: 'weird' } }, 'rope_scaling', /"weird" is unknown/);
    refusal({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } },
      'rope_scaling.high_freq_factor', /must exceed/);
    refusal({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } },
      'rope_scaling.original_max_position_embeddings', /finite number > 0, got undefined/);
    refusal({ ...base, attention_bias: true }, 'attention_bias', /o_proj bias is not implemented/);
    refusal({ ...base, mlp_bias: true }, 'mlp_bias', /not implemented/);
    refusal({ ...base, quantization_config: { quant_method: 'gptq' } }, 'quantization_config', /quantized/);
  });

  it('numeric fields', () => {
    refusal({ ...base, hidden_size: 0 }, 'hidden_size', /"hidden_size" must be a positive integer, got 0/);
    refusal({ ...base, intermediate_size: 1.5 }, 'intermediate_size', /positive integer, got 1.5/);
    refusal({ ...base, num_hidden_layers: '2' }, 'num_hidden_layers', /got "2"/);
    refusal({ ...base, vocab_size: undefined }, 'vocab_size', /"vocab_size" is required/);
    refusal({ ...base, num_key_value_heads: 3 }, 'num_key_value_heads', /multiple of "num_key_value_heads" \(3\)/);
    refusal({ ...base, num_attention_heads: 6, num_key_value_heads: 2 }, 'hidden_size', /not divisible/);
    refusal({ ...base, rms_norm_eps: 0 }, 'rms_norm_eps', /finite number > 0/);
    refusal({ ...base, rms_norm_eps: -1e-5 }, 'rms_norm_eps', /finite number > 0/);
    refusal({ ...base, rope_theta: 'inf' }, 'rope_theta', /finite number > 0/);
    refusal({ ...base, tie_word_embeddings: 'yes' }, 'tie_word_embeddings', /true or false/);
    refusal({ ...base, eos_token_id: [2, -1] }, 'eos_token_id', /non-negative integer/);
    refusal({ ...base, head_dim: 7 }, 'head_dim', /even/);
    refusal([], undefined as unknown as string, /JSON object/);
  });
});

describe('accepted variants', () => {
  it('defaults, swish alias, eos lists, rope_type default', () => {
    const c = parseModelConfig({ ...base, num_key_value_heads: undefined, hidden_act: 'swish', eos_token_id: [128001, 128008, 128009], rope_scaling: { rope_type: 'default' } });
    expect(c.numKvHeads).toBe(8);
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.ropeScaling).toBeNull();
    expect(c.rmsNormEps).toBe(1e-6);
    expect(c.bosTokenId).toBeNull();
  });

  it('mistral sliding window: computed by the engine for any length, no warning', () => {
    const c = parseModelConfig({ ...base, model_type: 'mistral', max_position_embeddings: 32768, sliding_window: 4096 });
    expect(c.slidingWindow).toBe(4096);
    expect(c.slidingPeriod).toBe(1);
    expect(c.warnings).toEqual([]);
    expect(() => assertSequenceFits(c, 32768)).not.toThrow();
    const full = parseModelConfig({ ...base, model_type: 'mistral', max_position_embeddings: 4096, sliding_window: 4096 });
    expect(full.slidingWindow).toBeNull();
  });

  it('qwen2 sliding_window only counts with use_sliding_window, and then refuses longer sequences', () => {
    const off = parseModelConfig({ ...base, model_type: 'qwen2', max_position_embeddings: 32768, sliding_window: 4096, use_sliding_window: false });
    expect(off.exactUpTo).toBeNull();
    expect(off.qkvBias).toBe(true);
    const on = parseModelConfig({ ...base, model_type: 'qwen2', max_position_embeddings: 32768, sliding_window: 4096, use_sliding_window: true });
    expect(on.slidingWindow).toBeNull();
    expect(on.exactUpTo).toBe(4096);
    expect(on.warnings[0]).toMatch(/sliding_window 4096/);
    expect(() => assertSequenceFits(on, 4096)).not.toThrow();
    expect(() => assertSequenceFits(on, 4097)).toThrow(LangneuronsError);
  });

  it('family fixtures: gemma2, cohere, qwen3, yarn', async () => {
    const g = await loadModelConfig(fixturePath('tiny-gemma2'));
    expect(g).toMatchObject({
      modelType: 'gemma2', norm: 'rms1p', postNorms: true, embedScale: 8, queryPreAttnScalar: 24, attnSoftcap: 4,
      finalSoftcap: 1.5, slidingWindow: 8, slidingPeriod: 2, hiddenAct: 'gelu_pytorch_tanh', headDim: 32, tieWordEmbeddings: true,
    });
    const c = await loadModelConfig(fixturePath('tiny-cohere'));
    expect(c).toMatchObject({ modelType: 'cohere', norm: 'layer', parallelBlock: true, ropeInterleaved: true, logitScale: 0.125, rmsNormEps: 1e-5, tieWordEmbeddings: true });
    const q = await loadModelConfig(fixturePath('tiny-qwen3'));
    expect(q).toMatchObject({ modelType: 'qwen3', qkNorm: true, qkvBias: false, headDim: 32, exactUpTo: null });
    const y = await loadModelConfig(fixturePath('tiny-qwen2-yarn'));
    expect(y.ropeScaling).toEqual({ type: 'yarn', factor: 4, originalMaxPositions: 32, attentionFactor: 0.1 * Math.log(4) + 1, betaFast: 32, betaSlow: 1 });
    expect(y.maxPositions).toBe(128);
    expect(y.warnings).toEqual([]);
    // Qwen2.5's instructions: rope_scaling added, max_position_embeddings left at the original context.
    const q25 = parseModelConfig({ ...base, model_type: 'qwen2', max_position_embeddings: 32768, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } });
    expect(q25.maxPositions).toBe(131072);
    expect(q25.warnings[0]).toMatch(/yarn factor 4 differs from max_position_embeddings \/ original_max_position_embeddings = 1/);
    // Defaults of the families' config classes.
    const gd = parseModelConfig({ ...base, model_type: 'gemma2', head_dim: undefined, attn_logit_softcapping: null });
    expect(gd).toMatchObject({ headDim: 256, queryPreAttnScalar: 256, attnSoftcap: 0, finalSoftcap: 30, slidingWindow: null }); // the default window 4096 is not below max_position_embeddings 512
    expect(parseModelConfig({ ...base, model_type: 'cohere' }).logitScale).toBe(0.0625);
    expect(parseModelConfig({ ...base, rope_scaling: { type: 'dynamic', factor: 2 } }).ropeScaling).toEqual({ type: 'dynamic', factor: 2 });
    const ms = parseModelConfig({ ...base, rope_scaling: { type: 'yarn', factor: 4, mscale: 0.707, mscale_all_dim: 0.707 } });
    expect(ms.ropeScaling).toMatchObject({ attentionFactor: 1, originalMaxPositions: 512 });
  });

  it('rope_theta from rope_parameters (newer transformers)', () => {
    const c = parseModelConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 500000 } });
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling).toBeNull();
  });
});

describe('loadModelConfig file errors', () => {
  it('missing and corrupt config.json name the file', async () => {
    const dir = await makeTempDir();
    try {
      await expect(loadModelConfig(dir)).rejects.toThrow(/config\.json: cannot read/);
      await fsp.writeFile(path.join(dir, 'config.json'), '{"model_type": ');
      await expect(loadModelConfig(dir)).rejects.toThrow(/config\.json: invalid JSON/);
    } finally {
      await removeDir(dir);
    }
  });
});
