// Defects found by QA of the native CPU engine's JS boundary: malformed arguments that reached the engine's reads
// before they were checked. Each is called on the addon itself (the TypeScript layer builds these arrays
// correctly; the addon's own checks are what stand between any other caller and the engine).
import { describe, expect, it } from 'vitest';

import { openCheckpoint } from '../src/model/checkpoint.js';
import { buildNativeSpec } from '../src/engine/native-spec.js';
import { loadAddon, type NativeModelSpec } from '../src/native/addon.js';
import { fixturePath } from './helpers/fixtures.js';

async function qwenSpec(): Promise<NativeModelSpec> {
  return buildNativeSpec(await openCheckpoint(fixturePath('tiny-qwen2')), 1, 'f32', 'cpu');
}

async function rejection(p: () => Promise<unknown>): Promise<Error> {
  try {
    await p();
  } catch (e) {
    return e as Error;
  }
  throw new Error('no error');
}

describe('native boundary', () => {
  // penaltyOffsets [0, 5, 3] over 3 ids: the last offset is their count, but the ids of sequence 0 were read up to
  // offset 5 (past the array) before the decreasing offset of sequence 1 was seen, and whatever lay there was named
  // as a penalty id outside the vocabulary (with a large offset, reads far past the array).
  it('penalty offsets that decrease are refused before any id is read', async () => {
    const A = loadAddon();
    const m = new A.NativeModel(await qwenSpec());
    try {
      const e = await rejection(() => m.forward(Int32Array.of(1, 2, 3, 4), Int32Array.of(2, 2), {
        logits: 4, repetitionPenalty: 1.2, penaltyIds: Int32Array.of(1, 2, 3), penaltyOffsets: Int32Array.of(0, 2_000_000, 3),
      }));
      expect(e.message).toMatch(/penalty_offsets must not decrease \(sequence 1\)/);
    } finally {
      m.dispose();
    }
  });

  // A tensor's shape × dtype size was formed in int64 from dimensions of up to 2^40 each: [2^40, 2^24] F32 is 2^66
  // bytes, which wrapped around to 0 and matched a byte range of 0 (signed overflow); only the later shape check
  // against the config caught it, naming a shape instead of the byte count.
  it('a shape whose byte size passes int64 is refused as such', async () => {
    const A = loadAddon();
    const spec = await qwenSpec();
    const t = spec.tensors.find((x) => x.role === 'embed')!;
    t.shape = [2 ** 40, 2 ** 24];
    t.nbytes = 0;
    expect(() => new A.NativeModel(spec)).toThrow(/embed.*shape × dtype size is over 2\^62 bytes but the byte range holds 0/);
  });

  it('copyPrefix with NaN or huge arguments is a RangeError', async () => {
    const A = loadAddon();
    const m = new A.NativeModel(await qwenSpec());
    try {
      const c = new A.NativeKvCache(m, 2, 8);
      for (const args of [[NaN, 1, 0], [0, 1e300, 0], [0, 1, -Infinity]] as const)
        expect(() => c.copyPrefix(...args)).toThrow(RangeError);
    } finally {
      m.dispose();
    }
  });
});
