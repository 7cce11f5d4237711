// Random initialization of a small Llama-architecture model as a Hugging Face checkpoint folder (config.json +
// model.safetensors), the way transformers initializes LlamaForCausalLM: every linear and embedding weight drawn from
// normal(0, initializerRange), RMSNorm weights 1. Optionally (scaleResidual, GPT-2 style) the projections that write
// into the residual stream (o_proj, down_proj) use initializerRange / sqrt(2 * layers). Seeded: the same options give
// the same bytes.
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDir } from '../io/outdir.js';
import { f32ToBf16 } from '../io/float16.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { seededRandom } from '../identify/mask-ops.js';

export interface LlamaShape {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  /** max_position_embeddings (default 1024). */
  context?: number;
}

export interface InitOptions extends LlamaShape {
  seed: number;
  /** Standard deviation of the weights (default 0.02, transformers' initializer_range). */
  initializerRange?: number;
  /** o_proj / down_proj std divided by sqrt(2 * layers) (default true). */
  scaleResidual?: boolean;
  tieEmbeddings?: boolean;
  dtype?: 'F32' | 'BF16';
  bosTokenId: number;
  eosTokenId: number;
  ropeTheta?: number;
}

function shapeErr(msg: string, field: string): never {
  throw new LangneuronsError('E_OPTIONS', msg, { field });
}

export function checkShape(s: LlamaShape): void {
  for (const [k, flag] of [['layers', 'layers'], ['hidden', 'hidden'], ['heads', 'heads'], ['kvHeads', 'kv-heads'], ['ffn', 'ffn'], ['vocab', 'vocab']] as const) {
    const v = s[k];
    if (!Number.isSafeInteger(v) || v <= 0) shapeErr(`--${flag} must be a positive integer, got ${String(v)}`, flag);
  }
  if (s.hidden % s.heads !== 0) shapeErr(`--hidden (${s.hidden}) must be a multiple of --heads (${s.heads})`, 'hidden');
  if ((s.hidden / s.heads) % 2 !== 0) shapeErr(`head dimension ${s.hidden / s.heads} (--hidden / --heads) must be even for rotary embeddings`, 'heads');
  if (s.heads % s.kvHeads !== 0) shapeErr(`--heads (${s.heads}) must be a multiple of --kv-heads (${s.kvHeads})`, 'kv-heads');
}

/** Parameter count of a Llama shape (tied embeddings: no separate LM head). */
export function parameterCount(s: LlamaShape, tied = true): number {
  const hd = s.hidden / s.heads;
  const perLayer = 2 * s.hidden + 2 * s.hidden * s.hidden + 2 * s.hidden * s.kvHeads * hd + 3 * s.hidden * s.ffn;
  return s.vocab * s.hidden * (tied ? 1 : 2) + s.hidden + s.layers * perLayer;
}

/** A normal(0, std) sampler on the project's seeded PRNG (Box-Muller). */
export function normalSampler(seed: number): (std: number) => number {
  const r = seededRandom(seed);
  let spare: number | null = null;
  return (std) => {
    if (spare !== null) { const z = spare; spare = null; return z * std; }
    let u = 0;
    while (u === 0) u = r();
    const v = r(), m = Math.sqrt(-2 * Math.log(u));
    spare = m * Math.sin(2 * Math.PI * v);
    return m * Math.cos(2 * Math.PI * v) * std;
  };
}

export function llamaConfigJson(o: InitOptions): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: o.hidden,
    intermediate_size: o.ffn,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    head_dim: o.hidden / o.heads,
    vocab_size: o.vocab,
    max_position_embeddings: o.context ?? 1024,
    rms_norm_eps: 1e-5,
    rope_theta: o.ropeTheta ?? 10000,
    rope_scaling: null,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: o.tieEmbeddings ?? true,
    initializer_range: o.initializerRange ?? 0.02,
    bos_token_id: o.bosTokenId,
    eos_token_id: o.eosTokenId,
    torch_dtype: (o.dtype ?? 'F32') === 'BF16' ? 'bfloat16' : 'float32',
  };
}

/** The tensors of a freshly initialized model, in a fixed order (the order fixes the random stream). */
export function initTensors(o: InitOptions): Record<string, TensorToWrite> {
  checkShape(o);
  const std = o.initializerRange ?? 0.02;
  const residualStd = (o.scaleResidual ?? true) ? std / Math.sqrt(2 * o.layers) : std;
  const normal = normalSampler(o.seed);
  const dtype = o.dtype ?? 'F32';
  const out: Record<string, TensorToWrite> = {};
  const tensor = (name: string, shape: number[], fill: () => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = fill();
    out[name] = dtype === 'F32' ? { dtype, shape, data: f } : { dtype, shape, data: Uint16Array.from(f, (x) => f32ToBf16(x)) };
  };
  const d = o.hidden, kv = o.kvHeads * (o.hidden / o.heads);
  tensor('model.embed_tokens.weight', [o.vocab, d], () => normal(std));
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}.`;
    tensor(`${p}input_layernorm.weight`, [d], () => 1);
    tensor(`${p}self_attn.q_proj.weight`, [d, d], () => normal(std));
    tensor(`${p}self_attn.k_proj.weight`, [kv, d], () => normal(std));
    tensor(`${p}self_attn.v_proj.weight`, [kv, d], () => normal(std));
    tensor(`${p}self_attn.o_proj.weight`, [d, d], () => normal(residualStd));
    tensor(`${p}post_attention_layernorm.weight`, [d], () => 1);
    tensor(`${p}mlp.gate_proj.weight`, [o.ffn, d], () => normal(std));
    tensor(`${p}mlp.up_proj.weight`, [o.ffn, d], () => normal(std));
    tensor(`${p}mlp.down_proj.weight`, [d, o.ffn], () => normal(residualStd));
  }
  tensor('model.norm.weight', [d], () => 1);
  if (!(o.tieEmbeddings ?? true)) tensor('lm_head.weight', [o.vocab, d], () => normal(std));
  return out;
}

/** Writes config.json and model.safetensors of a freshly initialized model into dir. */
export async function initModel(dir: string, o: InitOptions): Promise<void> {
  const tensors = initTensors(o);
  await ensureOutputDir(dir);
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(llamaConfigJson(o), null, 2) + '\n');
}
