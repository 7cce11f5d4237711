// Random-weight BF16 checkpoints with real model shapes (Hugging Face names, layouts and config.json), for
// benchmarks. Generated once into a cache directory and reused: deterministic (every tensor has its own seed
// derived from its name), weights ~N(0, 0.02), norms 1.0. The safetensors file is streamed to disk in chunks
// (never held in memory), written to a temporary name and renamed; a stamp file records what was generated so
// a changed shape or generator version regenerates it.
import fs from 'node:fs';
import path from 'node:path';

const GENERATOR_VERSION = 1;
const STD = 0.02;
const BF16_ONE = 0x3f80;
const CHUNK_ELEMS = 8 << 20; // 16 MB of bf16 per write

/** Shapes of public models (random weights): the checkpoints the forward benchmark runs. */
export const MODEL_SHAPES = {
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    tie_word_embeddings: true,
    use_sliding_window: false,
    hidden_act: 'silu',
    bos_token_id: 151643,
    eos_token_id: 151643,
    torch_dtype: 'bfloat16',
  },
  'llama-3.2-1b': {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    vocab_size: 128256,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: 500000.0,
    rope_scaling: { rope_type: 'llama3', factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 },
    tie_word_embeddings: true,
    attention_bias: false,
    mlp_bias: false,
    hidden_act: 'silu',
    bos_token_id: 128000,
    eos_token_id: 128001,
    torch_dtype: 'bfloat16',
  },
};

/** Derived dimensions of a config.json object. */
export function dims(cfg) {
  const H = cfg.hidden_size, I = cfg.intermediate_size, L = cfg.num_hidden_layers, V = cfg.vocab_size;
  const nh = cfg.num_attention_heads, nkv = cfg.num_key_value_heads ?? nh;
  const hd = cfg.head_dim ?? H / nh;
  const qd = nh * hd, kvd = nkv * hd;
  const qkvBias = cfg.model_type === 'qwen2' || cfg.attention_bias === true;
  const tied = cfg.tie_word_embeddings === true;
  // Matmul parameters per layer and in total (the LM head separately).
  const layerMatmul = H * qd + 2 * H * kvd + qd * H + 3 * H * I;
  return { H, I, L, V, nh, nkv, hd, qd, kvd, qkvBias, tied, layerMatmul, lmHead: V * H };
}

/** [name, shape, kind] of every tensor, in file order. kind: 'normal' (~N(0, 0.02)) or 'ones'. */
export function tensorList(cfg) {
  const d = dims(cfg);
  const out = [['model.embed_tokens.weight', [d.V, d.H], 'normal']];
  for (let i = 0; i < d.L; i++) {
    const p = `model.layers.${i}`;
    out.push([`${p}.input_layernorm.weight`, [d.H], 'ones']);
    out.push([`${p}.self_attn.q_proj.weight`, [d.qd, d.H], 'normal']);
    out.push([`${p}.self_attn.k_proj.weight`, [d.kvd, d.H], 'normal']);
    out.push([`${p}.self_attn.v_proj.weight`, [d.kvd, d.H], 'normal']);
    if (d.qkvBias) {
      out.push([`${p}.self_attn.q_proj.bias`, [d.qd], 'normal']);
      out.push([`${p}.self_attn.k_proj.bias`, [d.kvd], 'normal']);
      out.push([`${p}.self_attn.v_proj.bias`, [d.kvd], 'normal']);
    }
    out.push([`${p}.self_attn.o_proj.weight`, [d.H, d.qd], 'normal']);
    out.push([`${p}.post_attention_layernorm.weight`, [d.H], 'ones']);
    out.push([`${p}.mlp.gate_proj.weight`, [d.I, d.H], 'normal']);
    out.push([`${p}.mlp.up_proj.weight`, [d.I, d.H], 'normal']);
    out.push([`${p}.mlp.down_proj.weight`, [d.H, d.I], 'normal']);
  }
  out.push(['model.norm.weight', [d.H], 'ones']);
  if (!d.tied) out.push(['lm_head.weight', [d.V, d.H], 'normal']);
  return out;
}

// ---- deterministic fast random bf16 ------------------------------------------------------------------------

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** splitmix32-style scrambler, so nearby seeds give unrelated streams. */
function mix32(x) {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0 || 1;
}

function f32ToBf16(f) {
  const b = new Float32Array([f]);
  const u = new Uint32Array(b.buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

let normalTable = null;
/** 65536 bf16 samples of N(0, STD) (Box-Muller on a fixed xorshift stream): indexed by 16 random bits. */
function normalBf16Table() {
  if (normalTable) return normalTable;
  const t = new Uint16Array(65536);
  let s = 0x12345678;
  const next = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  for (let i = 0; i < 65536; i += 2) {
    const u1 = next(), u2 = next();
    const r = Math.sqrt(-2 * Math.log(u1)) * STD;
    t[i] = f32ToBf16(r * Math.cos(2 * Math.PI * u2));
    t[i + 1] = f32ToBf16(r * Math.sin(2 * Math.PI * u2));
  }
  normalTable = t;
  return t;
}

/** Fills `out` with the next values of a xorshift32 stream mapped through the normal table; returns the state. */
function fillNormal(out, n, state) {
  const tab = normalBf16Table();
  let s = state;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = tab[s & 0xffff];
    out[i + 1] = tab[(s >>> 16) & 0xffff];
  }
  if (i < n) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = tab[s & 0xffff];
  }
  return s;
}

