/**
 * Opens a Hugging Face checkpoint directory: config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json. Builds one tensor table across files and checks it against the
 * config, so the engine can map byte ranges without re-validating anything.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';
import { elementCount, readSafetensorsHeader, type Dtype, type TensorInfo } from '../io/safetensors.js';
import { loadModelConfig, type ModelConfig } from './config.js';

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  tensors: Map<string, TensorInfo>;
  /** Absolute paths of the safetensors files, in the order they were read. */
  files: string[];
  /** Bytes of tensor data across all files (what gets mmapped). */
  totalBytes: number;
  /** Number of tensors per dtype. */
  dtypeCounts: Partial<Record<Dtype, number>>;
  /** Parameters the model uses (a stored-but-tied lm_head.weight is not counted). */
  parameterCount: number;
  /** Harmless facts worth logging (e.g. tied checkpoint still stores lm_head.weight). */
  notes: string[];
  /**
   * The dtypes of the model this one was merged from, for the tensors a merge widened to float32 (`delta apply
   * --dtype f32`: recorded in the file's metadata, BASE_DTYPES_KEY): the model's identity is its base's, so that
   * the base's masks and statistics apply to it as they do to a merge in the stored dtype.
   */
  baseDtypes?: Map<string, Dtype>;
  /** Safetensors layout warnings (uncovered bytes) and config warnings. */
  warnings: string[];
}

export const WEIGHT_DTYPES: readonly Dtype[] = ['F32', 'F16', 'BF16'];

/** Tensors that some exporters leave in checkpoints and that carry no parameters we need. */
const HARMLESS_EXTRA = [/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/, /^model\.rotary_emb\.inv_freq$/];

/** Every parameter the model needs, with its Hugging Face name and [out, in] shape. */
export function expectedTensors(config: ModelConfig): ExpectedTensor[] {
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, vocabSize } = config;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocabSize, h] }];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [h] });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [q, h] });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kv, h] });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kv, h] });
    if (config.qkvBias) {
      out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [q] });
      out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kv] });
      out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kv] });
    }
    if (config.qkNorm) {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [headDim] });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [headDim] });
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [h, q] });
    // Cohere's parallel block has one norm per layer; Gemma 2 has four (post_attention_layernorm is the norm of
    // the attention output there, pre_feedforward_layernorm the FFN's input norm).
    if (!config.parallelBlock) out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [h] });
    if (config.postNorms) {
      out.push({ name: `${p}.pre_feedforward_layernorm.weight`, shape: [h] });
      out.push({ name: `${p}.post_feedforward_layernorm.weight`, shape: [h] });
    }
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [inter, h] });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [inter, h] });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [h, inter] });
  }
  out.push({ name: 'model.norm.weight', shape: [h] });
  if (!config.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [vocabSize, h] });
  return out;
}

