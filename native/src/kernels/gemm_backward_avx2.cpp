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
// Packing buffers are per thread, grown on first use and kept (no allocation in the hot loop).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2_blocks.h"
#include "kernels/gemm_kernels.h"
#include "train/gemm_backward.h"

namespace ln {
namespace train {
namespace {

// MR x NR = 6 x 16: the microkernels of avx2_blocks.h.
constexpr int64_t KC = 256;        // Bp micro-panel KC x NR x 4 = 16 KB: half of the 32 KB L1
constexpr int64_t MC = 120;        // Ap block MC x KC x 4 = 120 KB, in the 512 KB L2
constexpr int64_t NC_PANELS = 64;  // at most 64 x 16 = 1024 columns per task: Bp <= 1 MB per thread

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

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
  int64_t rows, cols, red;  // C is rows x cols; the reduction has length red
  const float* A;
  int64_t lda;
  const void* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  bool accumulate;
  int64_t cols_per_task;  // multiple of NR
  int64_t rows_per_task;  // multiple of MR (all rows unless the columns alone cannot keep the threads busy)
  int64_t n_col_tasks;
  ThreadPool* pool;  // owns the packing buffers (one set per worker, grown on demand), set by run()
};

// A_ROWS: A(i, r) = A[i * lda + r] (gemm_dx); otherwise A(i, r) = A[r * lda + i] (gemm_dw).
template <bool A_ROWS, DType T>
void gemm_task(void* ctx, int64_t task, int thread) {
  const Job& j = *static_cast<const Job*>(ctx);
  const int64_t c0 = (task % j.n_col_tasks) * j.cols_per_task, c1 = min64(j.cols, c0 + j.cols_per_task);
  const int64_t m0 = (task / j.n_col_tasks) * j.rows_per_task, m1 = min64(j.rows, m0 + j.rows_per_task);
  if (c0 >= c1 || m0 >= m1) return;
  const int64_t nc = c1 - c0, n_panels = (nc + NR - 1) / NR;
  float* bp = j.pool->scratch(thread, ThreadPool::Scratch::PackB, KC * n_panels * NR);
  float* ap = j.pool->scratch(thread, ThreadPool::Scratch::PackA, MC * KC + 8);
  for (int64_t r0 = 0; r0 < j.red; r0 += KC) {
    const int64_t kc = min64(KC, j.red - r0);
    const bool add = j.accumulate || r0 > 0;
    pack_b<T>(j.B, j.ldb, r0, kc, c0, nc, bp);
    for (int64_t i0 = m0; i0 < m1; i0 += MC) {
      const int64_t mc = min64(MC, m1 - i0);
      for (int64_t ir = 0; ir < mc; ir += MR) {
        const int mr = int(min64(MR, mc - ir));
        if (A_ROWS)
          pack_a_rows(j.A + (i0 + ir) * j.lda, j.lda, mr, r0, kc, ap + ir * kc);
        else
          pack_a_cols(j.A + i0 + ir, j.lda, mr, r0, kc, ap + ir * kc);
      }
      for (int64_t p = 0; p < n_panels; ++p) {
        const int nr = int(min64(NR, nc - p * NR));
        const float* b = bp + p * kc * NR;
        float* c = j.C + i0 * j.ldc + c0 + p * NR;
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int mr = int(min64(MR, mc - ir));
          if (nr == NR)
            kernel_mr(mr, kc, ap + ir * kc, b, c + ir * j.ldc, j.ldc, add);
          else
            kernel_edge(kc, ap + ir * kc, b, c + ir * j.ldc, j.ldc, add, mr, nr);
        }
      }
    }
  }
}

// Splits the output over the pool as the forward does (gemm_avx2.cpp): whole micro-panels of columns, about the
// same share per thread; the rows too when there are too few columns for the threads (e.g. a LoRA rank of 8).
void run(Job& j, void (*fn)(void*, int64_t, int), ThreadPool& pool) {
  j.pool = &pool;
  const int threads = pool.size();
  const int64_t panels = (j.cols + NR - 1) / NR;
  j.cols_per_task = balanced_chunk(panels, threads, NC_PANELS) * NR;
  j.n_col_tasks = (j.cols + j.cols_per_task - 1) / j.cols_per_task;
  j.rows_per_task = j.rows;
  if (j.n_col_tasks < threads && j.rows > MR) {
    const int64_t row_blocks = (j.rows + MR - 1) / MR;
    j.rows_per_task = balanced_chunk(row_blocks, threads, (row_blocks + threads - 1) / threads) * MR;
  }
  const int64_t row_tasks = (j.rows + j.rows_per_task - 1) / j.rows_per_task;
  pool.run(j.n_col_tasks * row_tasks, fn, &j);
}

}  // namespace

void avx2_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                  bool accumulate, ThreadPool& pool) {
  Job j{M, W.cols, W.rows, dY, ldy, W.data, W.cols, dX, ldx, accumulate, 0, 0, 0, nullptr};
  run(j,
      W.dtype == DType::F32   ? gemm_task<true, DType::F32>
      : W.dtype == DType::F16 ? gemm_task<true, DType::F16>
                              : gemm_task<true, DType::BF16>,
      pool);
}

void avx2_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                  float* dW, int64_t lddw, ThreadPool& pool) {
  Job j{N, K, M, dY, ldy, X, ldx, dW, lddw, true, 0, 0, 0, nullptr};
  run(j, gemm_task<false, DType::F32>, pool);
}

}  // namespace train
}  // namespace ln
