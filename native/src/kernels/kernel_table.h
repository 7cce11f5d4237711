// One table of CPU kernels per family (plain, avx2, avx512, avx512bf16), filled once; the active one is chosen from
// the CPU's features (kernels/cpu_features.cpp) and every dispatcher (gemm_xwt, gemm_dx/dw, silu_inplace,
// attend_row, attend_causal, accumulate_row) calls through it. A family that has no kernel of its own for an
// entry reuses the next narrower family's (the `impl` names say which), so adding a kernel is one table entry.
#pragma once
#include <cstdint>

#include "core/tensor_types.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"
#include "kernels/stats_kernels.h"

namespace ln {

struct CpuKernelTable {
  CpuKernel family;
  // Y = X W^T (semantics of gemm_xwt; arguments validated, sizes >= 1): packed GEMM (prefill) and streaming GEMV
  // (decode, M <= kGemvMaxRows).
  using GemmFn = void (*)(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy,
                          Compute compute, bool accumulate, ThreadPool& pool);
  GemmFn gemm, gemv;
  // Backward GEMMs (train/gemm_backward.h): dX = dY W, dW += dY^T X. `scratch` is the plain kernel's row buffer.
  using GemmDxFn = void (*)(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                            bool accumulate, float* scratch, ThreadPool& pool);
  using GemmDwFn = void (*)(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X,
                            int64_t ldx, float* dW, int64_t lddw, ThreadPool& pool);
  GemmDxFn gemm_dx;
  GemmDwFn gemm_dw;
  // Activations, attention tiles and statistics (kernels/ops.h, kernels/stats_kernels.h).
  void (*silu_inplace)(float* x, int64_t n);
  void (*attend_row)(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd, float scale,
                     float* p, float* out);
  void (*attend_causal)(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                        int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch);
  void (*accumulate_row)(const float* x, int64_t n, const RowAccumulators& a);
  // Which family's code each entry runs, e.g. "gemm=avx512bf16 gemv=avx512bf16 backward=avx512 ...".
  const char* impl;
};

// The active family's table (never null). Cheap: one relaxed atomic load.
const CpuKernelTable& cpu_kernels();
// Family k's table, whether or not this CPU can run it (callers check cpu_supports first).
const CpuKernelTable& kernel_table(CpuKernel k);

}  // namespace ln
