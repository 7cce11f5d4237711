// Outputs of a fine-tuning run: the sparse delta (only the trained rows / columns / tensors, float32, with their
// indices) and a full Hugging Face checkpoint made by applying a delta to the base model. Every tensor the delta
// does not touch is copied byte for byte; trained values are written in the tensor's stored dtype.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { removeOrphanTemps, writeFileAtomic } from '../io/atomic.js';
import { readSafetensorsHeader, readTensor, writeSafetensors, type SafetensorsHeader, type TensorToProduce, type TensorToWrite } from '../io/safetensors.js';
import { BASE_DTYPES_KEY, openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { modelFingerprint } from '../model/fingerprint.js';
import type { ModelType } from '../model/config.js';
import { modelIdentity } from '../profile/identity.js';
import { tensorName, type NativeTrainer } from './native.js';
import { emptyMergeReport, patchTarget, type MergeDtype, type MergeReport, type PatchTarget } from './merge-precision.js';
import { LOCK_FILE } from '../io/lock.js';
import { ensureOutputDir } from '../io/outdir.js';
import { copyFileAtomic } from '../io/files.js';

export const DELTA_FORMAT = 'langneurons-delta/1';

export interface DeltaTensor { name: string; mode: 'dense' | 'rows' | 'cols'; shape: number[]; indices: number }
export interface DeltaDescription {
  format: typeof DELTA_FORMAT;
  /** fingerprint: the layout's (modelIdentity); weights: the base's content (modelFingerprint), absent in deltas
   *  written before it was recorded. */
  model: { name: string; fingerprint: string; weights?: string };
  method: string;
  step: number;
  trainableParameters: number;
  tensors: DeltaTensor[];
}

/**
 * The trainer's current (master) values of every trainable checkpoint tensor, as delta tensors (LoRA matrices and a
 * classification head are not checkpoint tensors: src/train/adapter.ts and head.ts write them). The values are
 * copied out of the trainer only when the writer reaches each tensor (a full fine-tune's delta is the whole model).
 */
export function deltaTensors(tr: NativeTrainer, modelType?: ModelType): { tensors: Record<string, TensorToWrite | TensorToProduce>; described: DeltaTensor[] } {
  const tensors: Record<string, TensorToWrite | TensorToProduce> = {};
  const described: DeltaTensor[] = [];
  for (const p of tr.params()) {
    if (p.size === 0 || p.mode === 'lora_a' || p.mode === 'lora_b' || p.role === 'score' || p.role === 'score_bias') continue;
    const name = tensorName(p.role, p.layer, modelType);
    const n = p.index?.length ?? 0;
    const shape = p.mode === 'rows' ? [n, p.cols] : p.mode === 'cols' ? [p.rows, n] : p.cols === 1 ? [p.rows] : [p.rows, p.cols];
    tensors[name] = { dtype: 'F32', shape, produce: () => tr.read('master', p.id) };
    if (p.index) tensors[`${name}.index`] = { dtype: 'I32', shape: [n], data: p.index };
    described.push({ name, mode: p.mode as DeltaTensor['mode'], shape, indices: n });
  }
  return { tensors, described };
}

/** `weights`: the base model's content fingerprint (modelFingerprint of ckpt.dir), recorded so that the delta is
 *  put onto these weights only (checkDeltaBase); computed here when not given. */
export async function writeDelta(dir: string, tr: NativeTrainer, ckpt: Checkpoint, method: string, step: number, weights?: string): Promise<void> {
  const { tensors, described } = deltaTensors(tr, ckpt.config.modelType);
  const id = modelIdentity(ckpt);
  const desc: DeltaDescription = {
    format: DELTA_FORMAT, model: { name: id.name, fingerprint: id.fingerprint, weights: weights ?? await modelFingerprint(ckpt.dir) }, method, step,
    trainableParameters: tr.info().trainable, tensors: described,
  };
  await ensureOutputDir(dir);
  await writeSafetensors(path.join(dir, 'delta.safetensors'), tensors, { format: DELTA_FORMAT, description: JSON.stringify(desc) });
  await writeFileAtomic(path.join(dir, 'delta.json'), JSON.stringify(desc, null, 2) + '\n');
}

const COPY_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json',
  'special_tokens_map.json', 'tokenizer.model'];

function bad(file: string, msg: string): never {
  throw new LangneuronsError('E_DELTA', `${file}: ${msg}`, { file });
}

/**
 * Writes base model + delta as a Hugging Face checkpoint in outDir (config.json, model.safetensors, tokenizer
 * files). Refuses a delta made for another model, and an outDir holding anything this merge does not write (checkOutDir). Everything is checked
 * before anything is written; then each tensor is read, patched and written in turn (models and deltas of any
 * size, in the memory of the largest tensor).
 */
/** `dtype`: the patched tensors in their stored dtype (default) or float32 (merge-precision.ts); the report counts
 *  the changed values and those rounded away. */
