/**
 * Hugging Face config.json -> a validated ModelConfig for the Llama family (llama, mistral, qwen2).
 *
 * Anything the engine does not implement is refused with the reason, rather than silently computing
 * the wrong function: other architectures, activations other than SiLU, rope scalings other than
 * llama3, o_proj / MLP biases, quantized checkpoints.
 *
 * Sliding-window policy (mistral, and qwen2 with use_sliding_window): accepted with a warning. Full
 * causal attention is exactly sliding-window attention while the sequence is no longer than the
 * window, so `slidingWindow` is exposed and callers must refuse longer sequences
 * (`assertSequenceFits`). This keeps Mistral-7B-v0.1 (window 4096) usable for profiling, which runs on
 * short sequences.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';

export type ModelType = 'llama' | 'mistral' | 'qwen2';

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface ModelConfig {
  modelType: ModelType;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Explicit head_dim when given (Mistral Nemo), else hiddenSize / numHeads. */
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (always for qwen2). o_proj never does here. */
  qkvBias: boolean;
  hiddenAct: 'silu';
  bosTokenId: number | null;
  eosTokenIds: number[];
  torchDtype: string | null;
  /** Sliding attention window, or null for full attention; see the policy note at the top. */
  slidingWindow: number | null;
  /** Accepted-but-noteworthy settings, for logs. */
  warnings: string[];
}

/** Architectures we recognise but do not implement, and why. */
const REFUSED_MODEL_TYPES: Record<string, string> = {
  gemma: 'Gemma uses RMSNorm with (1 + weight), GELU activations and scales embeddings by sqrt(hidden_size); not implemented',
  gemma2: 'Gemma 2 uses RMSNorm with (1 + weight), GELU, embedding scaling, logit soft-capping and extra norms; not implemented',
  gemma3: 'Gemma 3 uses (1 + weight) norms, GELU, embedding scaling, q/k norms and local/global attention; not implemented',
  gemma3_text: 'Gemma 3 uses (1 + weight) norms, GELU, embedding scaling, q/k norms and local/global attention; not implemented',
  qwen3: 'Qwen3 applies RMSNorm to queries and keys (q_norm/k_norm); not implemented',
  qwen3_moe: 'Qwen3-MoE is a mixture of experts with q/k norms; not implemented',
  qwen2_moe: 'Qwen2-MoE is a mixture of experts; not implemented',
  mixtral: 'Mixtral is a mixture of experts (no single MLP per layer to profile); not implemented',
  phi3: 'Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj; not implemented',
  phi: 'Phi uses LayerNorm, GELU and a parallel attention/MLP block; not implemented',
  olmo: 'OLMo uses non-parametric LayerNorm; not implemented',
  olmo2: 'OLMo 2 normalises after attention/MLP and applies q/k norms; not implemented',
  cohere: 'Cohere uses LayerNorm and a parallel block with logit scaling; not implemented',
  deepseek_v2: 'DeepSeek-V2 uses multi-head latent attention and MoE; not implemented',
  deepseek_v3: 'DeepSeek-V3 uses multi-head latent attention and MoE; not implemented',
  falcon: 'Falcon uses LayerNorm, GELU and a parallel block; not implemented',
  gpt2: 'GPT-2 uses LayerNorm, GELU and learned positions; not implemented',
  gpt_neox: 'GPT-NeoX uses LayerNorm, GELU and partial rotary; not implemented',
  starcoder2: 'StarCoder2 uses LayerNorm, GELU and biases everywhere; not implemented',
  granite: 'Granite scales embeddings, residuals, attention and logits with extra multipliers; not implemented',
  llama4: 'Llama 4 is a mixture of experts with chunked attention; not implemented',
};

const OTHER_ROPE_TYPES = ['linear', 'dynamic', 'yarn', 'longrope', 'su', 'mrope'];

/** Defaults of transformers' LlamaConfig / MistralConfig / Qwen2Config where a field is optional. */
const DEFAULT_MAX_POSITIONS: Record<ModelType, number> = { llama: 2048, mistral: 131072, qwen2: 32768 };

