// AVX2/FMA/F16C kernels for Y = X * W^T (semantics in kernels/gemm.h; reference in gemm_ref.cpp).
//
// This file is compiled with -mavx2 -mfma -mf16c and only called after cpu_supports(CpuKernel::Avx2). Because of
// that, everything here lives in an anonymous namespace and avoids inline functions and templates shared with the
// portable files (std::min, the dtype.h helpers...): the linker keeps one copy of such a function for the whole
// program, and if it picked the AVX copy the portable kernels would die with SIGILL on a CPU without AVX.
//
// gemm (prefill, many rows): GotoBLAS/BLIS blocking. A thread owns a range of output columns (rows of W):
//   for each K block of KC:  pack W[cols, kblock] -> Bp, converted to f32 (and bf16-rounded in bf16 mode),
//                            as NR-wide micro-panels, Bp[k][NR];
//     for each M block of MC: pack X[rows, kblock] -> Ap as MR-tall micro-panels, Ap[k][MR];
//       for each micro-panel of Bp (stays in L1), for each micro-panel of Ap (streams from L2):
//         6x16 register-blocked microkernel: 12 ymm accumulators, 12 FMAs per 2 loads + 6 broadcasts.
// gemv (decode, few rows): W is read once, straight from the checkpoint, converted in registers; the work is split
// over rows of W, so both cores stream their half of the weights.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2_blocks.h"
#include "kernels/gemm_kernels.h"

namespace ln {
namespace {

// MR x NR = 6 x 16 microkernels, KC / MC / NC_PANELS blocking and the packed-GEMM driver: avx2_blocks.h.

// ---- packing -----------------------------------------------------------------------------------------------

// Bp[kk][j] = W[n + j][k0 + kk] for one micro-panel of nr <= NR rows of W (zero rows past nr), kc columns.
// ROUND: bf16 compute with weights stored wider than bf16.
template <DType T, bool ROUND>
void pack_w_panel(const void* w, int64_t K, int64_t n, int nr, int64_t k0, int64_t kc, float* dst) {
  int64_t kk = 0;
  if (nr == NR) {
    for (; kk + 8 <= kc; kk += 8) {
      for (int half = 0; half < 2; ++half) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) {
          r[j] = load8<T>(w, (n + half * 8 + j) * K + k0 + kk);
          if (ROUND) r[j] = round_bf16_8(r[j]);
        }
        transpose8(r);
        for (int t = 0; t < 8; ++t) _mm256_store_ps(dst + (kk + t) * NR + half * 8, r[t]);
      }
    }
  }
  for (; kk < kc; ++kk) {
    for (int j = 0; j < NR; ++j) {
      float v = 0.f;
      if (j < nr) {
        v = load1<T>(w, (n + j) * K + k0 + kk);
        if (ROUND) v = round_bf16_1(v);
      }
      dst[kk * NR + j] = v;
    }
  }
}

// Ap[kk][i] = X[i0 + i][k0 + kk] for one micro-panel of mr <= MR rows (zero rows past mr). The full-panel path
// transposes 8x8 blocks (rows 6, 7 zero) and stores each 8-float column at a stride of 6: the 2 extra floats land
// on the next column, which is written afterwards; the last store spills 2 floats past the panel, hence the
// 8-float slack in the Ap buffer.
template <bool ROUND>
void pack_x_panel(const float* X, int64_t ldx, int mr, int64_t k0, int64_t kc, float* dst) {
  int64_t kk = 0;
  if (mr == MR) {
    for (; kk + 8 <= kc; kk += 8) {
      __m256 r[8];
      for (int i = 0; i < MR; ++i) {
        r[i] = _mm256_loadu_ps(X + i * ldx + k0 + kk);
        if (ROUND) r[i] = round_bf16_8(r[i]);
      }
      r[6] = r[7] = _mm256_setzero_ps();
      transpose8(r);
      for (int t = 0; t < 8; ++t) _mm256_storeu_ps(dst + (kk + t) * MR, r[t]);
    }
  }
  for (; kk < kc; ++kk) {
    for (int i = 0; i < MR; ++i) {
      float v = i < mr ? X[i * ldx + k0 + kk] : 0.f;
      dst[kk * MR + i] = ROUND ? round_bf16_1(v) : v;
    }
  }
}

// ---- gemm driver -------------------------------------------------------------------------------------------

struct GemmJob {
  int64_t K;
  const float* X;
  int64_t ldx;
  const void* W;
  float* Y;
  int64_t ldy;
  bool accumulate;
  PackedTasks tasks;  // Y [M x N] split over the pool
  ThreadPool* pool;   // owns the packing buffers (one set per worker, grown on demand)
};

