// What the element-wise CUDA kernels share (kernels.cu, runtime_kernels.cu, train_kernels.cu, site_kernels.cu):
// the launch shape of their grid-stride loops and float32 / bf16 element loads and stores, so a kernel templated on
// its element type reads one way everywhere. Device code only: include from .cu files. uint16_t elements are bf16
// here (the runtime's activation dtype); f16 checkpoint tensors go through kernels/math.h's dtype-aware loads.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ln {
namespace cuda {
namespace elementwise {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to cover them, capped (the loop covers the rest). The cap
// bounds the grid, not the work, so results never depend on it: each item is one thread's alone.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return unsigned(b);
}

// A stored value as float32 (bf16 widens exactly).
__device__ inline float as_f32(float x) { return x; }
__device__ inline float as_f32(uint16_t x) { return ln::bf16_to_f32(x); }

// Store v as float32, or rounded to bf16 (round-to-nearest-even, core/dtype.h).
__device__ inline void put(float* y, int64_t i, float v) { y[i] = v; }
__device__ inline void put(uint16_t* y, int64_t i, float v) { y[i] = ln::f32_to_bf16(v); }
// The same where the dtype is a kernel argument (bf16 or float32).
__device__ inline void put(void* y, bool bf16, int64_t i, float v) {
  if (bf16) put(static_cast<uint16_t*>(y), i, v);
  else put(static_cast<float*>(y), i, v);
}

}  // namespace elementwise
}  // namespace cuda
}  // namespace ln
