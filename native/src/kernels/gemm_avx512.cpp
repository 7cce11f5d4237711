// AVX-512 (F/BW/VL/DQ) kernels for Y = X * W^T in f32 arithmetic (semantics in kernels/gemm.h; reference in
// gemm_ref.cpp). Compiled with the AVX-512 flags (CMakeLists.txt, binding.gyp), only on x86, and only called after
// cpu_supports(CpuKernel::Avx512); anonymous namespace for the reason given in gemm_avx2.cpp.
//
// gemm: the blocking of gemm_avx2.cpp with a 14x32 register tile (28 zmm accumulators, 28 FMAs per 2 loads of B
// and 14 embedded broadcasts of A), 32-column micro-panels of W converted (and bf16-rounded for bf16 compute) to f32.
// bf16 compute here rounds both operands and multiplies in f32 (products of bf16 values are exact in f32): the
// semantics of Compute::BF16, for CPUs without AVX512_BF16 (gemm_avx512bf16.cpp uses vdpbf16ps instead).
// gemv (decode): gemm_avx2.cpp's streaming loop with 16-float (32 bf16) loads: memory-bound on reading W, so the point
// is fewer instructions per byte (one zmm load, two FMAs per 32 bf16 weights) leaving the loads free to stream.
#include <immintrin.h>

#include "kernels/avx512_blocks.h"
#include "kernels/gemm_kernels.h"

namespace ln {
namespace {

// Long reduction blocks: every block reads and writes the task's part of C once (M x N floats, usually far beyond
// L2), so fewer blocks mean less of that traffic, and the B micro-panel streams from L2 as well as from L1 does.
// One core, the 12 shapes of benchmarks/gemm (M 512-2048), ratio to OpenBLAS sgemm in the same rounds: KC 256
// (a 32 KB micro-panel in L1) 0.88-1.01, KC 512 0.92-1.02, KC 1024 1.02-1.08.
constexpr int64_t kKc = 1024;        // Bp micro-panel 1024 x 32 x 4 = 128 KB in L2, Ap micro-panel 56 KB
constexpr int64_t kMc = 8 * kMr512;  // Ap block 112 x 1024 x 4 = 448 KB in L2 (1-2 MB per core on AVX-512 CPUs)
constexpr int64_t kNcPanels = 32;  // at most 32 x 32 = 1024 columns per task

// Bp[kk][j] = W[n + j][k0 + kk] for j < 32 (zero past nr): 8x8 transposes of rows converted by load8.
template <DType T, bool ROUND>
void pack_w_panel32(const void* w, int64_t K, int64_t n, int nr, int64_t k0, int64_t kc, float* dst) {
  int64_t kk = 0;
  if (nr == kNr512) {
    for (; kk + 8 <= kc; kk += 8)
      for (int g = 0; g < 4; ++g) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) {
          r[j] = load8<T>(w, (n + g * 8 + j) * K + k0 + kk);
          if (ROUND) r[j] = round_bf16_8(r[j]);
        }
        transpose8(r);
        for (int t = 0; t < 8; ++t) _mm256_store_ps(dst + (kk + t) * kNr512 + g * 8, r[t]);
      }
  }
  for (; kk < kc; ++kk)
    for (int j = 0; j < kNr512; ++j) {
      float v = 0.f;
      if (j < nr) {
        v = load1<T>(w, (n + j) * K + k0 + kk);
        if (ROUND) v = round_bf16_1(v);
      }
      dst[kk * kNr512 + j] = v;
    }
}

template <int R>
void kernel_f32(int64_t kc, const void* a, const void* b, float* c, int64_t ldc, bool add, int nr) {
  kernel_f32_rx32<R>(kc, static_cast<const float*>(a), static_cast<const float*>(b), c, ldc, add, nr);
}

Kernel512 pick_f32_kernel(int mr) {
  static constexpr Kernel512 by_rows[kMr512 + 1] = {
      kernel_f32<1>, kernel_f32<1>, kernel_f32<2>,  kernel_f32<3>,  kernel_f32<4>,  kernel_f32<5>,  kernel_f32<6>, kernel_f32<7>,
      kernel_f32<8>, kernel_f32<9>, kernel_f32<10>, kernel_f32<11>, kernel_f32<12>, kernel_f32<13>, kernel_f32<14>};
  return by_rows[mr];
}

struct GemmJob {
  int64_t K;
  const float* X;
  int64_t ldx;
  const void* W;
  float* Y;
  int64_t ldy;
  bool accumulate;
  Tasks512 tasks;
  ThreadPool* pool;
};

