// Writing trained values into a base model's tensors (delta apply, adapter merge, a run's model folder): in the
// tensor's stored dtype (the default: a BF16 checkpoint stays BF16, loadable as it was) or in float32 ('f32': the
// trained values exactly). A change smaller than half a BF16/F16 step rounds back to the base value; the report
// counts how many changed values did, so that a run whose gains vanish in its own checkpoint says so.
import { LangneuronsError } from '../errors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../io/float16.js';

export const MERGE_DTYPES = ['stored', 'f32'] as const;
export type MergeDtype = typeof MERGE_DTYPES[number];

/** A merge dtype option (stored or f32), or a clear error naming it. */
export function mergeDtype(v: string, option: string): MergeDtype {
  if (!(MERGE_DTYPES as readonly string[]).includes(v))
    throw new LangneuronsError('E_OPTIONS', `--${option} must be ${MERGE_DTYPES.join(' or ')}, got '${v}'`, { field: option });
  return v as MergeDtype;
}

export interface MergeReport {
  /** Tensors written with trained values. */
  patched: string[];
  /** Values whose trained value differs from the base model's. */
  changed: number;
  /** Of those, the ones whose written value is the base value again (the change rounded away in a 16-bit dtype). */
  roundedAway: number;
  /** The dtypes the patched tensors were written in. */
  dtypes: string[];
}

export function emptyMergeReport(): MergeReport {
  return { patched: [], changed: 0, roundedAway: 0, dtypes: [] };
}

/** The tensor a patch writes: its dtype, data (a copy of the base's) and accessors in float32 that count changes. */
export interface PatchTarget {
  dtype: 'F32' | 'BF16' | 'F16';
  data: Float32Array | Uint16Array;
  /** The base value at i (float32). */
  get(i: number): number;
  /** Writes v at i, rounded to the target dtype, counting a change and a change rounded away. */
  put(i: number, v: number): void;
}

/** A copy of a base tensor (`dtype`: F32, BF16 or F16) to write trained values into, in `to`. */
export function patchTarget(dtype: 'F32' | 'BF16' | 'F16', base: Float32Array | Uint16Array, to: MergeDtype, report: MergeReport): PatchTarget {
  const baseValue = dtype === 'F32' ? (i: number) => (base as Float32Array)[i]!
    : dtype === 'BF16' ? (i: number) => bf16ToF32(base[i]!) : (i: number) => f16ToF32(base[i]!);
  if (dtype === 'F32' || to === 'f32') {
    const data = Float32Array.from({ length: base.length }, (_, i) => baseValue(i));
    note(report, 'F32');
    return {
      dtype: 'F32', data, get: baseValue,
      put: (i, v) => { const w = Math.fround(v); if (w !== data[i]) report.changed++; data[i] = w; },
    };
  }
  const round = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
  const data = base.slice() as Uint16Array;
  note(report, dtype);
  return {
    dtype, data, get: baseValue,
    put: (i, v) => {
      const w = Math.fround(v);
      if (w !== baseValue(i)) {
        report.changed++;
        const bits = round(w);
        if (bits === base[i]) report.roundedAway++;
        data[i] = bits;
      }
    },
  };
}

function note(report: MergeReport, dtype: string): void {
  if (!report.dtypes.includes(dtype)) report.dtypes.push(dtype);
}

/** One line for a merge whose 16-bit rounding undid a noticeable share of the changes (above 10%), else null. */
export function roundingWarning(report: MergeReport, where: string, option: string): string | null {
  if (report.changed === 0 || report.roundedAway / report.changed <= 0.1) return null;
  const share = Math.round((100 * report.roundedAway) / report.changed);
  return `${share}% of the ${report.changed} values the training changed round back to the base model's ${report.dtypes.filter((d) => d !== 'F32').join('/')} values in ${where}: ` +
    `those changes are below that dtype's precision and lost there (the delta keeps them in float32; ${option} f32 writes the changed tensors in float32)`;
}
