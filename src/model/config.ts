/**
 * Hugging Face config.json -> a validated ModelConfig for the Llama family and its relatives (llama, mistral,
 * qwen2, qwen3, gemma2, cohere).
 *
 * Anything the engine does not implement is refused with the reason, rather than silently computing
 * the wrong function: other architectures, activations other than SiLU (GELU-tanh for Gemma 2), rope
 * scalings other than llama3 / yarn / linear / dynamic, o_proj / MLP biases, quantized checkpoints.
 *
 * Sliding windows: Mistral's (every layer) and Gemma 2's (even layers) are computed by the engine for any
 * length (`slidingWindow`, `slidingPeriod`). Qwen2/Qwen3's use_sliding_window (which transformers applies
 * differently in its eager and flash paths, from max_window_layers on) is accepted with a warning and
 * sequences longer than the window are refused (`exactUpTo`, `assertSequenceFits`). A `layer_types` list
 * (written by transformers >= 4.53) is read where transformers reads it and checked against these patterns
 * (`parseLayerTypes`).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';

export type ModelType = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma2' | 'cohere';
const SUPPORTED_TYPES: readonly ModelType[] = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'cohere'];

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface YarnRopeScaling {
  type: 'yarn';
  factor: number;
  originalMaxPositions: number;
  /** cos and sin are multiplied by it (default 0.1 ln(factor) + 1). */
  attentionFactor: number;
  betaFast: number;
  betaSlow: number;
}

/** linear: every frequency / factor. dynamic: the identity within max_position_embeddings (all the engine runs). */
export interface SimpleRopeScaling {
  type: 'linear' | 'dynamic';
  factor: number;
}

export type RopeScaling = Llama3RopeScaling | YarnRopeScaling | SimpleRopeScaling;

/** The parts of a family that differ from Llama (all off / 1 for llama, mistral, qwen2). */
export interface FamilyFeatures {
  /** rms: w·x/rms(x); rms1p (Gemma): (1+w)·x/rms(x); layer (Cohere): w·(x−mean)/std(x), no bias. */
  norm: 'rms' | 'rms1p' | 'layer';
  /** Qwen3: RMSNorm of each head's q and k before RoPE. */
  qkNorm: boolean;
  /** Cohere: h + attn(norm h) + mlp(norm h), one norm per layer. */
  parallelBlock: boolean;
  /** Gemma 2: norms on the attention and MLP outputs before the residual add. */
  postNorms: boolean;
  /** Cohere: RoPE on pairs (2i, 2i+1). */
  ropeInterleaved: boolean;
  /** Gemma: embeddings × sqrt(hidden_size). */
  embedScale: number;
  /** Gemma 2: query_pre_attn_scalar (scores × its −1/2 power); null: head_dim. */
  queryPreAttnScalar: number | null;
  /** Gemma 2: soft-capping of attention scores and final logits (0: none). */
  attnSoftcap: number;
  finalSoftcap: number;
  /** Cohere: logits × logit_scale. */
  logitScale: number;
  /** Layers l with l % slidingPeriod == 0 use slidingWindow (1: every layer, 2: the even layers, Gemma 2's default;
   *  config.json's layer_types may ask for either, or for none). */
  slidingPeriod: number;
}

export interface ModelConfig extends FamilyFeatures {
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
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (always for qwen2). o_proj never does here. */
  qkvBias: boolean;
  /** The gated MLP's activation: down(act(gate(x)) * up(x)). */
  hiddenAct: 'silu' | 'gelu_pytorch_tanh';
  bosTokenId: number | null;
  eosTokenIds: number[];
  torchDtype: string | null;
  /** Sliding attention window the engine applies (mistral, gemma2), or null for full attention. */
  slidingWindow: number | null;
  /** A window the engine does not apply (qwen2/qwen3 use_sliding_window): longer sequences are refused. */
  exactUpTo: number | null;
  /** Accepted-but-noteworthy settings, for logs. */
  warnings: string[];
}

