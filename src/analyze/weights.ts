// Where fine-tuning changed the weights (Gurgurov et al.; docs/ANALYSES.md): the Frobenius norm of the change ΔW
// per layer and projection, relative to the base weights where they are known, and the share of the change's
// energy (‖ΔW‖²) that lies on the neurons of a mask (rows of gate_proj and up_proj, columns of down_proj).
//
// ΔW comes from a sparse delta (new values of the trained rows / columns, minus the base model's), a PEFT LoRA
// adapter (ΔW = s·B·A, never formed: ‖s·BA‖² per row and column from the r × r Gram matrices), or two checkpoints.
import { existsSync, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';

import { LangneuronsError, describeError } from '../errors.js';
import { readAllTensors, readTensor, toFloat32 } from '../io/safetensors.js';
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { checkAdapterFits, isAdapterDir, readAdapter } from '../train/adapter.js';
import { checkDeltaBase, readDeltaDescription } from '../train/delta.js';

export const PROJECTIONS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type Projection = typeof PROJECTIONS[number];

/** (layer, projection) of a checkpoint tensor name; layer -1 and the name's last parts for the rest. */
export function tensorPlace(name: string): { layer: number; projection: string } {
  const m = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.(?:self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.weight$/.exec(name);
  if (m) return { layer: Number(m[1]), projection: m[2]! };
  const l = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (l) return { layer: Number(l[1]), projection: l[2]!.replace(/\.weight$/, '') };
  return { layer: -1, projection: name.replace(/^model\./, '').replace(/\.weight$/, '') };
}

/** The change of one tensor: squared norms per row and per column (of the [rows × cols] matrix) and in total. */
export interface TensorChange {
  tensor: string;
  layer: number;
  projection: string;
  rows: number;
  cols: number;
  rowSq: Float64Array;
  colSq: Float64Array;
  totalSq: number;
  /** ‖W_base‖² where the base weights are known. */
  baseSq: number | null;
}

function denseChange(tensor: string, rows: number, cols: number, get: (i: number) => number, baseSq: number | null): TensorChange {
  const rowSq = new Float64Array(rows), colSq = new Float64Array(cols);
  let total = 0;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const d = get(r * cols + c), d2 = d * d;
      rowSq[r]! += d2; colSq[c]! += d2; total += d2;
    }
  return { tensor, ...tensorPlace(tensor), rows, cols, rowSq, colSq, totalSq: total, baseSq };
}

const sumSq = (x: Float32Array) => { let s = 0; for (const v of x) s += v * v; return s; };
const shape2 = (shape: number[]): [number, number] => [shape[0]!, shape.length === 2 ? shape[1]! : 1];

async function tensorF32(ck: Checkpoint, name: string): Promise<Float32Array> {
  const info = ck.tensors.get(name);
  if (!info) throw new LangneuronsError('E_INPUT', `${ck.dir}: no tensor ${name}`, { file: ck.dir });
  return toFloat32(info, await readTensor(info.file, info));
}

/** Changes of a sparse delta against its base model (checked by fingerprint). */
export async function deltaChanges(deltaFile: string, baseDir: string): Promise<TensorChange[]> {
  const desc = await readDeltaDescription(deltaFile);
  const ck = await openCheckpoint(baseDir);
  await checkDeltaBase(deltaFile, desc, ck, 'give its base with --base');
  let tensors;
  try { tensors = await readAllTensors(deltaFile); } catch (e) {
    throw new LangneuronsError('E_DELTA', `${deltaFile}: cannot read the delta: ${describeError(e)}`, { file: deltaFile });
  }
  const out: TensorChange[] = [];
  for (const t of desc.tensors) {
    const d = tensors.get(t.name);
    if (!d) throw new LangneuronsError('E_DELTA', `${deltaFile}: tensor ${t.name} is missing`, { file: deltaFile });
    const values = toFloat32(d.info, d.data), base = await tensorF32(ck, t.name);
    const [rows, cols] = shape2(ck.tensors.get(t.name)!.shape);
    const idx = t.mode === 'dense' ? null : (tensors.get(`${t.name}.index`)?.data as Int32Array | undefined);
    if (t.mode !== 'dense' && !idx) throw new LangneuronsError('E_DELTA', `${deltaFile}: tensor ${t.name}.index is missing`, { file: deltaFile });
    const full = new Float64Array(rows * cols);  // the change (exact: a difference of two float32), zero outside the trained rows / columns
    if (t.mode === 'dense') {
      if (values.length !== rows * cols) throw new LangneuronsError('E_DELTA', `${deltaFile}: tensor ${t.name} has ${values.length} values for [${rows}, ${cols}]`, { file: deltaFile });
      for (let i = 0; i < full.length; i++) full[i] = values[i]! - base[i]!;
    } else if (t.mode === 'rows') {
      idx!.forEach((r, k) => { for (let c = 0; c < cols; c++) full[r * cols + c] = values[k * cols + c]! - base[r * cols + c]!; });
    } else {
      const n = idx!.length;
      idx!.forEach((c, k) => { for (let r = 0; r < rows; r++) full[r * cols + c] = values[r * n + k]! - base[r * cols + c]!; });
    }
    out.push(denseChange(t.name, rows, cols, (i) => full[i]!, sumSq(base)));
  }
  return out;
}

/** Changes of a PEFT LoRA adapter: ΔW = s·B·A with B [N × r], A [r × K]. */
export async function adapterChanges(dir: string, baseDir?: string): Promise<TensorChange[]> {
  const ad = await readAdapter(dir);
  const ck = baseDir ? await openCheckpoint(baseDir) : null;
  // The relative changes divide by the base's weights: they must be the adapter's base (another model's gave numbers).
  if (ck) checkAdapterFits(ad, ck, dir);
  return Promise.all(ad.modules.map(async (m) => {
    const r = m.r, N = m.out, K = m.in, s2 = ad.scale * ad.scale;
    const AAt = new Float64Array(r * r), BtB = new Float64Array(r * r);
    for (let i = 0; i < r; i++)
      for (let j = 0; j < r; j++) {
        let a = 0, b = 0;
        for (let k = 0; k < K; k++) a += m.a[i * K + k]! * m.a[j * K + k]!;
        for (let n = 0; n < N; n++) b += m.b[n * r + i]! * m.b[n * r + j]!;
        AAt[i * r + j] = a; BtB[i * r + j] = b;
      }
    const quad = (v: (i: number) => number, G: Float64Array) => { let q = 0; for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) q += v(i) * G[i * r + j]! * v(j); return q; };
    const rowSq = Float64Array.from({ length: N }, (_, n) => s2 * quad((i) => m.b[n * r + i]!, AAt));
    const colSq = Float64Array.from({ length: K }, (_, k) => s2 * quad((i) => m.a[i * K + k]!, BtB));
    const tensor = `${m.module}.weight`;
    const baseSq = ck?.tensors.has(tensor) ? sumSq(await tensorF32(ck, tensor)) : null;
    return { tensor, ...tensorPlace(tensor), rows: N, cols: K, rowSq, colSq, totalSq: rowSq.reduce((a, b) => a + b, 0), baseSq };
  }));
}

