// AVX2/FMA/F16C kernels of the backward GEMMs (semantics in train/gemm_backward.h; the plain loops of
// train/gemm_backward.cpp are the readable version, the *_ref functions the float64 references).
//
// This file is compiled with -mavx2 -mfma -mf16c (it sits in kernels/ for the *_avx2.cpp build rule of
// CMakeLists.txt and binding.gyp) and only called after cpu_supports(CpuKernel::Avx2). As in gemm_avx2.cpp,
// everything lives in an anonymous namespace and avoids inline functions and templates shared with the portable
// files (std::min, the dtype.h helpers...): the linker keeps one copy of such a function for the whole program,
// and if it picked the AVX copy the portable code would die with SIGILL on a CPU without AVX.
//
// Both products are one "NN" GEMM  C[rows x cols] (+)= A[rows x red] B[red x cols], B row-major:
//   gemm_dx:  C = dX [M x K],  A = dY [M x N] (row-major),      B = W [N x K] (its stored dtype), red = N;
//   gemm_dw:  C = dW [N x K],  A = dY^T (dY [M x N] read down its columns), B = X [M x K] (f32), red = M.
// Neither needs a transposed read of B: a micro-panel of B is 16 consecutive elements of each of kc rows, so
// packing is a copy (bf16 -> f32 is a shift, f16 -> f32 is F16C), and W is never expanded beyond the panels.
// GotoBLAS/BLIS blocking as in the forward kernel: a task owns a range of output columns (and, when there are
// too few of those for the threads, a range of output rows);
//   for each block of KC along the reduction:  pack B[kblock, cols] -> Bp (NR-wide micro-panels, Bp[k][NR]);
//     for each block of MC rows:                pack A[rows, kblock] -> Ap (MR-tall micro-panels, Ap[k][MR]);
//       for each micro-panel of Bp (in L1), each micro-panel of Ap (from L2): the 6x16 FMA microkernel.
// The driver and the task split are the forward's (packed_gemm_task, plan_packed_tasks in avx2_blocks.h); packing
// buffers are the pool's, one set per worker, grown on first use and kept (no allocation in the hot loop).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2_blocks.h"
#include "kernels/gemm_kernels.h"
#include "train/gemm_backward.h"

