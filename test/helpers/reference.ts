// Reference outputs shipped with the fixtures, and float64 helpers to compare against them.
import { readFileSync } from 'node:fs';

import { readAllTensors, toFloat32 } from '../../src/io/safetensors.js';
import { fixturePath, type FixtureName } from './fixtures.js';

export interface FixtureReference {
  inputIds: number[];
  logits: Float32Array; // [T, V]
  activeCounts: Int32Array; // [L, I]
  json: { input_ids: number[]; greedy_from_bos?: number[]; loss?: number };
}

export async function loadReference(name: FixtureName): Promise<FixtureReference> {
  const tensors = await readAllTensors(fixturePath(name, 'reference.safetensors'));
  const get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new Error(`${name}/reference.safetensors has no ${n}`);
    return t;
  };
  const json = JSON.parse(readFileSync(fixturePath(name, 'reference.json'), 'utf8'));
  return {
    inputIds: Array.from(get('input_ids').data as Int32Array),
    logits: toFloat32(get('logits').info, get('logits').data),
    activeCounts: get('active_counts').data as Int32Array,
    json,
  };
}

/** ‖a − b‖ / ‖b‖ in float64. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i]! - b[i]!; num += d * d; den += b[i]! * b[i]!; }
  return Math.sqrt(num / den);
}

export function rowArgmax(x: Float32Array, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (x[r * cols + c]! > x[r * cols + best]!) best = c;
    out.push(best);
  }
  return out;
}

/** log softmax(row)[id] in float64. */
export function logSoftmaxAt(row: ArrayLike<number>, id: number): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]!);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i]! - m);
  return row[id]! - m - Math.log(s);
}
