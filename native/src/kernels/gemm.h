// Matrix products of activations with checkpoint weights, in the layout Hugging Face stores Linear weights:
// W is [N = out_features][K = in_features], row-major and contiguous, in its stored dtype (F32, F16 or BF16).
// Weights are never expanded in memory: kernels convert panels of W on the fly into small per-thread buffers.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor_types.h"
#include "core/thread_pool.h"

namespace ln {

// The CPU kernel family in use. Chosen once from the CPU's features (the widest supported);
// LANGNEURONS_KERNEL=plain|avx2|avx512|avx512bf16 overrides (an unsupported request falls back loudly to the best
// supported one). Families, each a superset of the CPU features of the one before:
//   plain       portable C++ (compiler-vectorised: SSE2 on x86-64, NEON on arm64);
//   avx2        AVX2 + FMA + F16C (8-wide f32 FMA);
//   avx512      AVX-512 F/BW/VL/DQ (16-wide f32 FMA, 32 registers);
//   avx512bf16  avx512 + AVX512_BF16: vdpbf16ps dot products for bf16 compute.
// The functions of each family are in one table (kernels/kernel_table.h).
enum class CpuKernel : int32_t { Plain = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3 };
CpuKernel active_kernel();
const char* kernel_name(CpuKernel k);
void set_kernel(CpuKernel k);  // for tests and benchmarks; ignores (and reports) an unsupported choice

// Y[i, n] = (accumulate ? Y[i, n] : 0) + sum_k X[i, k] * W[n, k]   for i < M, n < W.rows, k < W.cols.
// X: M x K float32 with row stride ldx; Y: M x N float32 with row stride ldy. Work is split over `pool`.
void gemm_xwt(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
              bool accumulate, ThreadPool& pool);

// The readable reference (one thread, plain loops, same rounding rules): what every fast path is tested against.
void gemm_xwt_ref(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                  bool accumulate);

}  // namespace ln