export function parseModelConfig(json: unknown, file = 'config.json'): ModelConfig {
  const name = path.basename(file);
  const fail = (message: string, field?: string): never => {
    throw new LangneuronsError('E_CONFIG', `${name}: ${message}`, { file, ...(field === undefined ? {} : { field }) });
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('expected a JSON object');
  const c = json as Record<string, unknown>;
  const has = (key: string) => c[key] !== undefined && c[key] !== null;

  const positiveInt = (key: string, fallback?: number): number => {
    const v = c[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      return fail(`"${key}" is required (a positive integer)`, key);
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) return fail(`"${key}" must be a positive integer, got ${JSON.stringify(v)}`, key);
    return v;
  };
  const positiveFinite = (key: string, fallback: number, obj: Record<string, unknown> = c, label = key): number => {
    const v = obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(`"${label}" must be a finite number > 0, got ${JSON.stringify(v)}`, label);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = c[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') return fail(`"${key}" must be true or false, got ${JSON.stringify(v)}`, key);
    return v;
  };
  const tokenId = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return fail(`"${key}" must be a non-negative integer token id, got ${JSON.stringify(v)}`, key);
    return v;
  };

  const rawType = c['model_type'];
  if (typeof rawType !== 'string') return fail('"model_type" is missing; expected one of llama, mistral, qwen2', 'model_type');
  if (rawType !== 'llama' && rawType !== 'mistral' && rawType !== 'qwen2') {
    const reason = REFUSED_MODEL_TYPES[rawType] ?? 'unknown architecture';
    return fail(`model_type "${rawType}" is not supported (${reason}); supported: llama, mistral, qwen2`, 'model_type');
  }
  const modelType: ModelType = rawType;
  const warnings: string[] = [];

  if (has('quantization_config')) fail('"quantization_config" is set: quantized checkpoints are not supported (F32/F16/BF16 weights only)', 'quantization_config');

  const hiddenSize = positiveInt('hidden_size');
  const intermediateSize = positiveInt('intermediate_size');
  const numLayers = positiveInt('num_hidden_layers');
  const numHeads = positiveInt('num_attention_heads');
  const numKvHeads = positiveInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) fail(`"num_attention_heads" (${numHeads}) must be a multiple of "num_key_value_heads" (${numKvHeads})`, 'num_key_value_heads');
  let headDim: number;
  if (has('head_dim')) headDim = positiveInt('head_dim');
  else {
    if (hiddenSize % numHeads !== 0) fail(`"hidden_size" (${hiddenSize}) is not divisible by "num_attention_heads" (${numHeads}) and no "head_dim" is given`, 'hidden_size');
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) fail(`head dimension ${headDim} must be even for rotary embeddings`, 'head_dim');
  const vocabSize = positiveInt('vocab_size');
  const maxPositions = positiveInt('max_position_embeddings', DEFAULT_MAX_POSITIONS[modelType]);
  const rmsNormEps = positiveFinite('rms_norm_eps', 1e-6);

  // transformers >= 4.5x may move rope_theta / rope_type into "rope_parameters".
  const ropeParams = c['rope_parameters'];
  const ropeParamsObj = typeof ropeParams === 'object' && ropeParams !== null && !Array.isArray(ropeParams) ? (ropeParams as Record<string, unknown>) : null;
  const ropeTheta = has('rope_theta') ? positiveFinite('rope_theta', 10000) : ropeParamsObj ? positiveFinite('rope_theta', 10000, ropeParamsObj, 'rope_parameters.rope_theta') : 10000;
  const ropeScaling = parseRopeScaling(has('rope_scaling') ? c['rope_scaling'] : ropeParamsObj, fail);

  const act = c['hidden_act'] ?? 'silu';
  if (act !== 'silu' && act !== 'swish') fail(`"hidden_act" ${JSON.stringify(act)} is not supported (only silu: the MLP is down(silu(gate(x)) * up(x)))`, 'hidden_act');

  let qkvBias = false;
  if (modelType === 'qwen2') qkvBias = true;
  if (modelType === 'llama') {
    if (bool('attention_bias', false)) fail('"attention_bias": true adds biases to q/k/v and o_proj; an o_proj bias is not implemented', 'attention_bias');
    if (bool('mlp_bias', false)) fail('"mlp_bias": true (biases on gate/up/down projections) is not implemented', 'mlp_bias');
  }

  let slidingWindow: number | null = null;
  const slidingApplies = modelType === 'mistral' || (modelType === 'qwen2' && bool('use_sliding_window', false));
  if (slidingApplies && has('sliding_window')) {
    const w = positiveInt('sliding_window');
    if (w < maxPositions) {
      slidingWindow = w;
      warnings.push(`${name}: sliding_window ${w} < max_position_embeddings ${maxPositions}: attention is exact only for sequences of at most ${w} tokens; longer ones are refused`);
    }
  }

  const bosTokenId = has('bos_token_id') ? tokenId(c['bos_token_id'], 'bos_token_id') : null;
  const eosRaw = c['eos_token_id'];
  const eosTokenIds = eosRaw === undefined || eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw.map((v) => tokenId(v, 'eos_token_id')) : [tokenId(eosRaw, 'eos_token_id')];
  const dtypeRaw = c['torch_dtype'] ?? c['dtype'];
  const torchDtype = typeof dtypeRaw === 'string' ? dtypeRaw : null;

  return {
    modelType, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, maxPositions,
    rmsNormEps, ropeTheta, ropeScaling, tieWordEmbeddings: bool('tie_word_embeddings', false), qkvBias,
    hiddenAct: 'silu', bosTokenId, eosTokenIds: [...new Set(eosTokenIds)], torchDtype, slidingWindow, warnings,
  };
}

