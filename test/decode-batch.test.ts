// The default number of sequences decoded together (eval --batch-items, generate --batch): 16 on the CPU; on a GPU
// up to 64, held to what half the free device memory holds in KV cache at 2048 tokens a sequence. Hand-worked for
// Llama-3.1-8B's KV shape (32 layers, 8 KV heads of 128): bf16 K and V are 2 * 32 * 8 * 128 * 2 = 131072 bytes a
// token, 268435456 bytes (268 MB) a sequence of 2048 tokens.
import { describe, expect, it } from 'vitest';

import { decodeBatchFor } from '../src/cli/common.js';

const llama8b = { numLayers: 32, numKvHeads: 8, headDim: 128 };
const model = (device: string, compute: 'bf16' | 'f32', deviceTotal: number, deviceUsed: number) => ({
  device, compute, config: llama8b, info: () => ({ memory: { deviceTotal, deviceUsed } }),
}) as unknown as Parameters<typeof decodeBatchFor>[0];

describe('decodeBatchFor', () => {
  it('is 16 on the CPU, whatever the memory', () => {
    expect(decodeBatchFor(model('cpu', 'f32', 0, 0))).toBe(16);
  });

  it('on a GPU: 64 at most, what half the free memory holds (in multiples of 8), 16 at least', () => {
    const GB = 1e9;
    // 80 GB, 17 GB used: 0.5 * 63e9 / 268435456 = 117.3 -> 64.
    expect(decodeBatchFor(model('cuda:0', 'bf16', 80 * GB, 17 * GB))).toBe(64);
    // 40 GB, 17 GB used: 0.5 * 23e9 / 268435456 = 42.8 -> 40.
    expect(decodeBatchFor(model('cuda:0', 'bf16', 40 * GB, 17 * GB))).toBe(40);
    // float32 K and V take twice the bytes: 0.5 * 23e9 / 536870912 = 21.4 -> 16.
    expect(decodeBatchFor(model('cuda:0', 'f32', 40 * GB, 17 * GB))).toBe(16);
    // 24 GB, 17 GB used: 0.5 * 7e9 / 268435456 = 13.0 -> 8, held at 16.
    expect(decodeBatchFor(model('cuda:1', 'bf16', 24 * GB, 17 * GB))).toBe(16);
    // 48 GB, 17 GB used: 0.5 * 31e9 / 268435456 = 57.7 -> 56.
    expect(decodeBatchFor(model('cuda:0', 'bf16', 48 * GB, 17 * GB))).toBe(56);
  });
});