function fail(file: string, message: string, field?: string): never {
  throw new LangneuronsError('E_CHECKPOINT', message, { file, ...(field === undefined ? {} : { field }) });
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await fsp.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** How a Git LFS pointer file begins (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md). */
const LFS_POINTER_START = 'version https://git-lfs.github.com/spec/';

/** The header of a weight file, after refusing a Git LFS pointer (a repository cloned without git-lfs) by name: read
 *  as safetensors, its text makes a length field of ~2e18 bytes, which names neither the cause nor the remedy. */
async function readWeightHeader(file: string): ReturnType<typeof readSafetensorsHeader> {
  const start = Buffer.alloc(LFS_POINTER_START.length);
  const fh = await fsp.open(file, 'r').catch(() => null);
  if (fh) {
    try {
      await fh.read(start, 0, start.length, 0);
    } finally {
      await fh.close();
    }
    if (start.toString('latin1') === LFS_POINTER_START)
      fail(file, `${path.basename(file)}: is a Git LFS pointer, not the weights (the repository was cloned without git-lfs): run \`git lfs pull\` in ${path.dirname(file)}, or download the model with \`hf download\``);
  }
  return readSafetensorsHeader(file);
}

const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;
const listNames = (names: string[], max = 8) =>
  names.slice(0, max).map((n) => JSON.stringify(n)).join(', ') + (names.length > max ? ` and ${names.length - max} more` : '');

/** Reads the index, validates it, and returns tensor name -> absolute shard path. */
async function readIndex(dir: string, indexFile: string): Promise<Map<string, string>> {
  const base = path.basename(indexFile);
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(indexFile, 'utf8'));
  } catch (err) {
    fail(indexFile, `${base}: cannot parse: ${describeError(err)}`);
  }
  const weightMap = (json as Record<string, unknown> | null)?.['weight_map'];
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    fail(indexFile, `${base}: expected an object with a "weight_map" object (tensor name -> shard file)`, 'weight_map');
  }
  const map = new Map<string, string>();
  const root = path.resolve(dir);
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '') fail(indexFile, `${base}: weight_map[${JSON.stringify(name)}] must be a shard file name, got ${JSON.stringify(shard)}`, 'weight_map');
    const resolved = path.resolve(root, shard);
    if (path.dirname(resolved) !== root) {
      fail(indexFile, `${base}: weight_map[${JSON.stringify(name)}] = ${JSON.stringify(shard)} points outside the checkpoint directory`, 'weight_map');
    }
    map.set(name, resolved);
  }
  if (map.size === 0) fail(indexFile, `${base}: "weight_map" is empty`, 'weight_map');
  return map;
}

/** Opens and validates a checkpoint directory. */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const config = await loadModelConfig(dir);
  const single = path.resolve(dir, 'model.safetensors');
  const indexFile = path.resolve(dir, 'model.safetensors.index.json');
  const tensors = new Map<string, TensorInfo>();
  const files: string[] = [];
  const warnings: string[] = [...config.warnings];
  const notes: string[] = [];
  let baseDtypes: Map<string, Dtype> | undefined;

  if (await exists(single)) {
    // A single file wins over an index, as in transformers.
    const header = await readWeightHeader(single);
    files.push(single);
    warnings.push(...header.warnings);
    for (const t of header.tensors) tensors.set(t.name, t);
    baseDtypes = readBaseDtypes(header, tensors);
  } else if (await exists(indexFile)) {
    const weightMap = await readIndex(dir, indexFile);
    const base = path.basename(indexFile);
    const shards = [...new Set(weightMap.values())];
    for (const shard of shards) {
      if (!(await exists(shard))) fail(indexFile, `${base}: shard ${JSON.stringify(path.basename(shard))} listed in weight_map does not exist in ${dir}`, 'weight_map');
    }
    const headers = [];
    for (const shard of shards) {
      const header = await readWeightHeader(shard);
      files.push(shard);
      warnings.push(...header.warnings);
      headers.push(header);
    }
    // Duplicates first: a tensor in two shards makes any mapping check below misleading.
    const seenIn = new Map<string, string>();
    for (const header of headers) {
      for (const t of header.tensors) {
        const other = seenIn.get(t.name);
        if (other) fail(header.file, `tensor ${JSON.stringify(t.name)} is stored in two shards: ${path.basename(other)} and ${path.basename(header.file)}`, t.name);
        seenIn.set(t.name, header.file);
      }
    }
    for (const header of headers) {
      const shard = header.file;
      for (const t of header.tensors) {
        const mapped = weightMap.get(t.name);
        if (mapped === undefined) fail(indexFile, `${base}: tensor ${JSON.stringify(t.name)} in ${path.basename(shard)} is not listed in weight_map`, t.name);
        if (mapped !== shard) fail(indexFile, `${base}: maps ${JSON.stringify(t.name)} to ${path.basename(mapped)}, but it is stored in ${path.basename(shard)}`, t.name);
        tensors.set(t.name, t);
      }
    }
    for (const [name, shard] of weightMap) {
      if (!tensors.has(name)) fail(shard, `${base}: tensor ${JSON.stringify(name)} is mapped to ${path.basename(shard)}, which does not contain it`, name);
    }
  } else {
    const hasBin = (await exists(path.join(dir, 'pytorch_model.bin'))) || (await exists(path.join(dir, 'pytorch_model.bin.index.json')));
    fail(dir, `${dir}: no model.safetensors or model.safetensors.index.json found` + (hasBin ? ' (pytorch_model.bin is not supported: convert it to safetensors)' : ''));
  }

  const parameterCount = checkAgainstConfig(config, tensors, files, notes);
  let totalBytes = 0;
  const dtypeCounts: Partial<Record<Dtype, number>> = {};
  for (const t of tensors.values()) {
    totalBytes += t.byteLength;
    dtypeCounts[t.dtype] = (dtypeCounts[t.dtype] ?? 0) + 1;
  }
  return { dir: path.resolve(dir), config, tensors, files, totalBytes, dtypeCounts, parameterCount, notes, warnings, ...(baseDtypes ? { baseDtypes } : {}) };
}