namespace ln {
namespace train {
namespace {

// MR x NR = 6 x 16 microkernels, KC / MC / NC_PANELS blocking and the packed-GEMM driver: avx2_blocks.h.

// ---- packing -----------------------------------------------------------------------------------------------

// Bp[p][kk][j] = B[(r0 + kk) * ldb + c0 + p * NR + j] for the n_panels micro-panels of columns [c0, c0 + nc)
// (zero past nc), kc rows. Row by row, so that the reads are one contiguous stretch of nc elements per row.
template <DType T>
void pack_b(const void* B, int64_t ldb, int64_t r0, int64_t kc, int64_t c0, int64_t nc, float* bp) {
  const int64_t full = nc / NR, rest = nc - full * NR;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const int64_t row = (r0 + kk) * ldb + c0;
    float* d = bp + kk * NR;
    for (int64_t p = 0; p < full; ++p) {
      _mm256_store_ps(d + p * kc * NR, load8<T>(B, row + p * NR));
      _mm256_store_ps(d + p * kc * NR + 8, load8<T>(B, row + p * NR + 8));
    }
    if (rest) {
      float* e = d + full * kc * NR;
      for (int j = 0; j < NR; ++j) e[j] = j < rest ? load1<T>(B, row + full * NR + j) : 0.f;
    }
  }
}

// Ap[kk][i] = A[(i0 + i) * lda + r0 + kk]: A row-major along the reduction (dY in gemm_dx). mr <= MR rows (zero
// rows past mr). The full-panel path transposes 8x8 blocks (rows 6, 7 zero) and stores each 8-float column at a
// stride of 6: the 2 extra floats land on the next column, which is written afterwards; the last store spills 2
// floats past the panel, hence the 8-float slack of the Ap buffer.
void pack_a_rows(const float* A, int64_t lda, int mr, int64_t r0, int64_t kc, float* dst) {
  int64_t kk = 0;
  if (mr == MR) {
    for (; kk + 8 <= kc; kk += 8) {
      __m256 r[8];
      for (int i = 0; i < MR; ++i) r[i] = _mm256_loadu_ps(A + i * lda + r0 + kk);
      r[6] = r[7] = _mm256_setzero_ps();
      transpose8(r);
      for (int t = 0; t < 8; ++t) _mm256_storeu_ps(dst + (kk + t) * MR, r[t]);
    }
  }
  for (; kk < kc; ++kk)
    for (int i = 0; i < MR; ++i) dst[kk * MR + i] = i < mr ? A[i * lda + r0 + kk] : 0.f;
}

// Ap[kk][i] = A[(r0 + kk) * lda + i0 + i]: A stored transposed (dY read down its columns in gemm_dw), so each
// step is 6 consecutive floats of one row of dY.
void pack_a_cols(const float* A, int64_t lda, int mr, int64_t r0, int64_t kc, float* dst) {
  if (mr == MR) {
    for (int64_t kk = 0; kk < kc; ++kk) {
      const float* s = A + (r0 + kk) * lda;
      float* d = dst + kk * MR;
      _mm_storeu_ps(d, _mm_loadu_ps(s));
      d[4] = s[4];
      d[5] = s[5];
    }
    return;
  }
  for (int64_t kk = 0; kk < kc; ++kk)
    for (int i = 0; i < MR; ++i) dst[kk * MR + i] = i < mr ? A[(r0 + kk) * lda + i] : 0.f;
}

// ---- driver ------------------------------------------------------------------------------------------------

struct Job {
  int64_t red;  // the reduction's length
  const float* A;
  int64_t lda;
  const void* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  bool accumulate;
  PackedTasks tasks;  // C [rows x cols] split over the pool
  ThreadPool* pool;   // owns the packing buffers (one set per worker, grown on demand)
};

// A_ROWS: A(i, r) = A[i * lda + r] (gemm_dx); otherwise A(i, r) = A[r * lda + i] (gemm_dw).
template <bool A_ROWS, DType T>
void gemm_task(void* ctx, int64_t task, int thread) {
  const Job& j = *static_cast<const Job*>(ctx);
  packed_gemm_task(
      j.tasks, task, j.red, j.accumulate, j.C, j.ldc, *j.pool, thread,
      [&](int64_t r0, int64_t kc, int64_t c0, int64_t nc, float* bp) { pack_b<T>(j.B, j.ldb, r0, kc, c0, nc, bp); },
      [&](int64_t i, int mr, int64_t r0, int64_t kc, float* ap) {
        if (A_ROWS)
          pack_a_rows(j.A + i * j.lda, j.lda, mr, r0, kc, ap);
        else
          pack_a_cols(j.A + i, j.lda, mr, r0, kc, ap);
      });
}

}  // namespace

void avx2_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                  bool accumulate, ThreadPool& pool) {
  Job j{W.rows, dY, ldy, W.data, W.cols, dX, ldx, accumulate, plan_packed_tasks(M, W.cols, pool.size()), &pool};
  pool.run(j.tasks.count,
           W.dtype == DType::F32   ? gemm_task<true, DType::F32>
           : W.dtype == DType::F16 ? gemm_task<true, DType::F16>
                                   : gemm_task<true, DType::BF16>,
           &j);
}

void avx2_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                  float* dW, int64_t lddw, ThreadPool& pool) {
  Job j{M, dY, ldy, X, ldx, dW, lddw, true, plan_packed_tasks(N, K, pool.size()), &pool};
  pool.run(j.tasks.count, gemm_task<false, DType::F32>, &j);
}

}  // namespace train
}  // namespace ln