/** Architectures we recognise but do not implement, and why. */
const REFUSED_MODEL_TYPES: Record<string, string> = {
  gemma: 'Gemma uses RMSNorm with (1 + weight), GELU activations and scales embeddings by sqrt(hidden_size); not implemented',
  gemma3: 'Gemma 3 uses (1 + weight) norms, GELU, embedding scaling, q/k norms and local/global attention; not implemented',
  gemma3_text: 'Gemma 3 uses (1 + weight) norms, GELU, embedding scaling, q/k norms and local/global attention; not implemented',
  qwen3_moe: 'Qwen3-MoE is a mixture of experts with q/k norms; not implemented',
  qwen2_moe: 'Qwen2-MoE is a mixture of experts; not implemented',
  mixtral: 'Mixtral is a mixture of experts (no single MLP per layer to profile); not implemented',
  phi3: 'Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj; not implemented',
  phi: 'Phi uses LayerNorm, GELU and a parallel attention/MLP block; not implemented',
  olmo: 'OLMo uses non-parametric LayerNorm; not implemented',
  olmo2: 'OLMo 2 normalises after attention/MLP and applies q/k norms; not implemented',
  cohere2: 'Cohere 2 (Command R7B) interleaves sliding-window layers without RoPE on its global layers; not implemented',
  deepseek_v2: 'DeepSeek-V2 uses multi-head latent attention and MoE; not implemented',
  deepseek_v3: 'DeepSeek-V3 uses multi-head latent attention and MoE; not implemented',
  falcon: 'Falcon uses LayerNorm, GELU and a parallel block; not implemented',
  gpt2: 'GPT-2 uses LayerNorm, GELU and learned positions; not implemented',
  gpt_neox: 'GPT-NeoX uses LayerNorm, GELU and partial rotary; not implemented',
  starcoder2: 'StarCoder2 uses LayerNorm, GELU and biases everywhere; not implemented',
  granite: 'Granite scales embeddings, residuals, attention and logits with extra multipliers; not implemented',
  llama4: 'Llama 4 is a mixture of experts with chunked attention; not implemented',
};

const OTHER_ROPE_TYPES = ['longrope', 'su', 'mrope'];

/** Defaults of transformers' config classes where a field is optional. */
const DEFAULT_MAX_POSITIONS: Record<ModelType, number> = { llama: 2048, mistral: 131072, qwen2: 32768, qwen3: 32768, gemma2: 8192, cohere: 8192 };
/** num_key_value_heads when config.json has none: MistralConfig and Gemma2Config default it, the others take num_attention_heads. */
const DEFAULT_KV_HEADS: Partial<Record<ModelType, number>> = { mistral: 8, gemma2: 4 };
/** sliding_window when config.json has none (MistralConfig, Qwen2Config, Qwen3Config, Gemma2Config); for Mistral and
 *  Qwen an explicit null is no window (Mistral v0.2 and later, Nemo). */