/** Changes between two checkpoints of one architecture: every tensor that differs. */
export async function checkpointChanges(tunedDir: string, baseDir: string): Promise<TensorChange[]> {
  const [a, b] = [await openCheckpoint(baseDir), await openCheckpoint(tunedDir)];
  const out: TensorChange[] = [];
  for (const [name, info] of b.tensors) {
    const bi = a.tensors.get(name);
    if (!bi) continue;
    if (bi.shape.join('x') !== info.shape.join('x'))
      throw new LangneuronsError('E_INPUT', `${tunedDir}: tensor ${name} is [${info.shape}] but [${bi.shape}] in ${baseDir}`, { file: tunedDir });
    const base = await tensorF32(a, name), tuned = await tensorF32(b, name);
    const [rows, cols] = shape2(info.shape);
    const c = denseChange(name, rows, cols, (i) => tuned[i]! - base[i]!, sumSq(base));
    if (c.totalSq > 0) out.push(c);
  }
  return out;
}

export type DeltaSource = { kind: 'delta'; file: string; base: string } | { kind: 'adapter'; dir: string; base: string | null } | { kind: 'checkpoints'; tuned: string; base: string };

/** What `analyze delta <path>` reads: a run folder, a delta file, an adapter folder, or a checkpoint (with --base). */
export async function resolveDeltaSource(p: string, base?: string): Promise<DeltaSource> {
  if (!existsSync(p)) throw new LangneuronsError('E_IO', `${p}: not found`, { file: p });
  const runBase = async (runDir: string): Promise<string> => {
    if (base) return base;
    try {
      const run = JSON.parse(await fsp.readFile(path.join(runDir, 'run.json'), 'utf8')) as { model?: { dir?: unknown } };
      if (typeof run.model?.dir === 'string') return run.model.dir;
    } catch { /* no run.json: --base is needed */ }
    throw new LangneuronsError('E_OPTIONS', `${p}: the base model is unknown (no run.json beside the delta): give it with --base`, { field: '--base' });
  };
  if (!statSync(p).isDirectory()) {
    await readDeltaDescription(p); // a file that is not a delta (a mask, statistics) is named as such first
    return { kind: 'delta', file: p, base: await runBase(path.dirname(p)) };
  }
  // An adapter's base: --base, else the run's (a run folder's run.json, or the one above its adapter/), else unknown.
  const adapterBase = async (runDir: string) => base ?? await runBase(runDir).catch(() => null);
  if (await isAdapterDir(p)) return { kind: 'adapter', dir: p, base: await adapterBase(path.dirname(p)) };
  if (existsSync(path.join(p, 'delta.safetensors'))) return { kind: 'delta', file: path.join(p, 'delta.safetensors'), base: await runBase(p) };
  if (await isAdapterDir(path.join(p, 'adapter'))) return { kind: 'adapter', dir: path.join(p, 'adapter'), base: await adapterBase(p) };
  if (existsSync(path.join(p, 'config.json'))) {
    if (!base) throw new LangneuronsError('E_OPTIONS', `${p}: a checkpoint is compared with its base: give --base <model>`, { field: '--base' });
    return { kind: 'checkpoints', tuned: p, base };
  }
  throw new LangneuronsError('E_INPUT', `${p}: not a run folder, a delta.safetensors, a PEFT adapter folder or a checkpoint`, { file: p });
}

