// AVX-512 kernels of the backward GEMMs (semantics in train/gemm_backward.h): gemm_backward_avx2.cpp's "NN" packed
// GEMM on avx512_blocks.h's 14x32 zmm tile. Compiled with the AVX-512 flags, only on x86, only called after
// cpu_supports(CpuKernel::Avx512); anonymous namespace for the reason given in gemm_avx2.cpp.
//   gemm_dx:  C = dX [M x K],  A = dY [M x N] (row-major),      B = W [N x K] (its stored dtype), red = N;
//   gemm_dw:  C = dW [N x K],  A = dY^T (dY read down its columns), B = X [M x K] (f32),          red = M.
// A micro-panel of B is 32 consecutive elements of each of kc rows, so packing B is a copy (converted from F16/BF16).
#include <immintrin.h>

#include "kernels/avx512_blocks.h"
#include "train/gemm_backward.h"

namespace ln {
namespace train {
namespace {

constexpr int64_t kKc = 256;           // Bp micro-panel 256 x 32 x 4 = 32 KB in L1
constexpr int64_t kMc = 12 * kMr512;   // Ap block 168 x 256 x 4 = 168 KB in L2
constexpr int64_t kNcPanels = 32;      // at most 1024 columns per task

// Bp[p][kk][j] = B[(r0 + kk) * ldb + c0 + p * 32 + j] for the micro-panels of columns [c0, c0 + nc) (zero past
// nc), kc rows; row by row, so each row's nc elements are read as one contiguous stretch.
template <DType T>
void pack_b(const void* B, int64_t ldb, int64_t r0, int64_t kc, int64_t c0, int64_t nc, float* bp) {
  const int64_t full = nc / kNr512, rest = nc - full * kNr512;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const int64_t row = (r0 + kk) * ldb + c0;
    float* d = bp + kk * kNr512;
    for (int64_t p = 0; p < full; ++p) {
      _mm512_store_ps(d + p * kc * kNr512, load16<T>(B, row + p * kNr512));
      _mm512_store_ps(d + p * kc * kNr512 + 16, load16<T>(B, row + p * kNr512 + 16));
    }
    if (rest) {
      float* e = d + full * kc * kNr512;
      for (int j = 0; j < kNr512; ++j) e[j] = j < rest ? load1<T>(B, row + full * kNr512 + j) : 0.f;
    }
  }
}

// Ap[kk][i] = A[(r0 + kk) * lda + i0 + i]: A stored transposed (dY down its columns, gemm_dw): 14 consecutive
// floats of one row of dY per step (masked: nothing read or written past them).
void pack_a_cols(const float* A, int64_t lda, int mr, int64_t r0, int64_t kc, float* dst) {
  const __mmask16 m = __mmask16((1u << mr) - 1), all = __mmask16((1u << kMr512) - 1);
  for (int64_t kk = 0; kk < kc; ++kk)
    _mm512_mask_storeu_ps(dst + kk * kMr512, all, _mm512_maskz_loadu_ps(m, A + (r0 + kk) * lda));
}

template <int R>
void kernel_f32(int64_t kc, const void* a, const void* b, float* c, int64_t ldc, bool add, int nr) {
  kernel_f32_rx32<R>(kc, static_cast<const float*>(a), static_cast<const float*>(b), c, ldc, add, nr);
}

Kernel512 pick_kernel(int mr) {
  static constexpr Kernel512 by_rows[kMr512 + 1] = {
      kernel_f32<1>,  kernel_f32<1>,  kernel_f32<2>,  kernel_f32<3>,  kernel_f32<4>,
      kernel_f32<5>,  kernel_f32<6>,  kernel_f32<7>,  kernel_f32<8>,  kernel_f32<9>,
      kernel_f32<10>, kernel_f32<11>, kernel_f32<12>, kernel_f32<13>, kernel_f32<14>};
  return by_rows[mr];
}

struct Job {
  int64_t red;
  const float* A;
  int64_t lda;
  const void* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  bool accumulate;
  Tasks512 tasks;
  ThreadPool* pool;
};

// A_ROWS: A(i, r) = A[i * lda + r] (gemm_dx); otherwise A(i, r) = A[r * lda + i] (gemm_dw).
template <bool A_ROWS, DType T>
void gemm_task(void* ctx, int64_t task, int thread) {
  const Job& j = *static_cast<const Job*>(ctx);
  packed_task512<float, 1, kKc, kMc>(
      j.tasks, task, j.red, j.accumulate, j.C, j.ldc, *j.pool, thread,
      [&](int64_t r0, int64_t kc, int64_t c0, int64_t nc, float* bp) { pack_b<T>(j.B, j.ldb, r0, kc, c0, nc, bp); },
      [&](int64_t i, int mr, int64_t r0, int64_t kc, float* ap) {
        if (A_ROWS)
          pack_x_panel14<false>(j.A + i * j.lda, j.lda, mr, r0, kc, ap);
        else
          pack_a_cols(j.A + i, j.lda, mr, r0, kc, ap);
      },
      pick_kernel);
}

}  // namespace

void avx512_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                    bool accumulate, ThreadPool& pool) {
  Job j{W.rows, dY, ldy, W.data, W.cols, dX, ldx, accumulate, plan_tasks512(M, W.cols, pool.size(), kNcPanels), &pool};
  pool.run(j.tasks.count,
           W.dtype == DType::F32   ? gemm_task<true, DType::F32>
           : W.dtype == DType::F16 ? gemm_task<true, DType::F16>
                                   : gemm_task<true, DType::BF16>,
           &j);
}

void avx512_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                    float* dW, int64_t lddw, ThreadPool& pool) {
  Job j{M, dY, ldy, X, ldx, dW, lddw, true, plan_tasks512(N, K, pool.size(), kNcPanels), &pool};
  pool.run(j.tasks.count, gemm_task<false, DType::F32>, &j);
}

}  // namespace train
}  // namespace ln