/** The metadata key of a merge's widened tensors: JSON { tensor name: its dtype in the base model }. */
export const BASE_DTYPES_KEY = 'langneurons_base_dtypes';

/** A merge's record of widened tensors, kept only where it holds: an F32 tensor of this file, from BF16 or F16. */
function readBaseDtypes(header: { file: string; metadata: Record<string, string> | null }, tensors: Map<string, TensorInfo>): Map<string, Dtype> | undefined {
  const text = header.metadata?.[BASE_DTYPES_KEY];
  if (text === undefined) return undefined;
  let raw: unknown;
  try { raw = JSON.parse(text); } catch { fail(header.file, `metadata ${BASE_DTYPES_KEY} is not JSON`, BASE_DTYPES_KEY); }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(header.file, `metadata ${BASE_DTYPES_KEY} must map tensor names to dtypes`, BASE_DTYPES_KEY);
  const out = new Map<string, Dtype>();
  for (const [name, dtype] of Object.entries(raw as Record<string, unknown>)) {
    if ((dtype !== 'BF16' && dtype !== 'F16') || tensors.get(name)?.dtype !== 'F32')
      fail(header.file, `metadata ${BASE_DTYPES_KEY}: ${JSON.stringify(name)} is not an F32 tensor widened from BF16 or F16`, BASE_DTYPES_KEY);
    out.set(name, dtype);
  }
  return out;
}

/**
 * The config's layer count bounded by the layers the tensors hold, before anything is sized by it: a config saying
 * 1e9 layers must fail in milliseconds, not after listing (and allocating for) a billion layers' tensors.
 */
function checkLayerCount(config: ModelConfig, tensors: Map<string, TensorInfo>, files: string[]): void {
  let held = 0;
  for (const name of tensors.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) held = Math.max(held, Number(m[1]) + 1);
  }
  if (config.numLayers > held)
    fail(files[0] ?? '', `config.json: num_hidden_layers is ${config.numLayers} but the checkpoint's tensors hold ${held} layer(s) (${files.map((f) => path.basename(f)).join(', ')}); the config does not belong to these weights`, 'num_hidden_layers');
}

/** Missing / misshaped / wrong-dtype / unexplained tensors are errors. Returns the parameter count. */
function checkAgainstConfig(config: ModelConfig, tensors: Map<string, TensorInfo>, files: string[], notes: string[]): number {
  checkLayerCount(config, tensors, files);
  const expected = expectedTensors(config);
  const missing: string[] = [];
  let parameters = 0;
  for (const e of expected) {
    const t = tensors.get(e.name);
    if (!t) {
      missing.push(e.name);
      continue;
    }
    checkWeight(t, e.shape);
    parameters += elementCount(t.shape);
  }
  if (missing.length > 0) {
    fail(files[0] ?? '', `${files.map((f) => path.basename(f)).join(', ')}: checkpoint is missing ${missing.length} tensor(s) required by config.json (${config.modelType}, ${config.numLayers} layers): ${listNames(missing)}`, missing[0]);
  }
  const expectedNames = new Set(expected.map((e) => e.name));
  const extras: string[] = [];
  for (const [name, t] of tensors) {
    if (expectedNames.has(name)) continue;
    if (name === 'lm_head.weight' && config.tieWordEmbeddings) {
      checkWeight(t, [config.vocabSize, config.hiddenSize]);
      notes.push('tie_word_embeddings is true but the checkpoint also stores lm_head.weight; it is ignored (the embedding is used)');
      continue;
    }
    if (HARMLESS_EXTRA.some((re) => re.test(name))) continue;
    extras.push(name);
  }
  if (extras.length > 0) {
    const first = tensors.get(extras[0]!)!;
    fail(first.file, `${path.basename(first.file)}: ${extras.length} tensor(s) not used by a ${config.modelType} model with this config.json: ${listNames(extras)}`, extras[0]);
  }
  return parameters;
}