export async function readChanges(src: DeltaSource): Promise<TensorChange[]> {
  return src.kind === 'delta' ? deltaChanges(src.file, src.base) : src.kind === 'adapter' ? adapterChanges(src.dir, src.base ?? undefined) : checkpointChanges(src.tuned, src.base);
}

export interface WeightUpdateAnalysis {
  source: string;
  kind: DeltaSource['kind'];
  layers: number;
  /** Projections drawn (of PROJECTIONS, those that changed). */
  projections: string[];
  /** [projection][layer] ‖ΔW‖ (0 where unchanged). */
  norm: number[][];
  /** [projection][layer] ‖ΔW‖ / ‖W‖ (null without base weights). */
  relative: (number | null)[][];
  /** Per layer: ‖ΔW‖ over all its tensors. */
  layerNorm: number[];
  /** Tensors outside the layers' projections (embeddings, norms, head) and their ‖ΔW‖. */
  other: { tensor: string; norm: number; relative: number | null }[];
  totalNorm: number;
  /** With a mask: the share of ‖ΔW‖² on the mask's neurons (gate/up rows, down columns), per layer and overall. */
  mask: { source: string; neurons: number; fractionPerLayer: (number | null)[]; fraction: number | null } | null;
}

/** Neurons of a mask per layer (sorted unit indices). */
export interface NeuronSet { source: string; layers: number[][] }

export function analyzeWeightUpdates(changes: TensorChange[], layers: number, source: string, kind: DeltaSource['kind'], mask?: NeuronSet): WeightUpdateAnalysis {
  const projections = PROJECTIONS.filter((p) => changes.some((c) => c.layer >= 0 && c.projection === p));
  const norm = projections.map(() => new Array<number>(layers).fill(0));
  const rel = projections.map(() => new Array<number | null>(layers).fill(null));
  const layerSq = new Array<number>(layers).fill(0), inMask = new Array<number>(layers).fill(0);
  const other: WeightUpdateAnalysis['other'] = [];
  let total = 0;
  for (const c of changes) {
    total += c.totalSq;
    const p = projections.indexOf(c.projection as Projection);
    if (c.layer < 0 || c.layer >= layers || p < 0) {
      other.push({ tensor: c.tensor, norm: Math.sqrt(c.totalSq), relative: c.baseSq ? Math.sqrt(c.totalSq / c.baseSq) : null });
      if (c.layer >= 0 && c.layer < layers) layerSq[c.layer]! += c.totalSq;
      continue;
    }
    norm[p]![c.layer] = Math.sqrt(c.totalSq);
    rel[p]![c.layer] = c.baseSq ? Math.sqrt(c.totalSq / c.baseSq) : null;
    layerSq[c.layer]! += c.totalSq;
    if (mask) {
      const units = mask.layers[c.layer] ?? [];
      const byRow = c.projection === 'gate' || c.projection === 'up', byCol = c.projection === 'down';
      for (const u of units) inMask[c.layer]! += byRow ? (c.rowSq[u] ?? 0) : byCol ? (c.colSq[u] ?? 0) : 0;
    }
  }
  return {
    source, kind, layers, projections, norm, relative: rel, layerNorm: layerSq.map(Math.sqrt), other, totalNorm: Math.sqrt(total),
    mask: mask ? {
      source: mask.source, neurons: mask.layers.reduce((s, u) => s + u.length, 0),
      fractionPerLayer: layerSq.map((sq, l) => (sq > 0 ? inMask[l]! / sq : null)), fraction: total > 0 ? inMask.reduce((a, b) => a + b, 0) / total : null, // (no change at all: no share, as per layer)
    } : null,
  };
}
