/**
 * A model's identity for caches, resumes and result records: a SHA-256 over what determines its outputs
 * (config.json, generation_config.json, the tokenizer files, and every safetensors file's header, size and
 * sampled contents), not its path. Replacing the weights under the same path (even with the same shapes,
 * so the same header) changes the fingerprint: 64 blocks of 64 KiB spread evenly over each weight file,
 * plus its first and last MiB, are hashed. That reads ~6 MiB per file, so it costs milliseconds even for a
 * 16 GB checkpoint, while any re-initialisation, fine-tune or re-quantisation of the tensors changes
 * sampled bytes. (An edit confined to a few bytes between the sampled blocks would not be seen; the full
 * content hash is `modelFingerprint(dir, { full: true })`.)
 */
import { createHash, type Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';

const SIDE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json',
  'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja'];
const SAMPLE_BLOCKS = 64;
const SAMPLE_BLOCK_BYTES = 64 * 1024;
const EDGE_BYTES = 1024 * 1024;

export interface FingerprintOptions {
  /** Hash every byte of every weight file instead of the samples (slow for large checkpoints). */
  full?: boolean;
}

async function hashRange(hash: Hash, fh: fsp.FileHandle, start: number, length: number, buf: Buffer): Promise<void> {
  let done = 0;
  while (done < length) {
    const n = Math.min(buf.length, length - done);
    const { bytesRead } = await fh.read(buf, 0, n, start + done);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    done += bytesRead;
  }
}

async function hashWeightFile(hash: Hash, file: string, full: boolean): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    hash.update(`${path.basename(file)}\0${size}\0`);
    const buf = Buffer.allocUnsafe(EDGE_BYTES);
    if (full || size <= 2 * EDGE_BYTES + SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES) {
      await hashRange(hash, fh, 0, size, buf);
      return;
    }
    // The safetensors header sits in the first MiB unless it is larger; hash it whole either way.
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerEnd = Math.min(size, 8 + Number(lenBuf.readBigUInt64LE(0)));
    await hashRange(hash, fh, 0, Math.max(EDGE_BYTES, headerEnd), buf);
    const step = Math.floor((size - 2 * EDGE_BYTES) / SAMPLE_BLOCKS);
    for (let i = 0; i < SAMPLE_BLOCKS; i++) await hashRange(hash, fh, EDGE_BYTES + i * step, SAMPLE_BLOCK_BYTES, buf);
    await hashRange(hash, fh, size - EDGE_BYTES, EDGE_BYTES, buf);
  } finally {
    await fh.close();
  }
}

/** Hex SHA-256 identifying the model in `dir` (see the file comment for what it covers). */
export async function modelFingerprint(dir: string, options: FingerprintOptions = {}): Promise<string> {
  let names: string[];
  try {
    names = (await fsp.readdir(dir)).sort();
  } catch (err) {
    throw new LangneuronsError('E_IO', `${dir}: cannot read the model folder: ${describeError(err)}`, { file: dir, cause: err });
  }
  const hash = createHash('sha256');
  hash.update(`langneurons-model-fingerprint-v1\0${options.full ? 'full' : 'sampled'}\0`);
  try {
    for (const name of names) {
      if (SIDE_FILES.includes(name)) {
        hash.update(`${name}\0`);
        hash.update(await fsp.readFile(path.join(dir, name)));
        hash.update('\0');
      } else if (name.endsWith('.safetensors')) {
        await hashWeightFile(hash, path.join(dir, name), options.full === true);
      }
    }
  } catch (err) {
    throw new LangneuronsError('E_IO', `${dir}: cannot read the model's files for its fingerprint: ${describeError(err)}`, { file: dir, cause: err });
  }
  return hash.digest('hex');
}