function checkWeight(t: TensorInfo, shape: number[]): void {
  const base = path.basename(t.file);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    fail(t.file, `${base}: tensor ${JSON.stringify(t.name)} has shape ${shapeText(t.shape)}, expected ${shapeText(shape)} from config.json`, t.name);
  }
  if (!WEIGHT_DTYPES.includes(t.dtype)) {
    fail(t.file, `${base}: tensor ${JSON.stringify(t.name)} has dtype ${t.dtype}; weights must be F32, F16 or BF16`, t.name);
  }
}

export interface MemoryEstimate {
  /** Weight bytes as stored (mmapped, not copied): from the checkpoint, else parameters x dtype size. */
  weightBytes: number;
  /** float32 K and V for every layer: 2 * layers * kvHeads * headDim * 4. */
  kvCacheBytesPerToken: number;
  /** kvCacheBytesPerToken * contextTokens. */
  kvCacheBytes: number;
  /**
   * The engine's float32 scratch for one forward over `batchTokens` tokens (native/src/model/forward_state.h;
   * `model.info().scratchBytes` reports the real figure after a run): residual and normed input (2 * hidden),
   * queries and attention output (2 * heads * headDim), keys and values (2 * kvHeads * headDim), gate and up
   * (2 * intermediate) per token; one row of attention probabilities per thread (contextTokens each); the LM
   * head's 64-row output chunk (64 * vocab) and its gathered inputs (up to 64 * hidden) and the RoPE tables (contextTokens * headDim);
   * Cohere's parallel block keeps the normed input for the FFN (one more hidden per token).
   * Full logits returned with 'all' (batchTokens * vocab) come on top and are not counted.
   */
  activationBytes: number;
  /** weightBytes + kvCacheBytes + activationBytes. */
  totalBytes: number;
}

const BYTES_PER_TORCH_DTYPE: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 };
const LM_HEAD_CHUNK_ROWS = 64;