// ---- writing -----------------------------------------------------------------------------------------------

/**
 * The safetensors header of `list` (every tensor BF16, back to back): the 8-byte length prefix, the padded JSON and
 * the data size. `generator` names the writer in __metadata__.
 */
export function headerFor(list, generator = `langneurons benchmarks synthetic v${GENERATOR_VERSION}`) {
  const header = { __metadata__: { format: 'pt', generator } };
  let offset = 0;
  for (const [name, shape] of list) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(hb.byteLength));
  return { prefix, hb, dataBytes: offset };
}

function writeAll(fd, u8) {
  let done = 0;
  while (done < u8.byteLength) done += fs.writeSync(fd, u8, done, u8.byteLength - done);
}

/**
 * Writes a BF16 safetensors file for the tensor list `list` (tensorList) atomically: a temporary name, the header
 * (headerFor, naming `generator`), then `writeTensor(write, [name, shape, kind], index)` for each tensor in order,
 * which must pass exactly its shape's bf16 bytes to `write(u8)`; then fsync (unless `fsync: false`) and a rename.
 * On an error the temporary file is removed. Returns the file's size in bytes.
 */
export function writeBf16Safetensors(file, list, generator, writeTensor, { fsync = true } = {}) {
  const { prefix, hb, dataBytes } = headerFor(list, generator);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  const write = (u8) => writeAll(fd, u8);
  try {
    write(prefix);
    write(hb);
    list.forEach((entry, k) => writeTensor(write, entry, k));
    if (fsync) fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return 8 + hb.byteLength + dataBytes;
}

/** Streams the safetensors file for `cfg` to `file` (atomic: tmp + fsync + rename). Returns its size. */
export function writeSyntheticSafetensors(file, cfg, seed = 1) {
  const buf = new Uint16Array(CHUNK_ELEMS);
  const bytes = new Uint8Array(buf.buffer);
  return writeBf16Safetensors(file, tensorList(cfg), undefined, (write, [name, shape, kind]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    let state = mix32(fnv1a(name) ^ Math.imul(seed, 0x9e3779b1));
    for (let done = 0; done < n; done += CHUNK_ELEMS) {
      const m = Math.min(CHUNK_ELEMS, n - done);
      if (kind === 'ones') buf.fill(BF16_ONE, 0, m);
      else state = fillNormal(buf, m, state);
      write(bytes.subarray(0, 2 * m));
    }
  });
}

/**
 * Makes sure `<cacheDir>/<name>/` holds config.json + model.safetensors for MODEL_SHAPES[name], or for `config`
 * when given (a shape of the caller's own), generated on first use and reused after. Returns
 * { dir, config, safetensorsBytes, generatedSeconds (0 when reused) }.
 */
export function ensureSyntheticCheckpoint(cacheDir, name, { seed = 1, log = () => {}, config } = {}) {
  const cfg = config ?? MODEL_SHAPES[name];
  if (!cfg) throw new Error(`unknown synthetic model ${name}; known: ${Object.keys(MODEL_SHAPES).join(', ')}`);
  const dir = path.join(cacheDir, name);
  const st = path.join(dir, 'model.safetensors');
  const stampFile = path.join(dir, 'stamp.json');
  const want = { generator: GENERATOR_VERSION, seed, config: cfg };
  const { prefix, hb, dataBytes } = headerFor(tensorList(cfg));
  const size = prefix.byteLength + hb.byteLength + dataBytes;
  try {
    const stamp = JSON.parse(fs.readFileSync(stampFile, 'utf8'));
    if (JSON.stringify(stamp.want) === JSON.stringify(want) && fs.statSync(st).size === size &&
        fs.existsSync(path.join(dir, 'config.json')))
      return { dir, config: cfg, safetensorsBytes: size, generatedSeconds: 0 };
  } catch { /* missing or stale: regenerate */ }
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(stampFile, { force: true });
  log(`generating ${name} (${(size / 1e9).toFixed(2)} GB of random bf16) in ${dir} ...`);
  const t0 = performance.now();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
  writeSyntheticSafetensors(st, cfg, seed);
  fs.writeFileSync(stampFile, JSON.stringify({ want, bytes: size }, null, 2) + '\n');
  const generatedSeconds = (performance.now() - t0) / 1000;
  log(`generated ${name} in ${generatedSeconds.toFixed(1)} s`);
  return { dir, config: cfg, safetensorsBytes: size, generatedSeconds };
}