const DEFAULT_SLIDING_WINDOW = 4096;
/** max_window_layers when config.json has none (Qwen2Config, Qwen3Config): layers from it on slide. */
const DEFAULT_MAX_WINDOW_LAYERS = 28;
/** head_dim when config.json has none: Gemma2Config and Qwen3Config default it, the others derive it. */
const DEFAULT_HEAD_DIM: Partial<Record<ModelType, number>> = { gemma2: 256, qwen3: 128 };
/** tie_word_embeddings when config.json has none. */
const DEFAULT_TIED: Record<ModelType, boolean> = { llama: false, mistral: false, qwen2: false, qwen3: false, gemma2: true, cohere: true };

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
  if (typeof rawType !== 'string') return fail(`"model_type" is missing; expected one of ${SUPPORTED_TYPES.join(', ')}`, 'model_type');
  if (!(SUPPORTED_TYPES as readonly string[]).includes(rawType)) {
    const reason = REFUSED_MODEL_TYPES[rawType] ?? 'unknown architecture';
    return fail(`model_type "${rawType}" is not supported (${reason}); supported: ${SUPPORTED_TYPES.join(', ')}`, 'model_type');
  }
  const modelType = rawType as ModelType;
  const warnings: string[] = [];

  if (has('quantization_config')) fail('"quantization_config" is set: quantized checkpoints are not supported (F32/F16/BF16 weights only)', 'quantization_config');

  const hiddenSize = positiveInt('hidden_size');
  const intermediateSize = positiveInt('intermediate_size');
  const numLayers = positiveInt('num_hidden_layers');
  const numHeads = positiveInt('num_attention_heads');
  const numKvHeads = positiveInt('num_key_value_heads', DEFAULT_KV_HEADS[modelType] ?? numHeads);
  if (numHeads % numKvHeads !== 0) fail(`"num_attention_heads" (${numHeads}) must be a multiple of "num_key_value_heads" (${numKvHeads})`, 'num_key_value_heads');
  let headDim: number;
  if (has('head_dim')) headDim = positiveInt('head_dim');
  else if (DEFAULT_HEAD_DIM[modelType] !== undefined) headDim = DEFAULT_HEAD_DIM[modelType]!;
  else {
    if (hiddenSize % numHeads !== 0) fail(`"hidden_size" (${hiddenSize}) is not divisible by "num_attention_heads" (${numHeads}) and no "head_dim" is given`, 'hidden_size');
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) fail(`head dimension ${headDim} must be even for rotary embeddings`, 'head_dim');
  const vocabSize = positiveInt('vocab_size');
  let maxPositions = positiveInt('max_position_embeddings', DEFAULT_MAX_POSITIONS[modelType]);
  const rmsNormEps = modelType === 'cohere' ? positiveFinite('layer_norm_eps', 1e-5) : positiveFinite('rms_norm_eps', 1e-6);

  // transformers >= 4.5x may move rope_theta / rope_type into "rope_parameters".
  const ropeParams = c['rope_parameters'];
  const ropeParamsObj = typeof ropeParams === 'object' && ropeParams !== null && !Array.isArray(ropeParams) ? (ropeParams as Record<string, unknown>) : null;
  const ropeTheta = has('rope_theta') ? positiveFinite('rope_theta', 10000) : ropeParamsObj ? positiveFinite('rope_theta', 10000, ropeParamsObj, 'rope_parameters.rope_theta') : 10000;
  const ropeScaling = parseRopeScaling(has('rope_scaling') ? c['rope_scaling'] : ropeParamsObj, maxPositions, fail);
  if (ropeScaling?.type === 'yarn') {
    // YaRN extends the original context by `factor` (Qwen2.5's instructions add rope_scaling and leave
    // max_position_embeddings at the original 32768): the engine accepts positions up to that extended context.
    const extended = Math.round(ropeScaling.originalMaxPositions * ropeScaling.factor);
    const ratio = maxPositions / ropeScaling.originalMaxPositions;
    if (Math.abs(ratio - ropeScaling.factor) > 1e-9)
      warnings.push(`${name}: rope_scaling yarn factor ${ropeScaling.factor} differs from max_position_embeddings / original_max_position_embeddings = ${ratio}; the engine scales by factor (the YaRN paper, vLLM; the two agree when max_position_embeddings = factor × original, as transformers' own YaRN configs write it)`);
    maxPositions = Math.max(maxPositions, extended);
  }

  // Gemma 2 names its activation hidden_activation; Gemma2MLP never reads hidden_act (a legacy field there, which
  // converted checkpoints may set to "gelu" while the model runs GELU-tanh).
  const actKey = modelType === 'gemma2' ? 'hidden_activation' : 'hidden_act';
  const act = c[actKey] ?? (modelType === 'gemma2' ? 'gelu_pytorch_tanh' : 'silu');
  let hiddenAct: ModelConfig['hiddenAct'];
  if (modelType === 'gemma2') {
    if (act !== 'gelu_pytorch_tanh') fail(`"${actKey}" ${JSON.stringify(act)} is not supported for gemma2 (only gelu_pytorch_tanh, the GELU tanh form Gemma 2 is trained with)`, actKey);
    hiddenAct = 'gelu_pytorch_tanh';
  } else {
    if (act !== 'silu' && act !== 'swish') fail(`"hidden_act" ${JSON.stringify(act)} is not supported (only silu: the MLP is down(silu(gate(x)) * up(x)))`, 'hidden_act');
    hiddenAct = 'silu';
  }

  let qkvBias = false;
  if (modelType === 'qwen2') qkvBias = true;
  if (modelType !== 'qwen2' && modelType !== 'mistral') {
    if (bool('attention_bias', false)) fail('"attention_bias": true adds biases to q/k/v and o_proj; an o_proj bias is not implemented', 'attention_bias');
    if (bool('mlp_bias', false)) fail('"mlp_bias": true (biases on gate/up/down projections) is not implemented', 'mlp_bias');
  }
  // transformers >= 5 reads it from rope_parameters (where its configs write it), older versions from the top level.
  const partialRotary: [string, unknown][] = [['partial_rotary_factor', c['partial_rotary_factor']], ['rope_parameters.partial_rotary_factor', ropeParamsObj?.['partial_rotary_factor']]];
  for (const [field, v] of partialRotary)
    if (v !== undefined && v !== null && v !== 1) fail(`"${field}" ${JSON.stringify(v)} (RoPE on part of each head) is not implemented`, field);
  if (modelType === 'cohere' && bool('use_qk_norm', false)) fail('"use_qk_norm": true (Command R+ per-head LayerNorms of q and k) is not implemented', 'use_qk_norm');

  const features: FamilyFeatures = {
    norm: 'rms', qkNorm: false, parallelBlock: false, postNorms: false, ropeInterleaved: false, embedScale: 1,
    queryPreAttnScalar: null, attnSoftcap: 0, finalSoftcap: 0, logitScale: 1, slidingPeriod: 1,
  };
  const optionalCap = (key: string, fallback: number): number => (c[key] === null ? 0 : positiveFinite(key, fallback));
  if (modelType === 'qwen3') features.qkNorm = true;
  if (modelType === 'gemma2') {
    Object.assign(features, {
      norm: 'rms1p', postNorms: true, embedScale: Math.sqrt(hiddenSize),
      queryPreAttnScalar: positiveFinite('query_pre_attn_scalar', 256),
      attnSoftcap: optionalCap('attn_logit_softcapping', 50), finalSoftcap: optionalCap('final_logit_softcapping', 30),
      slidingPeriod: 2,
    });
  }
  if (modelType === 'cohere') {
    Object.assign(features, { norm: 'layer', parallelBlock: true, ropeInterleaved: true, logitScale: positiveFinite('logit_scale', 0.0625) });
  }

  let slidingWindow: number | null = null;
  let exactUpTo: number | null = null;
  // Absent is the config class's default window, not none: transformers runs a Mistral config.json without the
  // field with a 4096-token window.
  const windowSetting = (): number | null =>
    c['sliding_window'] === undefined ? DEFAULT_SLIDING_WINDOW : c['sliding_window'] === null ? null : positiveInt('sliding_window');
  // Per layer, whether config.json's layer_types asks for a sliding window (null: no layer_types, or a family whose
  // transformers code ignores it).
  const sliding = parseLayerTypes(c['layer_types'], modelType, numLayers, fail);
  const slidingList = (s: boolean[]) => layerList(s.flatMap((on, l) => (on ? [l] : [])));
  // Layers marked sliding_attention where no window is set: transformers' attention layers take sliding_window None
  // there, i.e. full attention, which is what the engine computes (its sliding mask builder raises on such a config).
  const noWindow = (why: string) => {
    if (sliding?.includes(true))
      warnings.push(`${name}: "layer_types" marks ${slidingList(sliding)} as sliding_attention, but ${why}: they run full attention, as transformers' attention layers do (its sliding mask builder raises an error on this config)`);
  };
  if (modelType === 'mistral' || modelType === 'gemma2') {
    const w = modelType === 'gemma2' ? positiveInt('sliding_window', DEFAULT_SLIDING_WINDOW) : windowSetting();
    const own = features.slidingPeriod; // the family's pattern: mistral every layer, gemma2 the even layers
    let period = own;
    if (w === null) noWindow('"sliding_window" is null');
    else if (sliding && w < maxPositions) {
      // (A window as long as the context changes nothing, whatever the layers.) A shorter one must be on layers the
      // engine computes: every layer, the even ones, or none.
      const p = engineSlidingPeriod(sliding, own);
      if (p === null) {
        const pattern = modelType === 'gemma2' ? 'Gemma 2\'s alternation (sliding_attention on even layers, full_attention on odd ones)' : 'Mistral\'s sliding_attention on every layer';
        const differ = sliding.flatMap((on, l) => (on !== (l % own === 0) ? [l] : []));
        return fail(`"layer_types" differs from ${pattern} at ${layerList(differ)} (it has sliding_attention on ${slidingList(sliding)}): the engine applies sliding_window ${w} on every layer, on the even layers or on none, not on this pattern`, 'layer_types');
      }
      period = p;
    }
    if (w !== null && w < maxPositions && period > 0) {
      slidingWindow = w;
      features.slidingPeriod = period;
    }
  } else if (modelType === 'qwen2' || modelType === 'qwen3') {
    // Qwen2Config / Qwen3Config set sliding_window to None unless use_sliding_window.
    const useWindow = bool('use_sliding_window', false);
    const w = useWindow ? windowSetting() : null;
    if (w === null) noWindow(useWindow ? '"sliding_window" is null' : '"use_sliding_window" is false, so transformers sets sliding_window to None');
    else if (w < maxPositions && (sliding === null || sliding.includes(true))) {
      // Sequences up to the window are exact whichever layers slide, so any layer pattern is accepted. Without
      // layer_types, transformers (>= 4.53) slides the layers from max_window_layers on; older versions' eager path
      // applied the window on every layer, hence the refusal even where max_window_layers leaves no layer sliding.
      let layers: string;
      if (sliding) layers = `${slidingList(sliding)} (layer_types)`;
      else {
        const from = c['max_window_layers'] ?? DEFAULT_MAX_WINDOW_LAYERS;
        if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 0)
          return fail(`"max_window_layers" must be a non-negative integer, got ${JSON.stringify(from)}`, 'max_window_layers');
        layers = from < numLayers
          ? `${layerList(Array.from({ length: numLayers - from }, (_, i) => from + i))} (from max_window_layers on)`
          : `no layer from max_window_layers ${from} on (older transformers' eager path: every layer)`;
      }
      exactUpTo = w;
      warnings.push(`${name}: use_sliding_window with sliding_window ${w} < max_position_embeddings ${maxPositions} on ${layers}: attention is exact only for sequences of at most ${w} tokens; longer ones are refused`);
    }
  }

  const bosTokenId = has('bos_token_id') ? tokenId(c['bos_token_id'], 'bos_token_id') : null;
  const eosRaw = c['eos_token_id'];
  const eosTokenIds = eosRaw === undefined || eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw.map((v) => tokenId(v, 'eos_token_id')) : [tokenId(eosRaw, 'eos_token_id')];
  const dtypeRaw = c['torch_dtype'] ?? c['dtype'];
  const torchDtype = typeof dtypeRaw === 'string' ? dtypeRaw : null;

  return {
    modelType, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, maxPositions,
    rmsNormEps, ropeTheta, ropeScaling, tieWordEmbeddings: bool('tie_word_embeddings', DEFAULT_TIED[modelType]), qkvBias,
    hiddenAct, bosTokenId, eosTokenIds: [...new Set(eosTokenIds)], torchDtype, slidingWindow, exactUpTo, warnings,
    ...features,
  };
}