/** Memory budget for running a model; see MemoryEstimate for what each figure counts. */
export function estimateMemory(
  config: ModelConfig,
  options: { weightBytes?: number; batchTokens?: number; contextTokens?: number; threads?: number } = {},
): MemoryEstimate {
  if (!config || typeof config.hiddenSize !== 'number' || typeof config.numLayers !== 'number')
    throw new LangneuronsError('E_OPTIONS', 'estimateMemory takes a ModelConfig (checkpoint.config, or loadModelConfig(dir)), not a checkpoint or a folder');
  // A public function: a wrong value is a message naming it (as loadModel's options), not a negative or NaN estimate.
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new LangneuronsError('E_OPTIONS', `estimateMemory: options must be an object ({ batchTokens, contextTokens, threads, weightBytes }), got ${Array.isArray(options) ? 'an array' : String(options)}`);
  const int = (name: 'batchTokens' | 'contextTokens' | 'threads', v: unknown, max: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max)
      throw new LangneuronsError('E_OPTIONS', `estimateMemory: ${name} must be an integer in [1, ${max}], got ${typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v)}`, { field: name });
    return v;
  };
  const batchTokens = int('batchTokens', options.batchTokens ?? 1, Number.MAX_SAFE_INTEGER);
  const contextTokens = int('contextTokens', options.contextTokens ?? batchTokens, Number.MAX_SAFE_INTEGER);
  const threads = int('threads', options.threads ?? 1, 1024);
  const wb = options.weightBytes;
  if (wb !== undefined && (typeof wb !== 'number' || !Number.isSafeInteger(wb) || wb < 0))
    throw new LangneuronsError('E_OPTIONS', `estimateMemory: weightBytes must be an integer >= 0, got ${typeof wb === 'number' ? String(wb) : JSON.stringify(wb) ?? String(wb)}`, { field: 'weightBytes' });
  const parameters = expectedTensors(config).reduce((n, e) => n + elementCount(e.shape), 0);
  const weightBytes = options.weightBytes ?? parameters * (BYTES_PER_TORCH_DTYPE[config.torchDtype ?? ''] ?? 4);
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, numLayers, vocabSize } = config;
  const kvCacheBytesPerToken = 2 * numLayers * numKvHeads * headDim * 4;
  const kvCacheBytes = kvCacheBytesPerToken * contextTokens;
  const perToken = (config.parallelBlock ? 3 : 2) * h + 2 * numHeads * headDim + 2 * numKvHeads * headDim + 2 * inter;
  const lmRows = Math.min(batchTokens, LM_HEAD_CHUNK_ROWS);
  const activationBytes = 4 * (batchTokens * perToken + threads * contextTokens + LM_HEAD_CHUNK_ROWS * vocabSize + lmRows * h + contextTokens * headDim);
  return { weightBytes, kvCacheBytesPerToken, kvCacheBytes, activationBytes, totalBytes: weightBytes + kvCacheBytes + activationBytes };
}


export interface DeviceMemoryEstimate {
  /** Matrices as the GPU runtime holds them (bf16: 2 bytes each, the stored BF16 kept and F16/F32 rounded; f32:
   *  4 bytes), plus the 1-D tensors (norms, biases) as float32. */
  weightBytes: number;
  /** K and V per token and layer in the compute dtype (bf16: 2 bytes, f32: 4). */
  kvCacheBytesPerToken: number;
  kvCacheBytes: number;
  /** Activation buffers of one forward over `batchTokens` tokens: residual and normed input (f32) and its bf16
   *  copy, q/k/v and the attention output, gate and up (f32) and h (the down product's input), the LM head's
   *  chunk of logits; statistics partials are counted under scratch by the runtime, not here. */
  activationBytes: number;
  totalBytes: number;
}

/** What the CUDA runtime needs on the device (see native/src/runtime/cuda_runtime.h), for `info --device cuda`. */
export function estimateDeviceMemory(
  config: ModelConfig,
  options: { compute: 'f32' | 'bf16'; batchTokens?: number; contextTokens?: number },
): DeviceMemoryEstimate {
  const batchTokens = options.batchTokens ?? 1;
  const contextTokens = options.contextTokens ?? batchTokens;
  const el = options.compute === 'bf16' ? 2 : 4;
  let weightBytes = 0;
  for (const e of expectedTensors(config)) weightBytes += elementCount(e.shape) * (e.shape.length === 1 ? 4 : el);
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, numLayers, vocabSize } = config;
  const kvCacheBytesPerToken = 2 * numLayers * numKvHeads * headDim * el;
  const qd = numHeads * headDim, kvd = numKvHeads * headDim;
  const perToken = 4 * (2 * h) + el * h + 4 * (2 * qd + 2 * kvd) + el * (2 * qd + 2 * kvd) + 4 * (2 * inter) + el * inter +
    (config.parallelBlock ? el * h : 0);  // Cohere: the layer's normed input, kept for the FFN
  const activationBytes = batchTokens * perToken + 4 * LM_HEAD_CHUNK_ROWS * vocabSize;
  const kvCacheBytes = kvCacheBytesPerToken * contextTokens;
  return { weightBytes, kvCacheBytesPerToken, kvCacheBytes, activationBytes, totalBytes: weightBytes + kvCacheBytes + activationBytes };
}