export async function applyDelta(modelDir: string, deltaFile: string, outDir: string, o: { dtype?: MergeDtype } = {}): Promise<MergeReport> {
  const ckpt = await openCheckpoint(modelDir);
  const deltaHeader = await readSafetensorsHeader(deltaFile).catch((e: Error) => bad(deltaFile, `cannot read the delta: ${e.message}`));
  const delta = new Map(deltaHeader.tensors.map((t) => [t.name, t]));
  const descText = await readDeltaDescription(deltaFile, deltaHeader);
  await checkDeltaBase(deltaFile, descText, ckpt);
  await checkOutDir(modelDir, outDir);
  const out = baseTensors(ckpt);
  const report = emptyMergeReport();
  const widened: Record<string, string> = Object.fromEntries(ckpt.baseDtypes ?? []);
  const tied = ckpt.config.tieWordEmbeddings;
  for (const t of descText.tensors) {
    const d = delta.get(t.name);
    if (!d || d.dtype !== 'F32') bad(deltaFile, `tensor ${t.name} missing or not F32`);
    const targets = [t.name];
    if (tied && t.name === 'model.embed_tokens.weight' && out['lm_head.weight']) targets.push('lm_head.weight');
    for (const target of targets) {
      const base = out[target];
      if (!base) bad(deltaFile, `tensor ${t.name} is not in the model`);
      if (base.dtype !== 'F32' && base.dtype !== 'BF16' && base.dtype !== 'F16') bad(deltaFile, `tensor ${target} has dtype ${base.dtype}`);
      const cols = base.shape.length === 2 ? base.shape[1]! : 1, rows = base.shape[0]!;
      const count = d.byteLength / 4;
      const idxInfo = t.mode === 'dense' ? undefined : delta.get(`${t.name}.index`);
      if (t.mode !== 'dense' && (!idxInfo || idxInfo.dtype !== 'I32')) bad(deltaFile, `tensor ${t.name}.index is missing`);
      const idx = idxInfo ? (await readTensor(deltaFile, idxInfo)) as Int32Array : null;
      if (t.mode === 'dense') {
        if (count !== rows * cols) bad(deltaFile, `tensor ${t.name}: ${count} values for shape [${base.shape}]`);
      } else if (t.mode === 'rows') {
        if (count !== idx!.length * cols) bad(deltaFile, `tensor ${t.name}: wrong size`);
        for (const r of idx!) if (r < 0 || r >= rows) bad(deltaFile, `tensor ${t.name}: row ${r} out of range`);
      } else {
        if (count !== rows * idx!.length) bad(deltaFile, `tensor ${t.name}: wrong size`);
        for (const c of idx!) if (c < 0 || c >= cols) bad(deltaFile, `tensor ${t.name}: column ${c} out of range`);
      }
      const baseDtype = base.dtype as 'F32' | 'BF16' | 'F16';
      if (baseDtype !== 'F32' && o.dtype === 'f32') widened[target] = baseDtype;
      out[target] = { dtype: baseDtype === 'F32' || o.dtype === 'f32' ? 'F32' : baseDtype, shape: base.shape,
        produce: async () => patchTensor(patchTarget(baseDtype, await base.produce() as Float32Array | Uint16Array, o.dtype ?? 'stored', report),
          (await readTensor(deltaFile, d)) as Float32Array, t.mode, idx, rows, cols) };
      report.patched.push(target);
    }
  }
  await writeCheckpoint(modelDir, outDir, out, widened);
  return report;
}

/** Writes the delta's values into a copy of the base tensor (patchTarget: in its dtype or float32). */
function patchTensor(target: PatchTarget, values: Float32Array, mode: DeltaTensor['mode'],
  idx: Int32Array | null, rows: number, cols: number): Float32Array | Uint16Array {
  const { data, put } = target;
  if (mode === 'dense') {
    for (let i = 0; i < values.length; i++) put(i, values[i]!);
  } else if (mode === 'rows') {
    idx!.forEach((r, k) => { for (let c = 0; c < cols; c++) put(r * cols + c, values[k * cols + c]!); });
  } else {
    const n = idx!.length;
    idx!.forEach((c, k) => { for (let r = 0; r < rows; r++) put(r * cols + c, values[r * n + k]!); });
  }
  return data;
}

/**
 * The output folder of a merge: missing or empty, or holding only what this merge writes anyway (a killed merge
 * into the same folder: copies of the base model's config and tokenizer files, equal byte for byte, and temporary
 * files of writers no longer alive, which are removed). Anything else (a user's files, a model already written)
 * is refused before any work: a merge never overwrites what it did not write.
 */
export async function checkOutDir(modelDir: string, outDir: string): Promise<void> {
  if (path.resolve(outDir) === path.resolve(modelDir)) bad(outDir, 'the output folder is the base model folder');
  await removeOrphanTemps(outDir);
  let names: string[];
  try {
    names = await fsp.readdir(outDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') bad(outDir, 'is a file, not a folder; choose another --out');
    throw e;
  }
  if (names.includes('model.safetensors')) bad(outDir, 'already holds a model.safetensors; choose another --out');
  const foreign: string[] = [];
  for (const n of names) {
    if (n === LOCK_FILE) continue;  // `delta apply`'s own (withOutputLock)
    if (!COPY_FILES.includes(n) || !(await sameBytes(path.join(outDir, n), path.join(modelDir, n)))) foreign.push(n);
  }
  if (foreign.length > 0)
    bad(outDir, `is not empty (holds ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}) and a merge writes a whole model folder; choose an empty or new --out`);
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([fsp.readFile(a), fsp.readFile(b)]);
    return x.equals(y);
  } catch {
    return false;
  }
}