// Y = X W^T as C = A B with A = X and B = W^T: B's micro-panels are rows of W, converted (and rounded) to f32.
template <DType T, bool ROUND_W, bool ROUND_X>
void gemm_task(void* ctx, int64_t task, int thread) {
  const GemmJob& j = *static_cast<const GemmJob*>(ctx);
  packed_gemm_task(
      j.tasks, task, j.K, j.accumulate, j.Y, j.ldy, *j.pool, thread,
      [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* bp) {
        for (int64_t p = 0; p < (nc + NR - 1) / NR; ++p)
          pack_w_panel<T, ROUND_W>(j.W, j.K, n0 + p * NR, int(min64(NR, nc - p * NR)), k0, kc, bp + p * kc * NR);
      },
      [&](int64_t i, int mr, int64_t k0, int64_t kc, float* ap) {
        pack_x_panel<ROUND_X>(j.X + i * j.ldx, j.ldx, mr, k0, kc, ap);
      });
}

template <DType T>
void (*pick_gemm_task(bool bf16))(void*, int64_t, int) {
  if (!bf16) return gemm_task<T, false, false>;
  return T == DType::BF16 ? gemm_task<T, false, true> : gemm_task<T, true, true>;
}

// ---- gemv (few rows) ---------------------------------------------------------------------------------------

// bf16 weights need no conversion beyond bit placement. A 32-bit lane holding the pair (w[2j], w[2j+1]) gives
// w[2j+1] as a float by masking off the low half and w[2j] by shifting left 16: one op per 8 weights, no shuffle.
// The rows of X are reordered once per call to match (see avx2_gemv), so the pairs need no
// unpacking: each block of 16 activations is stored as its 8 even-index then its 8 odd-index elements.
constexpr int64_t kEvenOdd = 16;
// Software prefetch distance for the streamed rows of W. The hardware prefetcher alone left a core at ~60% of the
// bandwidth it reaches with this: R short interleaved streams (rows of W) are not what it tracks best.
constexpr int64_t kPrefetchBytes = 4096;

// Y[m][n + r] for m < MB, r < R: MB rows of X against R rows of W, the whole of K. X is already bf16-rounded in
// bf16 mode (and in the even/odd layout for bf16 weights); ROUND_W rounds the weights in registers.
// MB x R accumulators stay in registers (<= 12 ymm).
template <DType T, bool ROUND_W, int MB, int R>
void gemv_block(const float* X, int64_t ldx, const void* w, int64_t K, int64_t n, float* Y, int64_t ldy, bool acc) {
  __m256 s[MB][R];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) s[m][r] = _mm256_setzero_ps();
  int64_t k = 0;
  if (T == DType::BF16) {
    const uint16_t* w16 = static_cast<const uint16_t*>(w);
    const __m256i hi = _mm256_set1_epi32(int32_t(0xffff0000u));
    for (; k + kEvenOdd <= K; k += kEvenOdd) {
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(w16 + (n + r) * K + k) + kPrefetchBytes, _MM_HINT_T0);
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w16 + (n + r) * K + k));
        const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
        for (int m = 0; m < MB; ++m) {
          s[m][r] = _mm256_fmadd_ps(_mm256_loadu_ps(X + m * ldx + k), even, s[m][r]);
          s[m][r] = _mm256_fmadd_ps(_mm256_loadu_ps(X + m * ldx + k + 8), odd, s[m][r]);
        }
      }
    }
  } else {
    for (; k + 8 <= K; k += 8) {
      __m256 wv[R];
      for (int r = 0; r < R; ++r) {
        const int64_t at = ((n + r) * K + k) * (T == DType::F32 ? 4 : 2);
        _mm_prefetch(static_cast<const char*>(w) + at + kPrefetchBytes, _MM_HINT_T0);
        wv[r] = load8<T>(w, (n + r) * K + k);
        if (ROUND_W) wv[r] = round_bf16_8(wv[r]);
      }
      for (int m = 0; m < MB; ++m) {
        const __m256 xv = _mm256_loadu_ps(X + m * ldx + k);
        for (int r = 0; r < R; ++r) s[m][r] = _mm256_fmadd_ps(xv, wv[r], s[m][r]);
      }
    }
  }
  // The last K % 8 (K % 16 for bf16) elements: X keeps its natural order there.
  for (int m = 0; m < MB; ++m) {
    for (int r = 0; r < R; ++r) {
      float v = hsum(s[m][r]);
      for (int64_t t = k; t < K; ++t) {
        float wt = load1<T>(w, (n + r) * K + t);
        v += X[m * ldx + t] * (ROUND_W ? round_bf16_1(wt) : wt);
      }
      float* y = Y + m * ldy + n + r;
      *y = acc ? *y + v : v;
    }
  }
}

