// Translates an opened checkpoint (config + tensor byte ranges) into the spec the native engine maps and checks.
import type { Checkpoint } from '../model/checkpoint.js';
import type { ModelConfig } from '../model/config.js';
import type { NativeConfig, NativeModelSpec, NativeTensorSpec } from '../native/addon.js';
import { LangneuronsError } from '../errors.js';

export function nativeConfig(c: ModelConfig): NativeConfig {
  const rs = c.ropeScaling;
  // dynamic scaling is the identity within max_position_embeddings, beyond which the engine refuses positions.
  const ropeType = rs?.type === 'llama3' ? 1 : rs?.type === 'yarn' ? 2 : rs?.type === 'linear' ? 3 : 0;
  return {
    hidden: c.hiddenSize, intermediate: c.intermediateSize, nLayers: c.numLayers, nHeads: c.numHeads,
    nKvHeads: c.numKvHeads, headDim: c.headDim, vocab: c.vocabSize, maxPositions: c.maxPositions,
    rmsEps: c.rmsNormEps, ropeTheta: c.ropeTheta, ropeType,
    ropeFactor: rs?.factor ?? 1,
    ropeLowFreqFactor: rs?.type === 'llama3' ? rs.lowFreqFactor : 1,
    ropeHighFreqFactor: rs?.type === 'llama3' ? rs.highFreqFactor : 4,
    ropeOriginalMaxPositions: rs?.type === 'llama3' || rs?.type === 'yarn' ? rs.originalMaxPositions : 8192,
    ropeAttentionFactor: rs?.type === 'yarn' ? rs.attentionFactor : 1,
    ropeBetaFast: rs?.type === 'yarn' ? rs.betaFast : 32, ropeBetaSlow: rs?.type === 'yarn' ? rs.betaSlow : 1,
    tieEmbeddings: c.tieWordEmbeddings, qkvBias: c.qkvBias,
    norm: c.norm === 'rms' ? 0 : c.norm === 'rms1p' ? 1 : 2, act: c.hiddenAct === 'silu' ? 0 : 1,
    qkNorm: c.qkNorm, parallelBlock: c.parallelBlock, postNorms: c.postNorms, ropeInterleaved: c.ropeInterleaved,
    embedScale: c.embedScale, queryScale: c.queryPreAttnScalar === null ? 0 : 1 / Math.sqrt(c.queryPreAttnScalar),
    attnSoftcap: c.attnSoftcap, finalSoftcap: c.finalSoftcap, logitScale: c.logitScale,
    slidingWindow: c.slidingWindow ?? 0, slidingPeriod: c.slidingPeriod,
  };
}

/** Per-layer Hugging Face parameter names -> native roles for a model type (Gemma 2 names its norms differently). */
export function layerRoles(modelType: ModelConfig['modelType']): Record<string, string> {
  return modelType === 'gemma2' ? GEMMA2_LAYER_ROLES : LAYER_ROLES;
}

// Hugging Face parameter name -> (native role, layer).
const LAYER_ROLES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm',
  'self_attn.q_proj.weight': 'wq', 'self_attn.k_proj.weight': 'wk', 'self_attn.v_proj.weight': 'wv',
  'self_attn.o_proj.weight': 'wo',
  'self_attn.q_proj.bias': 'bq', 'self_attn.k_proj.bias': 'bk', 'self_attn.v_proj.bias': 'bv',
  'post_attention_layernorm.weight': 'ffn_norm',
  'mlp.gate_proj.weight': 'w_gate', 'mlp.up_proj.weight': 'w_up', 'mlp.down_proj.weight': 'w_down',
  'self_attn.q_norm.weight': 'q_norm', 'self_attn.k_norm.weight': 'k_norm',
};
// Gemma 2: post_attention_layernorm is the norm of the attention OUTPUT; the FFN's input norm is
// pre_feedforward_layernorm.
const GEMMA2_LAYER_ROLES: Record<string, string> = {
  ...LAYER_ROLES,
  'post_attention_layernorm.weight': 'attn_post_norm',
  'pre_feedforward_layernorm.weight': 'ffn_norm',
  'post_feedforward_layernorm.weight': 'ffn_post_norm',
};
const GLOBAL_ROLES: Record<string, string> = {
  'model.embed_tokens.weight': 'embed', 'model.norm.weight': 'final_norm', 'lm_head.weight': 'lm_head',
};

export function roleOf(name: string, modelType: ModelConfig['modelType'] = 'llama'): { role: string; layer: number } | null {
  const g = GLOBAL_ROLES[name];
  if (g) return { role: g, layer: -1 };
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) return null;
  const role = layerRoles(modelType)[m[2]!];
  return role ? { role, layer: Number(m[1]) } : null;
}

export function buildNativeSpec(ckpt: Checkpoint, threads: number, compute: 'f32' | 'bf16', device = 'cpu'): NativeModelSpec {
  const files: string[] = [];
  const fileIndex = new Map<string, number>();
  const tensors: NativeTensorSpec[] = [];
  for (const [name, t] of ckpt.tensors) {
    const r = roleOf(name, ckpt.config.modelType);
    if (!r) continue; // harmless extras were vetted by openCheckpoint
    if (r.role === 'lm_head' && ckpt.config.tieWordEmbeddings) continue; // tied: the engine uses the embedding
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16')
      throw new LangneuronsError('E_CHECKPOINT', `${t.file}: tensor "${name}" has dtype ${t.dtype}; weights must be F32, F16 or BF16`, { file: t.file });
    let fi = fileIndex.get(t.file);
    if (fi === undefined) { fi = files.length; files.push(t.file); fileIndex.set(t.file, fi); }
    tensors.push({ role: r.role, layer: r.layer, file: fi, offset: t.byteOffset, nbytes: t.byteLength, dtype: t.dtype, shape: [...t.shape] });
  }
  return { config: nativeConfig(ckpt.config), files, tensors, threads, compute, device };
}