/**
 * config.json's `layer_types`, per layer whether it is "sliding_attention", for the families whose transformers code
 * reads it: Qwen2Config, Qwen3Config and Gemma2Config have the field (configuration_qwen2.py, configuration_qwen3.py,
 * configuration_gemma2.py), and their attention layers take `sliding_window` on "sliding_attention" layers only, None
 * on the others (modeling_qwen2.py, modeling_qwen3.py, modeling_gemma2.py); AutoConfig runs a mistral config.json that
 * holds the field as Ministral (configuration_auto.py), whose layers do the same (modeling_ministral.py). LlamaConfig
 * and CohereConfig have no such field: there it is ignored, as transformers ignores it. Null when absent or ignored.
 */
function parseLayerTypes(raw: unknown, modelType: ModelType, numLayers: number, fail: (m: string, f?: string) => never): boolean[] | null {
  if (raw === undefined || raw === null || modelType === 'llama' || modelType === 'cohere') return null;
  const want = `a list of ${numLayers} entries (one per layer, num_hidden_layers), each "full_attention" or "sliding_attention"`;
  if (!Array.isArray(raw)) return fail(`"layer_types" must be ${want}, got ${JSON.stringify(raw)}`, 'layer_types');
  if (raw.length !== numLayers) return fail(`"layer_types" has ${raw.length} entries; expected ${want}`, 'layer_types');
  const bad = raw.findIndex((t) => t !== 'full_attention' && t !== 'sliding_attention');
  if (bad >= 0) return fail(`"layer_types"[${bad}] is ${JSON.stringify(raw[bad])}; expected ${want}`, 'layer_types');
  return raw.map((t) => t === 'sliding_attention');
}