template <DType T, bool ROUND_W, bool ROUND_X>
void gemm_task(void* ctx, int64_t task, int thread) {
  const GemmJob& j = *static_cast<const GemmJob*>(ctx);
  packed_task512<float, 1, kKc, kMc>(
      j.tasks, task, j.K, j.accumulate, j.Y, j.ldy, *j.pool, thread,
      [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* bp) {
        for (int64_t p = 0; p < (nc + kNr512 - 1) / kNr512; ++p)
          pack_w_panel32<T, ROUND_W>(j.W, j.K, n0 + p * kNr512, int(min64(kNr512, nc - p * kNr512)), k0, kc,
                                     bp + p * kc * kNr512);
      },
      [&](int64_t i, int mr, int64_t k0, int64_t kc, float* ap) {
        pack_x_panel14<ROUND_X>(j.X + i * j.ldx, j.ldx, mr, k0, kc, ap);
      },
      pick_f32_kernel);
}

template <DType T>
void (*pick_gemm_task(bool bf16))(void*, int64_t, int) {
  if (!bf16) return gemm_task<T, false, false>;
  return T == DType::BF16 ? gemm_task<T, false, true> : gemm_task<T, true, true>;
}


// ---- gemv (few rows): gemm_avx2.cpp's streaming loop on zmm ------------------------------------------------------

// bf16 weights: a 32-bit lane holding the pair (w[2j], w[2j+1]) gives w[2j+1] by masking off the low half and w[2j]
// by shifting left 16; X is stored per block of 32 as its 16 even-index then its 16 odd-index elements.
constexpr int64_t kEvenOdd = 32;
constexpr int64_t kPrefetchBytes = 4096;  // software prefetch distance along each streamed row of W

// The sum of the 16 lanes (the two halves added, then avx2_blocks.h's hsum; not _mm512_reduce_add_ps, whose GCC 12
// header trips -Wuninitialized).
inline float hsum16(__m512 v) {
  return hsum(_mm512_castps512_ps256(_mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e))));
}

// Y[m][n + r * step] for m < MB, r < R over the whole of K (X prepared as described in avx512_gemv). step = 1: R
// adjacent rows of W, software-prefetched (the M > 1 path); step > 1: see gemv_streams.
// ALIGNED (bf16 weights, MB = 1, K >= 32, rows at multiples of 4 bytes): rows read by Bf16AlignedRow, same lanes.
template <DType T, bool ROUND_W, int MB, int R, bool PREFETCH = true, bool ALIGNED = false>
void gemv_block(const float* X, int64_t ldx, const void* w, int64_t K, int64_t n, float* Y, int64_t ldy, bool acc,
                int64_t step = 1) {
  static_assert(!ALIGNED || (T == DType::BF16 && MB == 1), "aligned row reads: bf16 weights, one row of X");
  __m512 s[MB][R];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) s[m][r] = _mm512_setzero_ps();
  int64_t k = 0;
  if (T == DType::BF16) {
    const uint16_t* w16 = static_cast<const uint16_t*>(w);
    const __m512i hi = _mm512_set1_epi32(int32_t(0xffff0000u));
    Bf16AlignedRow rows[ALIGNED ? R : 1];
    if (ALIGNED)
      for (int r = 0; r < R; ++r) rows[r].start(w16 + (n + r * step) * K, K);
    // last: the final block of 32, where an aligned row may need a masked load past the row's end.
    const auto block = [&](bool last) __attribute__((always_inline)) {
      for (int r = 0; r < R; ++r) {
        if (PREFETCH) _mm_prefetch(reinterpret_cast<const char*>(w16 + (n + r * step) * K + k) + kPrefetchBytes, _MM_HINT_T0);
        __m512i v;
        if constexpr (ALIGNED) v = last ? rows[r].last() : rows[r].next();
        else v = in_register(_mm512_loadu_si512(w16 + (n + r * step) * K + k));
        const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
        for (int m = 0; m < MB; ++m) {
          s[m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(X + m * ldx + k), even, s[m][r]);
          s[m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(X + m * ldx + k + 16), odd, s[m][r]);
        }
      }
    };
    for (; k + 2 * kEvenOdd <= K; k += kEvenOdd) block(false);
    for (; k + kEvenOdd <= K; k += kEvenOdd) block(true);
  } else {
    for (; k + 16 <= K; k += 16) {
      __m512 wv[R];
      for (int r = 0; r < R; ++r) {
        const int64_t at = ((n + r * step) * K + k) * (T == DType::F32 ? 4 : 2);
        if (PREFETCH) _mm_prefetch(static_cast<const char*>(w) + at + kPrefetchBytes, _MM_HINT_T0);
        wv[r] = load16<T>(w, (n + r * step) * K + k);
        if (ROUND_W) wv[r] = round_bf16_16(wv[r]);
      }
      for (int m = 0; m < MB; ++m) {
        const __m512 xv = _mm512_loadu_ps(X + m * ldx + k);
        for (int r = 0; r < R; ++r) s[m][r] = _mm512_fmadd_ps(xv, wv[r], s[m][r]);
      }
    }
  }
  // The last K % 16 (K % 32 for bf16) elements: X keeps its natural order there.
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) {
      float v = hsum16(s[m][r]);
      for (int64_t t = k; t < K; ++t) {
        const float wt = load1<T>(w, (n + r * step) * K + t);
        v += X[m * ldx + t] * (ROUND_W ? round_bf16_1(wt) : wt);
      }
      float* y = Y + m * ldy + n + r * step;
      *y = acc ? *y + v : v;
    }
}

