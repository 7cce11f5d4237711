/**
 * IEEE half (F16) and bfloat16 (BF16) <-> float32 conversion, bit-exact.
 *
 * f32 -> f16 / bf16 rounds to nearest, ties to even (what PyTorch and numpy do), keeps the sign of
 * zero, maps overflow to infinity and keeps NaN a (quiet) NaN.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float32Bits(value: number): number {
  f32[0] = value;
  return u32[0]!;
}

export function float32FromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** BF16 is the top half of a float32: widening is a shift. */
export function bf16ToF32(bits: number): number {
  return float32FromBits((bits & 0xffff) << 16);
}

export function f32ToBf16(value: number): number {
  const bits = float32Bits(value);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
    return ((bits >>> 16) | 0x0040) & 0xffff; // NaN: keep sign and top payload, force quiet
  }
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff; // carries into the exponent give the right result (inf)
}

export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero or subnormal
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export function f32ToF16(value: number): number {
  const bits = float32Bits(value);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0);
  if (exponent > 142) return sign | 0x7c00; // >= 2^16: beyond the largest half even before rounding
  if (exponent >= 113) {
    // Normal half: re-bias exponent (127 -> 15), keep 10 mantissa bits, round on the 13 dropped ones.
    let half = ((exponent - 112) << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1; // may carry to 0x7c00 = inf
    return sign | half;
  }
  if (exponent < 102) return sign; // below half of the smallest subnormal (2^-25): rounds to zero
  // Subnormal half: units of 2^-24. The value is significand * 2^(exponent-150).
  const significand = mantissa | 0x800000;
  const shift = 126 - exponent; // 14..24
  let half = significand >>> shift;
  const rest = significand & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (half & 1))) half += 1;
  return sign | half;
}

let f16Table: Float32Array | undefined;

/** 65536-entry table: bulk F16 widening is then one lookup per element. */
function f16Lookup(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  return f16Table;
}

export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) outBits[i] = src[i]! << 16;
  return out;
}

export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const table = f16Lookup();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

export function f32ArrayToBf16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16(src[i]!);
  return out;
}

export function f32ArrayToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]!);
  return out;
}