/**
 * Every tensor of the checkpoint in its stored dtype, each read from its file only when produced (by the writer of
 * writeCheckpoint, one at a time; each produce() returns a fresh copy that the caller may patch).
 */
export function baseTensors(ckpt: Checkpoint): Record<string, TensorToProduce> {
  const out: Record<string, TensorToProduce> = {};
  for (const [name, info] of ckpt.tensors) out[name] = { dtype: info.dtype, shape: [...info.shape], produce: () => readTensor(info.file, info) };
  return out;
}

/** Writes tensors as outDir/model.safetensors plus the base model's config and tokenizer files. `widened`: tensors
 *  written in float32 whose base dtype was 16-bit (recorded so that the model keeps its base's identity). The
 *  weights come last: a merge killed before them leaves only copies checkOutDir lets the next merge write again,
 *  and a folder holding model.safetensors is a whole model (it was refused as one with its config files missing). */
export async function writeCheckpoint(modelDir: string, outDir: string, out: Record<string, TensorToWrite | TensorToProduce>,
  widened: Record<string, string> = {}): Promise<void> {
  await ensureOutputDir(outDir);
  for (const f of COPY_FILES) {
    const src = path.join(modelDir, f);
    if (!(await fsp.stat(src).then((st) => st.isFile(), () => false))) continue; // optional files
    await copyFileAtomic(src, path.join(outDir, f));
  }
  await writeSafetensors(path.join(outDir, 'model.safetensors'), out,
    { format: 'pt', ...(Object.keys(widened).length ? { [BASE_DTYPES_KEY]: JSON.stringify(widened) } : {}) });
}

/**
 * Refuses a base model the delta was not trained from. The layout's fingerprint first (another architecture or
 * size); then the weights' content: a delta holds the trained rows' new values, not their changes, so put onto
 * other weights of the same layout (the instruct version, another run's model) it would splice this run's rows
 * into that model without a word. Deltas written before the content was recorded are checked by layout only.
 * `hint`: what the caller's user should give instead.
 */
export async function checkDeltaBase(deltaFile: string, desc: DeltaDescription, ckpt: Checkpoint, hint = "give the run's base model (run.json's model.dir)"): Promise<void> {
  const id = modelIdentity(ckpt);
  if (desc.model.fingerprint !== id.fingerprint)
    bad(deltaFile, `delta was made for ${desc.model.name} (${desc.model.fingerprint.slice(0, 12)}), not for ${id.name} at ${ckpt.dir} (${id.fingerprint.slice(0, 12)}); ${hint}`);
  if (desc.model.weights === undefined) return;
  const weights = await modelFingerprint(ckpt.dir);
  if (weights !== desc.model.weights)
    bad(deltaFile, `delta was trained from other weights than those at ${ckpt.dir} (same layout, ${id.name}; weights ${desc.model.weights.slice(0, 12)}, not ${weights.slice(0, 12)}); ${hint}`);
}

/**
 * A delta's description: the one the delta file carries in its own metadata (written with it, so it cannot belong to
 * another file), else the delta.json beside it. A file that is neither a safetensors file nor a delta is named so.
 */
export async function readDeltaDescription(deltaFile: string, read?: SafetensorsHeader): Promise<DeltaDescription> {
  // (`read`: the file's header where the caller has read it already)
  const header = read ?? await readSafetensorsHeader(deltaFile).catch((e: Error) => bad(deltaFile, `not a delta (a delta.safetensors from finetune): cannot read it as safetensors: ${e.message}`));
  const meta = header.metadata ?? {};
  let raw: unknown, from = deltaFile;
  if (meta['format'] === DELTA_FORMAT && typeof meta['description'] === 'string') {
    try { raw = JSON.parse(meta['description']); } catch (e) { bad(deltaFile, `its delta description is not JSON: ${(e as Error).message}`); }
  } else {
    from = path.join(path.dirname(deltaFile), 'delta.json');
    if (meta['format'] !== undefined && meta['format'] !== DELTA_FORMAT)
      bad(deltaFile, `not a delta (a delta.safetensors from finetune): its format is ${JSON.stringify(meta['format'])}`);
    try {
      raw = JSON.parse(await fsp.readFile(from, 'utf8'));
    } catch (e) {
      bad(from, `cannot read the delta description (${deltaFile} carries none): ${(e as Error).message}`);
    }
  }
  const d = raw as DeltaDescription;
  if (d?.format !== DELTA_FORMAT || !Array.isArray(d.tensors) || typeof d.model?.fingerprint !== 'string' || !['string', 'undefined'].includes(typeof d.model.weights))
    bad(from, `not a ${DELTA_FORMAT} description`);
  return d;
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