template <DType T, bool ROUND_W, int MB, int R>
void gemv_rows(const float* X, int64_t ldx, const void* w, int64_t K, int64_t n0, int64_t n1, float* Y, int64_t ldy,
               bool acc) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) gemv_block<T, ROUND_W, MB, R>(X, ldx, w, K, n, Y, ldy, acc);
  for (; n < n1; ++n) gemv_block<T, ROUND_W, MB, 1>(X, ldx, w, K, n, Y, ldy, acc);
}

// One row of X (M = 1, decoding), rows [n0, n1) of W: the range is cut into R = 4 equal parts read side by side,
// row i of every part in one gemv_block, so the task reads W as 4 long linear streams (why: gemm_avx512bf16.cpp,
// gemv_streams). bf16 weights, f32 compute, one core, CPU time: adjacent rows 0.68-0.81 of the read loop, this
// 0.91-0.97 (896→4864, 8192→2048).
template <DType T, bool ROUND_W>
void gemv_streams(const float* X, const void* w, int64_t K, int64_t n0, int64_t n1, float* Y, bool acc) {
  constexpr int R = 4;
  const int64_t part = (n1 - n0) / R;
  if constexpr (T == DType::BF16)
    if (Bf16AlignedRow::applies(w, K)) {
      for (int64_t i = 0; i < part; ++i) gemv_block<T, ROUND_W, 1, R, false, true>(X, 0, w, K, n0 + i, Y, 0, acc, part);
      for (int64_t n = n0 + R * part; n < n1; ++n) gemv_block<T, ROUND_W, 1, 1, false, true>(X, 0, w, K, n, Y, 0, acc);
      return;
    }
  for (int64_t i = 0; i < part; ++i) gemv_block<T, ROUND_W, 1, R, false>(X, 0, w, K, n0 + i, Y, 0, acc, part);
  for (int64_t n = n0 + R * part; n < n1; ++n) gemv_block<T, ROUND_W, 1, 1, false>(X, 0, w, K, n, Y, 0, acc);
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
  if (j.M == 1) return gemv_streams<T, ROUND_W>(j.X, j.W, j.K, n_begin, n_end, j.Y, j.accumulate);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int64_t n1 = min64(n_end, n0 + 16);
    for (int64_t m = 0; m < j.M;) {
      const float* x = j.X + m * j.ldx;
      float* y = j.Y + m * j.ldy;
      const int64_t left = j.M - m;
      if (left >= 4) {
        gemv_rows<T, ROUND_W, 4, 4>(x, j.ldx, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 4;
      } else if (left == 3) {
        gemv_rows<T, ROUND_W, 3, 4>(x, j.ldx, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 3;
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

void avx512_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                 bool accumulate, ThreadPool& pool) {
  GemmJob j{W.cols, X, ldx, W.data, Y, ldy, accumulate, plan_tasks512(M, W.rows, pool.size(), kNcPanels), &pool};
  const bool bf16 = compute == Compute::BF16;
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? pick_gemm_task<DType::F32>(bf16)
                                    : W.dtype == DType::F16 ? pick_gemm_task<DType::F16>(bf16)
                                                            : pick_gemm_task<DType::BF16>(bf16);
  pool.run(j.tasks.count, fn, &j);
}

void avx512_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                 bool accumulate, ThreadPool& pool) {
  const int64_t K = W.cols;
  GemvJob j{M, W.rows, K, X, ldx, W.data, Y, ldy, accumulate, 0};
  const bool bf16 = compute == Compute::BF16, even_odd = W.dtype == DType::BF16;
  if (bf16 || even_odd) {
    // The few activation rows, prepared once on the calling thread (pool worker 0): bf16-rounded for bf16 compute,
    // and each block of 32 in even/odd order for bf16 weights (see gemv_block).
    float* xr = pool.scratch(0, ThreadPool::Scratch::RowPrep, M * K);
    for (int64_t m = 0; m < M; ++m) {
      const float* x = X + m * ldx;
      float* d = xr + m * K;
      int64_t k = 0;
      if (even_odd)
        for (; k + kEvenOdd <= K; k += kEvenOdd)
          for (int64_t t = 0; t < kEvenOdd / 2; ++t) {
            d[k + t] = x[k + 2 * t];
            d[k + kEvenOdd / 2 + t] = x[k + 2 * t + 1];
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
  const int threads = pool.size();
  const int64_t groups = (j.N + 15) / 16;
  j.rows_per_task = balanced_chunk(groups, threads, (groups + 4 * threads - 1) / (4 * threads)) * 16;
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? pick_gemv_task<DType::F32>(bf16)
                                    : W.dtype == DType::F16 ? pick_gemv_task<DType::F16>(bf16)
                                                            : pick_gemv_task<DType::BF16>(bf16);
  pool.run((j.N + j.rows_per_task - 1) / j.rows_per_task, fn, &j);
}

}  // namespace ln