/** The engine's slidingPeriod for these sliding layers: 0 none, 1 every layer, 2 the even ones (the family's own
 *  `preferred` when both fit, as with one layer); null for any other pattern. */
function engineSlidingPeriod(sliding: boolean[], preferred: number): number | null {
  if (!sliding.includes(true)) return 0;
  return [preferred, 1, 2].find((p) => sliding.every((on, l) => on === (l % p === 0))) ?? null;
}

/** Layer indices as ranges: [0, 1, 2, 5] -> "layers 0-2, 5", [3] -> "layer 3" (the first 12 ranges of a longer list). */
function layerList(layers: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < layers.length;) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j]! + 1) j++;
    parts.push(j === i ? String(layers[i]) : `${layers[i]}-${layers[j]}`);
    i = j + 1;
  }
  const ranges = parts.length > 12 ? `${parts.slice(0, 12).join(', ')}, … (${layers.length} layers)` : parts.join(', ');
  return `${layers.length === 1 ? 'layer' : 'layers'} ${ranges}`;
}

function parseRopeScaling(raw: unknown, maxPositions: number, fail: (m: string, f?: string) => never): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) return fail(`"rope_scaling" must be an object or null, got ${JSON.stringify(raw)}`, 'rope_scaling');
  const r = raw as Record<string, unknown>;
  const type = r['rope_type'] ?? r['type'];
  if (type === undefined || type === 'default') return null; // plain RoPE
  if (type !== 'llama3' && type !== 'yarn' && type !== 'linear' && type !== 'dynamic') {
    const known = typeof type === 'string' && OTHER_ROPE_TYPES.includes(type);
    return fail(`rope_scaling type ${JSON.stringify(type)} is ${known ? 'not implemented' : 'unknown'} (supported: llama3, yarn, linear, dynamic; not longrope or mrope)`, 'rope_scaling');
  }
  const num = (key: string, fallback?: number): number => {
    const v = r[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(`"rope_scaling.${key}" must be a finite number > 0, got ${JSON.stringify(v)}`, `rope_scaling.${key}`);
    return v;
  };
  if (type === 'linear' || type === 'dynamic') {
    const factor = num('factor');
    if (factor < 1) fail(`"rope_scaling.factor" must be >= 1, got ${factor}`, 'rope_scaling.factor');
    return { type, factor };
  }
  if (type === 'yarn') {
    const factor = num('factor');
    if (factor < 1) fail(`"rope_scaling.factor" must be >= 1, got ${factor}`, 'rope_scaling.factor');
    const originalMaxPositions = num('original_max_position_embeddings', maxPositions);
    if (!Number.isSafeInteger(originalMaxPositions)) fail(`"rope_scaling.original_max_position_embeddings" must be an integer, got ${originalMaxPositions}`, 'rope_scaling.original_max_position_embeddings');
    if (r['truncate'] === false) fail('"rope_scaling.truncate": false (un-rounded YaRN correction range) is not implemented', 'rope_scaling.truncate');
    const mscale = (f: number, m: number) => (f <= 1 ? 1 : 0.1 * m * Math.log(f) + 1);
    let attentionFactor: number;
    if (r['attention_factor'] !== undefined && r['attention_factor'] !== null) attentionFactor = num('attention_factor');
    else if (r['mscale'] && r['mscale_all_dim']) attentionFactor = mscale(factor, num('mscale')) / mscale(factor, num('mscale_all_dim'));
    else attentionFactor = mscale(factor, 1);
    return { type, factor, originalMaxPositions, attentionFactor, betaFast: num('beta_fast', 32), betaSlow: num('beta_slow', 1) };
  }
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

/** Refuses a sequence the engine cannot compute exactly (qwen2/qwen3 use_sliding_window beyond the window). */
export function assertSequenceFits(config: ModelConfig, tokens: number): void {
  if (config.exactUpTo !== null && tokens > config.exactUpTo) {
    throw new LangneuronsError('E_CONFIG', `sequence of ${tokens} tokens exceeds the model's sliding_window of ${config.exactUpTo}; ${config.modelType}'s use_sliding_window attention is not implemented, so only sequences up to the window are exact`, { field: 'sliding_window' });
  }
}