// Rows [n0, n1) of W against MB rows of X, R rows of W at a time, then one at a time for the remainder.
template <DType T, bool ROUND_W, int MB, int R>
void gemv_rows(const float* X, int64_t ldx, const void* w, int64_t K, int64_t n0, int64_t n1, float* Y, int64_t ldy,
               bool acc) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) gemv_block<T, ROUND_W, MB, R>(X, ldx, w, K, n, Y, ldy, acc);
  for (; n < n1; ++n) gemv_block<T, ROUND_W, MB, 1>(X, ldx, w, K, n, Y, ldy, acc);
}

struct GemvJob {
  int64_t M, N, K;
  const float* X;
  int64_t ldx;
  const void* W;
  float* Y;
  int64_t ldy;
  bool accumulate;
  int64_t rows_per_task;
};

template <DType T, bool ROUND_W>
void gemv_task(void* ctx, int64_t task, int) {
  const GemvJob& j = *static_cast<const GemvJob*>(ctx);
  const int64_t n_begin = task * j.rows_per_task, n_end = min64(j.N, n_begin + j.rows_per_task);
  // Sub-ranges of 16 rows of W: when M > 4 needs two passes over X, the second pass finds them in L1/L2.
  for (int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int64_t n1 = min64(n_end, n0 + 16);
    for (int64_t m = 0; m < j.M;) {
      const float* x = j.X + m * j.ldx;
      float* y = j.Y + m * j.ldy;
      const int64_t left = j.M - m;
      if (left >= 4) {
        gemv_rows<T, ROUND_W, 4, 2>(x, j.ldx, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 4;
      } else if (left == 3) {
        gemv_rows<T, ROUND_W, 3, 3>(x, j.ldx, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 3;
      } else if (left == 2) {
        gemv_rows<T, ROUND_W, 2, 4>(x, j.ldx, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 2;
      } else {
        gemv_rows<T, ROUND_W, 1, 4>(x, j.ldx, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 1;
      }
    }
  }
}

template <DType T>
void (*pick_gemv_task(bool bf16))(void*, int64_t, int) {
  return bf16 && T != DType::BF16 ? gemv_task<T, true> : gemv_task<T, false>;
}

}  // namespace

void avx2_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
               bool accumulate, ThreadPool& pool) {
  GemmJob j{W.cols, X, ldx, W.data, Y, ldy, accumulate, plan_packed_tasks(M, W.rows, pool.size()), &pool};
  const bool bf16 = compute == Compute::BF16;
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? pick_gemm_task<DType::F32>(bf16)
                                    : W.dtype == DType::F16 ? pick_gemm_task<DType::F16>(bf16)
                                                            : pick_gemm_task<DType::BF16>(bf16);
  pool.run(j.tasks.count, fn, &j);
}

void avx2_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
               bool accumulate, ThreadPool& pool) {
  const int64_t K = W.cols;
  GemvJob j{M, W.rows, K, X, ldx, W.data, Y, ldy, accumulate, 0};
  const bool bf16 = compute == Compute::BF16, even_odd = W.dtype == DType::BF16;
  if (bf16 || even_odd) {
    // Prepare the few activation rows once, on the calling thread, rather than once per row of W: bf16 rounding
    // (bf16 compute) and the even/odd order of each block of 16 (bf16 weights, see gemv_block).
    float* xr = pool.scratch(0, ThreadPool::Scratch::RowPrep, M * K);  // this thread is the pool's worker 0
    for (int64_t m = 0; m < M; ++m) {
      const float* x = X + m * ldx;
      float* d = xr + m * K;
      int64_t k = 0;
      if (even_odd) {
        for (; k + kEvenOdd <= K; k += kEvenOdd) {
          for (int64_t t = 0; t < kEvenOdd / 2; ++t) {
            d[k + t] = x[k + 2 * t];
            d[k + kEvenOdd / 2 + t] = x[k + 2 * t + 1];
          }
        }
      }
      for (; k < K; ++k) d[k] = x[k];
      if (bf16) {
        for (k = 0; k + 8 <= K; k += 8) _mm256_storeu_ps(d + k, round_bf16_8(_mm256_loadu_ps(d + k)));
        for (; k < K; ++k) d[k] = round_bf16_1(d[k]);
      }
    }
    j.X = xr;
    j.ldx = K;
  }
  // About 4 tasks per thread (of whole 16-row groups): balances a slow core without much scheduling overhead.
  const int threads = pool.size();
  const int64_t groups = (j.N + 15) / 16;
  j.rows_per_task = balanced_chunk(groups, threads, (groups + 4 * threads - 1) / (4 * threads)) * 16;
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? pick_gemv_task<DType::F32>(bf16)
                                    : W.dtype == DType::F16 ? pick_gemv_task<DType::F16>(bf16)
                                                            : pick_gemv_task<DType::BF16>(bf16);
  pool.run((j.N + j.rows_per_task - 1) / j.rows_per_task, fn, &j);
}

}  // namespace ln
