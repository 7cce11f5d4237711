// Large files (issue 19, item 1): optimizer states, deltas and merged models are written by streaming one tensor at
// a time (the writer holds at most one tensor of the trainer or of the base model, never the whole file), and
// files and tensors over 2 GiB are written and read back. The fast tests here check the memory bound on small
// files; the ones that write over 2 GiB to disk (about a minute each on a slow disk) run when
// LANGNEURONS_LARGE_FILE_TESTS=1 and are reported as skipped otherwise; LANGNEURONS_LARGE_FILE_TESTS=state runs
// only the first, the issue's own case of a state over 2 GiB written and read back (.ci/run sets it: about a
// minute, where all three take about six).
import { closeSync, mkdtempSync, openSync, promises as fsp, readSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';

import { readSafetensorsHeader, readTensor, writeSafetensors } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { initModel } from '../src/pretrain/init.js';
import { modelIdentity } from '../src/profile/identity.js';
import { applyDelta } from '../src/train/delta.js';
import type { Arena, NativeParamInfo } from '../src/train/native.js';
import { loadState, saveState } from '../src/train/state.js';
import { makeDelta } from './helpers/delta.js';
import { writeSparseModel } from './helpers/sparse-model.js';

const LARGE_MODE = process.env['LANGNEURONS_LARGE_FILE_TESTS'] ?? '';
const LARGE = LARGE_MODE === '1' || LARGE_MODE === 'state';
const ALL_LARGE = LARGE_MODE === '1';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-large-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

// A full collection before each measurement, so that what is counted is what is still referenced.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const liveBytes = (): number => { gc(); return process.memoryUsage().arrayBuffers; };

/** The value a fake trainer holds at element i of a parameter's arena (distinct per parameter, arena, element). */
const valueAt = (arena: Arena, id: number, i: number): number => (arena === 'master' ? 1 : arena === 'm' ? 2 : 3) * 1000 + id * 10 + (i % 7);

/**
 * A trainer stand-in with parameters of the given sizes. Each read returns a fresh copy (as the native trainer
 * does) and records the live array-buffer bytes at that moment: the peak over the reads is what the save holds.
 */
function fakeTrainer(sizes: number[], fill: (a: Arena, id: number, out: Float32Array) => void) {
  const params: NativeParamInfo[] = sizes.map((size, id) => ({ id, role: 'w_up', layer: id, mode: 'dense', present: true, rows: size, cols: 1, size, index: null }));
  const written = new Map<string, Float32Array>();
  const state = { peakLive: 0, reads: 0, stepCount: -1 };
  return {
    params: () => params,
    read: (a: Arena, id: number) => {
      state.peakLive = Math.max(state.peakLive, liveBytes());
      state.reads++;
      const out = new Float32Array(sizes[id]!);
      fill(a, id, out);
      return out;
    },
    write: (a: Arena, id: number, v: Float32Array) => { written.set(`${a}${id}`, v); },
    setStepCount: (n: number) => { state.stepCount = n; },
    written, state,
  };
}

const patternFill = (a: Arena, id: number, out: Float32Array) => { for (let i = 0; i < out.length; i++) out[i] = valueAt(a, id, i); };

function expectPattern(a: Arena, id: number, got: Float32Array | undefined, n: number): void {
  expect(got?.length).toBe(n);
  let bad = -1;
  for (let i = 0; i < n && bad < 0; i++) if (got![i] !== valueAt(a, id, i)) bad = i;
  expect(bad, `${a}${id}: first wrong element`).toBe(-1);
}

/** Runs fn while sampling the live array-buffer bytes (after a full collection) every few milliseconds. */
async function peakLiveDuring<T>(fn: () => Promise<T>): Promise<{ result: T; peak: number; samples: number }> {
  let peak = liveBytes(), samples = 0;
  const timer = setInterval(() => { peak = Math.max(peak, liveBytes()); samples++; }, 2);
  try {
    const result = await fn();
    return { result, peak, samples };
  } finally {
    clearInterval(timer);
  }
}

describe('streamed writes hold one tensor at a time', () => {
  it('an optimizer state save reads each tensor from the trainer as it writes it, and loads back exactly', async () => {
    // 8 parameters x 3 arenas of 1 Mi floats (4 MiB each, 96 MiB in all): holding them all would be 96 MiB.
    const sizes = Array.from({ length: 8 }, () => 1 << 20), tensor = 4 << 20;
    const tr = fakeTrainer(sizes, patternFill);
    const dir = path.join(tmp, 'state-stream');
    const before = liveBytes();
    await saveState(dir, tr, { step: 5, bestValid: null, bestStep: null, tokens: 100 });
    expect(tr.state.reads).toBe(24);
    // At each read at most the previous tensor (being written) and a little more are alive, not the 23 before it.
    expect(tr.state.peakLive - before).toBeLessThan(2.5 * tensor);
    const header = await readSafetensorsHeader(path.join(dir, 'state.safetensors'));
    expect(header.fileSize).toBeGreaterThan(24 * tensor);

    const back = fakeTrainer(sizes, patternFill);
    expect((await loadState(dir, back))!.step).toBe(5);
    for (const a of ['master', 'm', 'v'] as const) sizes.forEach((n, id) => expectPattern(a, id, back.written.get(`${a}${id}`), n));
  }, 60_000);

  it('merging a delta into a model reads, patches and writes one base tensor at a time', async () => {
    // 8 layers of 256 x 1024 MLP weights (1 MiB each): the model is ~34 MiB.
    const modelDir = path.join(tmp, 'base');
    await initModel(modelDir, { layers: 8, hidden: 256, heads: 4, kvHeads: 4, ffn: 1024, vocab: 512, seed: 3, bosTokenId: 1, eosTokenId: 2 });
    const modelBytes = (await fsp.stat(path.join(modelDir, 'model.safetensors'))).size;
    expect(modelBytes).toBeGreaterThan(32 << 20);
    const deltaFile = await makeDelta(modelDir, path.join(tmp, 'delta'), [
      { name: 'model.layers.2.mlp.up_proj.weight', mode: 'dense', add: (v) => v + 0.5 },
      { name: 'model.layers.5.mlp.down_proj.weight', mode: 'cols', indices: [0, 7, 1023], add: () => -1 },
      { name: 'model.embed_tokens.weight', mode: 'rows', indices: [3, 511], add: (_, i) => i },
    ]);
    const out = path.join(tmp, 'merged');
    const before = liveBytes();
    const { result, peak, samples } = await peakLiveDuring(() => applyDelta(modelDir, deltaFile, out));
    expect(samples).toBeGreaterThan(10);
    expect(result.patched.sort()).toEqual(['model.embed_tokens.weight', 'model.layers.2.mlp.up_proj.weight', 'model.layers.5.mlp.down_proj.weight']);
    // One base tensor, its delta and the write in flight: a few MiB, never the whole model.
    expect(peak - before).toBeLessThan(modelBytes / 4);

    // The merged model: patched values where the delta says, every other tensor byte for byte.
    const base = await openCheckpoint(modelDir), merged = await openCheckpoint(out);
    for (const [name, info] of base.tensors) {
      const a = (await readTensor(info.file, info)) as Float32Array;
      const m = merged.tensors.get(name)!;
      const b = (await readTensor(m.file, m)) as Float32Array;
      const expected = Float32Array.from(a);
      if (name === 'model.layers.2.mlp.up_proj.weight') for (let i = 0; i < a.length; i++) expected[i] = Math.fround(a[i]! + 0.5);
      if (name === 'model.layers.5.mlp.down_proj.weight') for (let r = 0; r < 256; r++) for (const c of [0, 7, 1023]) expected[r * 1024 + c] = -1;
      if (name === 'model.embed_tokens.weight') for (const r of [3, 511]) for (let c = 0; c < 256; c++) expected[r * 256 + c] = r * 256 + c;
      expect(Buffer.from(b.buffer).equals(Buffer.from(expected.buffer)), name).toBe(true);
    }
  }, 60_000);
});

describe.skipIf(!LARGE)('files over 2 GiB (LANGNEURONS_LARGE_FILE_TESTS=state or 1)', () => {
  it('the optimizer state of a 181M-parameter full fine-tune (2.17 GB) saves and resumes', async () => {
    // One trainable tensor of 181M floats: master, m and v are 724 MB each. The fake trainer's copies are zero
    // pages with a marker every 1 MiB, so the test needs little memory; the file itself is written for real.
    const n = 181_000_000;
    const marks = (a: Arena, _id: number, out: Float32Array) => { for (let i = 0; i < out.length; i += 1 << 18) out[i] = valueAt(a, 0, i) + i; };
    const tr = fakeTrainer([n], marks);
    const dir = path.join(tmp, 'state-2g');
    await saveState(dir, tr, { step: 9, bestValid: 2.5, bestStep: 8, tokens: 1234 });
    const size = (await fsp.stat(path.join(dir, 'state.safetensors'))).size;
    expect(size).toBeGreaterThan(2 ** 31);

    const back = fakeTrainer([n], marks);
    expect(await loadState(dir, back)).toMatchObject({ step: 9, bestValid: 2.5, bestStep: 8, tokens: 1234 });
    for (const a of ['master', 'm', 'v'] as const) {
      const got = back.written.get(`${a}0`)!;
      expect(got.length).toBe(n);
      for (let i = 0; i < n; i += 1 << 18) expect(got[i]).toBe(Math.fround(valueAt(a, 0, i) + i));
      expect(got[1]).toBe(0);
      back.written.delete(`${a}0`);
    }
  }, 600_000);

  it.skipIf(!ALL_LARGE)('a single tensor over 2 GiB is written (in pieces under the 2 GiB a write call takes)', async () => {
    const n = 2 ** 29 + 4; // 2 GiB + 16 bytes of F32
    const data = new Float32Array(n); // zero pages, touched only at the markers
    const at = [0, 1, 2 ** 28, 2 ** 29 - 1, 2 ** 29, n - 1];
    at.forEach((i, k) => { data[i] = k + 1.5; });
    const file = path.join(tmp, 'big-tensor.safetensors');
    await writeSafetensors(file, { big: { dtype: 'F32', shape: [n], data }, small: { dtype: 'F32', shape: [2], data: Float32Array.of(7, 8) } });
    const h = await readSafetensorsHeader(file);
    const big = h.tensors.find((t) => t.name === 'big')!;
    expect(big.byteLength).toBe(n * 4);
    const fd = openSync(file, 'r');
    try {
      const four = Buffer.alloc(4);
      at.forEach((i, k) => {
        readSync(fd, four, 0, 4, big.byteOffset + i * 4);
        expect(four.readFloatLE(0), `element ${i}`).toBe(k + 1.5);
      });
    } finally {
      closeSync(fd);
    }
    expect([...(await readTensor(file, h.tensors.find((t) => t.name === 'small')!)) as Float32Array]).toEqual([7, 8]);
  }, 600_000);

  it.skipIf(!ALL_LARGE)('a delta merged into a 2.3 GB model (sparse base file) gives the patched model, one tensor in memory at a time', async () => {
    // 36 layers of hidden 1024, ffn 4096 in F32: 64 MiB a layer. The base weights are a hole (zeros, no disk).
    const shape = { layers: 36, hidden: 1024, heads: 8, kvHeads: 8, ffn: 4096, vocab: 256 };
    const d = shape.hidden, f = shape.ffn;
    const modelDir = path.join(tmp, 'base-2g');
    // In name order, as writeSafetensors lays tensors out: layer 9's are the last ones, past 2 GiB in both files.
    expect(await writeSparseModel(modelDir, shape)).toBeGreaterThan(2 ** 31);

    const ck = await openCheckpoint(modelDir);
    const id = modelIdentity(ck);
    // Layer 9's up_proj (past the 2 GiB mark in both files) is set to 1 everywhere by a dense delta.
    const target = 'model.layers.9.mlp.up_proj.weight';
    expect(ck.tensors.get(target)!.byteOffset).toBeGreaterThan(2 ** 31);
    const deltaDir = path.join(tmp, 'delta-2g');
    await fsp.mkdir(deltaDir);
    const values = new Float32Array(f * d).fill(1);
    const desc = { format: 'langneurons-delta/1', model: { name: id.name, fingerprint: id.fingerprint }, method: 'test', step: 1, trainableParameters: f * d,
      tensors: [{ name: target, mode: 'dense', shape: [f, d], indices: 0 }] };
    await writeSafetensors(path.join(deltaDir, 'delta.safetensors'), { [target]: { dtype: 'F32', shape: [f, d], data: values } }, { format: 'langneurons-delta/1' });
    await fsp.writeFile(path.join(deltaDir, 'delta.json'), JSON.stringify(desc));

    const out = path.join(tmp, 'merged-2g');
    const before = liveBytes();
    const { peak } = await peakLiveDuring(() => applyDelta(modelDir, path.join(deltaDir, 'delta.safetensors'), out));
    expect(peak - before).toBeLessThan(256 << 20); // a 2.3 GB model merged in a few tensors' memory

    const merged = await openCheckpoint(out);
    const info = merged.tensors.get(target)!;
    expect(info.byteOffset).toBeGreaterThan(2 ** 31);
    const got = (await readTensor(info.file, info)) as Float32Array;
    expect(got.every((x) => x === 1)).toBe(true);
    const other = merged.tensors.get('model.layers.9.mlp.down_proj.weight')!;
    expect(((await readTensor(other.file, other)) as Float32Array).every((x) => x === 0)).toBe(true);
  }, 600_000);
});
