// Random BF16 checkpoints for benchmarks/gpu-finetune, written at disk speed: one block (at most 32 MiB) of random bf16
// values ~ N(0, 0.02) (Box-Muller on a seeded xorshift) is made once and every matrix is cut from it at its own
// offset, so an 8B checkpoint (16 GB) takes seconds of CPU instead of minutes (the GPU session's time is short).
// Values repeat every 16M elements; a step's cost does not depend on the values (bench_gpu shares one layer's
// tensors between all layers for the same reason). Norms are 1.0. Tensor names, order and config.json as
// benchmarks/common/synthetic-checkpoint.mjs (tensorList). Written to a temporary name, then renamed.
import { tensorList, writeBf16Safetensors } from '../common/synthetic-checkpoint.mjs';

const MAX_BLOCK = 16 << 20; // elements
const BF16_ONE = 0x3f80;

function randomBlock(seed, size) {
  const out = new Uint16Array(size);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  let s = seed >>> 0 || 1;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return (s + 0.5) / 4294967296; };
  for (let i = 0; i < size; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next())) * 0.02, a = 2 * Math.PI * next();
    f[0] = r * Math.cos(a);
    out[i] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
    f[0] = r * Math.sin(a);
    out[i + 1] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Writes `file` (safetensors, every tensor BF16) for the config.json object `cfg`; returns its size in bytes. */
export function writeRandomCheckpoint(file, cfg, seed = 1) {
  const list = tensorList(cfg);
  // As large as the largest tensor (a tiny model: no repeats at all), at most MAX_BLOCK.
  const BLOCK = Math.min(MAX_BLOCK, 2 * Math.ceil(Math.max(...list.map(([, shape]) => shape.reduce((a, b) => a * b, 1))) / 2));
  const block = randomBlock(seed * 2654435761, BLOCK);
  const blockBytes = new Uint8Array(block.buffer);
  const ones = new Uint16Array(1 << 16).fill(BF16_ONE);
  // No fsync: an 8B checkpoint is 16 GB and the GPU session's minutes are few; the page cache serves the reads.
  return writeBf16Safetensors(file, list, 'langneurons benchmarks/gpu-finetune v1', (write, [, shape, kind], k) => {
    let n = shape.reduce((a, b) => a * b, 1);
    if (kind === 'ones') {
      for (; n > 0; n -= ones.length) write(new Uint8Array(ones.buffer, 0, 2 * Math.min(n, ones.length)));
      return;
    }
    let at = (k * 7919 * 64) % BLOCK; // each tensor starts elsewhere in the block
    for (; n > 0;) {
      const m = Math.min(n, BLOCK - at);
      write(blockBytes.subarray(2 * at, 2 * (at + m)));
      n -= m;
      at = 0;
    }
  }, { fsync: false });
}
