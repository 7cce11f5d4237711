// The CUDA simulator's stand-in for <cuda_bf16.h>: the bf16 storage type and the conversions the kernels use,
// with the rounding of core/dtype.h (round to nearest even, as __float2bfloat16_rn).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t __x;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{ln::f32_to_bf16(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return ln::bf16_to_f32(h.__x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return __nv_bfloat16{x}; }
