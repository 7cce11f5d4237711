// Matrix products of the backward pass of a Linear layer Y = X W^T (W: [N out][K in], Hugging Face layout):
//   dX  = dY W          (gemm_dx: W in its stored dtype F32/F16/BF16, converted to float32 on the fly)
//   dW += dY^T X        (gemm_dw: dW float32, accumulated)
// Implementations per kernel family, chosen at run time like the forward GEMM (kernels/kernel_table.h, i.e. the CPU's
// features unless LANGNEURONS_KERNEL says otherwise):
//   avx512: the avx2 design on a 14x32 zmm tile (kernels/gemm_backward_avx512.cpp), also in the avx512bf16 table;
//   avx2:  packed, register-blocked AVX2/FMA kernels (kernels/gemm_backward_avx2.cpp): W / X / dY packed into
//          per-thread panels (converted from F16/BF16 while packing), a 6x16 FMA microkernel, per-thread packing
//          buffers that only grow (nothing allocated once they have their size);
//   plain: C++ loops written so that the compiler vectorises the inner axpy (gemm_backward.cpp): the readable
//          version, and what runs on CPUs without AVX2/FMA/F16C.
// Both split the work over a ThreadPool so that every output element is written by exactly one task (no atomics,
// deterministic for a given thread count and kernel). The *_ref versions are the single-thread float64
// references the tests hold both against.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/gemm.h"

namespace ln {
namespace train {

// dX[i, k] = (accumulate ? dX[i, k] : 0) + sum_n dY[i, n] W[n, k]   for i < M, k < W.cols, n < W.rows.
// dY: M x N row stride ldy; dX: M x K row stride ldx. `scratch` holds pool.size() * W.cols floats (row
// conversion buffers of the plain kernel for F16/BF16 weights; unused for F32 and by the avx2 kernel).
// Throws std::invalid_argument for a negative size or a row stride smaller than its row.
void gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate,
             float* scratch, ThreadPool& pool);

// dW[n, k] += sum_i dY[i, n] X[i, k]   for n < N, k < K, i < M. dW: N x K row stride lddw. Same exceptions.
void gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx, float* dW,
             int64_t lddw, ThreadPool& pool);

// The kernel families behind gemm_dx / gemm_dw (arguments already validated, all sizes >= 1). avx2_* may only be
// called when cpu_supports(CpuKernel::Avx2).
void plain_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                   bool accumulate, float* scratch, ThreadPool& pool);
void plain_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                   float* dW, int64_t lddw, ThreadPool& pool);
void avx2_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                  bool accumulate, ThreadPool& pool);
void avx2_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                  float* dW, int64_t lddw, ThreadPool& pool);
// x86 only, after cpu_supports(CpuKernel::Avx512): the same products on the 14x32 zmm tile
// (kernels/gemm_backward_avx512.cpp); the avx512bf16 family uses them too (gradients stay f32).
void avx512_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                    bool accumulate, ThreadPool& pool);
void avx512_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                    float* dW, int64_t lddw, ThreadPool& pool);

// Single thread, float64 sums of the products of the float32 values.
void gemm_dx_ref(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate);
void gemm_dw_ref(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx, float* dW,
                 int64_t lddw);

}  // namespace train
}  // namespace ln