function parseRopeScaling(raw: unknown, fail: (m: string, f?: string) => never): Llama3RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) return fail(`"rope_scaling" must be an object or null, got ${JSON.stringify(raw)}`, 'rope_scaling');
  const r = raw as Record<string, unknown>;
  const type = r['rope_type'] ?? r['type'];
  if (type === undefined || type === 'default') return null; // plain RoPE
  if (type !== 'llama3') {
    const known = typeof type === 'string' && OTHER_ROPE_TYPES.includes(type);
    return fail(`rope_scaling type ${JSON.stringify(type)} is ${known ? 'not implemented' : 'unknown'} (only "llama3" is supported; not linear, dynamic, yarn or longrope)`, 'rope_scaling');
  }
  const num = (key: string): number => {
    const v = r[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(`"rope_scaling.${key}" must be a finite number > 0, got ${JSON.stringify(v)}`, `rope_scaling.${key}`);
    return v;
  };
  const factor = num('factor');
  const lowFreqFactor = num('low_freq_factor');
  const highFreqFactor = num('high_freq_factor');
  if (highFreqFactor <= lowFreqFactor) fail(`"rope_scaling.high_freq_factor" (${highFreqFactor}) must exceed "low_freq_factor" (${lowFreqFactor})`, 'rope_scaling.high_freq_factor');
  const originalMaxPositions = num('original_max_position_embeddings');
  if (!Number.isSafeInteger(originalMaxPositions)) fail(`"rope_scaling.original_max_position_embeddings" must be an integer, got ${originalMaxPositions}`, 'rope_scaling.original_max_position_embeddings');
  return { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositions };
}

/** Reads and validates `<dir>/config.json`. */
export async function loadModelConfig(dir: string): Promise<ModelConfig> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new LangneuronsError('E_CONFIG', `config.json: cannot read ${file}: ${describeError(err)}`, { file, cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LangneuronsError('E_CONFIG', `config.json: invalid JSON in ${file}: ${describeError(err)}`, { file, cause: err });
  }
  return parseModelConfig(json, file);
}

/** Refuses a sequence the engine cannot compute exactly (longer than the sliding window). */
export function assertSequenceFits(config: ModelConfig, tokens: number): void {
  if (config.slidingWindow !== null && tokens > config.slidingWindow) {
    throw new LangneuronsError('E_CONFIG', `sequence of ${tokens} tokens exceeds the model's sliding_window of ${config.slidingWindow}; sliding-window attention is not implemented, so only sequences up to the window are exact`, { field: 'sliding_window' });
  }
}
