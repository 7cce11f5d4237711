// Matrix products of the backward pass of a Linear layer Y = X W^T (W: [N out][K in], Hugging Face layout):
//   dX  = dY W          (gemm_dx: W in its stored dtype, converted row by row on the fly)
//   dW += dY^T X        (gemm_dw: dW float32, accumulated)
// Plain C++ loops written so that the compiler vectorises the inner axpy; work split over a ThreadPool so that
// every output element is written by exactly one task (no atomics, deterministic for a given thread count).
// The *_ref versions are the readable single-thread reference (double accumulation) used by the tests.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/gemm.h"

namespace ln {
namespace train {

// dX[i, k] = (accumulate ? dX[i, k] : 0) + sum_n dY[i, n] W[n, k]   for i < M, k < W.cols, n < W.rows.
// dY: M x N row stride ldy; dX: M x K row stride ldx. `scratch` holds pool.size() * W.cols floats (row
// conversion buffers for F16/BF16 weights; unused for F32).
void gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate,
             float* scratch, ThreadPool& pool);

// dW[n, k] += sum_i dY[i, n] X[i, k]   for n < N, k < K, i < M. dW: N x K row stride lddw.
void gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx, float* dW,
             int64_t lddw, ThreadPool& pool);

void gemm_dx_ref(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate);
void gemm_dw_ref(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx, float* dW,
                 int64_t lddw);

}  // namespace train
}  // namespace ln
