// Hand-made sparse deltas (the `finetune` output format: new values of trained rows / columns / tensors, float32,
// with their indices, and delta.json) for tests that need a fine-tuned variant without training one.
import { cpSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { readAllTensors, readSafetensorsHeader, writeSafetensors, readTensor, toFloat32, type TensorToWrite } from '../../src/io/safetensors.js';
import { openCheckpoint } from '../../src/model/checkpoint.js';
import { modelIdentity } from '../../src/profile/identity.js';
import { DELTA_FORMAT, type DeltaDescription } from '../../src/train/delta.js';

export interface DeltaChange { name: string; mode: 'rows' | 'cols' | 'dense'; indices?: number[]; add: (value: number, flatIndex: number) => number }

/** Writes <dir>/delta.safetensors + delta.json whose values are base value + change.add(...). Returns the delta file. */
export async function makeDelta(modelDir: string, dir: string, changes: DeltaChange[]): Promise<string> {
  const ck = await openCheckpoint(modelDir);
  const tensors: Record<string, TensorToWrite> = {};
  const described: DeltaDescription['tensors'] = [];
  for (const ch of changes) {
    const info = ck.tensors.get(ch.name)!;
    const base = toFloat32(info, await readTensor(info.file, info));
    const rows = info.shape[0]!, cols = info.shape.length === 2 ? info.shape[1]! : 1;
    const idx = ch.indices ?? [];
    let values: Float32Array, shape: number[];
    if (ch.mode === 'dense') { values = base.map((v, i) => ch.add(v, i)); shape = [...info.shape]; }
    else if (ch.mode === 'rows') { values = new Float32Array(idx.length * cols).map((_, k) => { const i = idx[Math.floor(k / cols)]! * cols + (k % cols); return ch.add(base[i]!, i); }); shape = [idx.length, cols]; }
    else { values = new Float32Array(rows * idx.length).map((_, k) => { const i = Math.floor(k / idx.length) * cols + idx[k % idx.length]!; return ch.add(base[i]!, i); }); shape = [rows, idx.length]; }
    tensors[ch.name] = { dtype: 'F32', shape, data: values };
    if (ch.mode !== 'dense') tensors[`${ch.name}.index`] = { dtype: 'I32', shape: [idx.length], data: Int32Array.from(idx) };
    described.push({ name: ch.name, mode: ch.mode, shape, indices: idx.length });
  }
  const id = modelIdentity(ck);
  const desc: DeltaDescription = { format: DELTA_FORMAT, model: { name: id.name, fingerprint: id.fingerprint }, method: 'test', step: 1, trainableParameters: 0, tensors: described };
  await fsp.mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'delta.safetensors'), tensors, { format: DELTA_FORMAT, description: JSON.stringify(desc) });
  await fsp.writeFile(path.join(dir, 'delta.json'), JSON.stringify(desc, null, 2) + '\n');
  return path.join(dir, 'delta.safetensors');
}

/** A copy of a run's delta as versions before the base weights' fingerprint was recorded wrote it: its description (in
 *  the file's metadata and in delta.json) without `model.weights`, so that it is checked by layout only. */
export async function olderDelta(runDir: string, to: string): Promise<string> {
  cpSync(runDir, to, { recursive: true });
  const file = path.join(to, 'delta.safetensors');
  const meta = (await readSafetensorsHeader(file)).metadata ?? {};
  const desc = JSON.parse(meta['description']!);
  delete desc.model.weights;
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of await readAllTensors(file)) tensors[name] = { dtype: t.info.dtype, shape: t.info.shape, data: t.data };
  await writeSafetensors(file, tensors, { ...meta, description: JSON.stringify(desc) });
  const json = JSON.parse(readFileSync(path.join(to, 'delta.json'), 'utf8'));
  delete json.model.weights;
  writeFileSync(path.join(to, 'delta.json'), JSON.stringify(json));
  return file;
}
