// AVX512_BF16 kernels for Y = X * W^T in bf16 compute (Compute::BF16: activations and weights rounded to bf16,
// exact products, f32 accumulation), on vdpbf16ps: each instruction takes 16 pairs of bf16 of each operand and adds
// both products of a pair to an f32 lane. f32 compute goes to gemm_avx512.cpp. Compiled with the AVX-512 flags plus
// -mavx512bf16, only on x86, only called after cpu_supports(CpuKernel::Avx512Bf16).
//
// Numerics against gemm_xwt_ref (which adds one product at a time in k order):
//   - the bf16 operands are the same values: the packers convert with vcvtne2ps2bf16, round-to-nearest-even like
//     round_bf16 (dtype.h), NaN stays NaN;
//   - each product is exact, as in the reference; vdpbf16ps adds the two products of a pair to the lane one after
//     the other, each addition rounded to f32 (Intel's definition; the same error model as the reference's, only
//     the order of the k terms differs: pairs, and 32 lanes per row of C instead of one running sum);
//   - vdpbf16ps treats bf16 inputs below 2^-126 (subnormal) as zero and flushes subnormal results: a product
//     smaller than 2^-126 in magnitude is lost (each such loss is below 2^-126, far under the rounding error of
//     any sum that matters; the reference keeps them).
// So |y - exact| stays within the float32 accumulation bound the tests apply to every family
// (kTolUnits * 2^-24 * sqrt(K) * sum |x_k w_k|, native/tests/test_gemm.cpp).
//
// Blocking as gemm_avx512.cpp with the micro-panels holding bf16 pairs: Ap[u][14] and Bp[u][32] are uint32, u
// indexing pairs (k, k+1) of the reduction; a 14x32 tile is 28 zmm accumulators, 28 vdpbf16ps per 2 loads of B and
// 14 broadcasts of A (64 multiply-adds per instruction instead of 16).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx512_blocks.h"
#include "kernels/gemm_kernels.h"

namespace ln {
namespace {

constexpr int64_t kKc = 512;          // reduction elements per block: Bp micro-panel 256 pairs x 32 x 4 = 32 KB
constexpr int64_t kMc = 12 * kMr512;  // Ap block 168 x 256 pairs x 4 = 168 KB in L2
constexpr int64_t kNcPanels = 32;

// The bf16 bits of f (round to nearest even, as round_bf16), as the low 16 bits of the result.
inline uint32_t bf16_bits(float f) {
  const float r = round_bf16_1(f);
  uint32_t u;
  std::memcpy(&u, &r, 4);
  return u >> 16;
}

// 16 consecutive elements of a row as 8 pairs of bf16 (element 2p in the low half of pair p).
template <DType T>
inline __m256 pairs8(const void* src, int64_t i) {
  if (T == DType::BF16)
    return _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(src) + i)));
  const __m256bh h = _mm256_cvtne2ps_pbh(load8<T>(src, i + 8), load8<T>(src, i));
  __m256 out;
  std::memcpy(&out, &h, 32);
  return out;
}

// Bp[u][j] = (W[n + j][k0 + 2u], W[n + j][k0 + 2u + 1]) as bf16 pairs for j < 32 (zero past nr, and a zero
// second half past kc): 8x8 transposes of 32-bit pairs.
template <DType T>
void pack_w_pairs(const void* w, int64_t K, int64_t n, int nr, int64_t k0, int64_t kc, uint32_t* dst) {
  int64_t kk = 0;
  float* d = reinterpret_cast<float*>(dst);
  if (nr == kNr512) {
    for (; kk + 16 <= kc; kk += 16)
      for (int g = 0; g < 4; ++g) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) r[j] = pairs8<T>(w, (n + g * 8 + j) * K + k0 + kk);
        transpose8(r);
        for (int t = 0; t < 8; ++t) _mm256_store_ps(d + (kk / 2 + t) * kNr512 + g * 8, r[t]);
      }
  }
  for (; kk < kc; kk += 2)
    for (int j = 0; j < kNr512; ++j) {
      uint32_t v = 0;
      if (j < nr) {
        v = bf16_bits(load1<T>(w, (n + j) * K + k0 + kk));
        if (kk + 1 < kc) v |= bf16_bits(load1<T>(w, (n + j) * K + k0 + kk + 1)) << 16;
      }
      dst[(kk / 2) * kNr512 + j] = v;
    }
}

// Ap[u][i] = (X[i][k0 + 2u], X[i][k0 + 2u + 1]) as bf16 pairs for i < 14 (zero past mr). Full panels: rows 0..7
// and 8..13 (+2 zero rows) transposed in 8x8 blocks of pairs; the second block's store spills 2 pairs onto the next
// column (written afterwards) or past the panel (the A buffer's slack), as pack_x_panel14.
void pack_x_pairs(const float* X, int64_t ldx, int mr, int64_t k0, int64_t kc, uint32_t* dst) {
  int64_t kk = 0;
  float* d = reinterpret_cast<float*>(dst);
  if (mr == kMr512) {
    for (; kk + 16 <= kc; kk += 16) {
      __m256 r0[8], r1[8];
      for (int i = 0; i < 8; ++i) r0[i] = pairs8<DType::F32>(X + i * ldx, k0 + kk);
      for (int i = 0; i < 6; ++i) r1[i] = pairs8<DType::F32>(X + (8 + i) * ldx, k0 + kk);
      r1[6] = r1[7] = _mm256_setzero_ps();
      transpose8(r0);
      transpose8(r1);
      for (int t = 0; t < 8; ++t) {
        _mm256_storeu_ps(d + (kk / 2 + t) * kMr512, r0[t]);
        _mm256_storeu_ps(d + (kk / 2 + t) * kMr512 + 8, r1[t]);
      }
    }
  }
  for (; kk < kc; kk += 2)
    for (int i = 0; i < kMr512; ++i) {
      uint32_t v = 0;
      if (i < mr) {
        v = bf16_bits(X[i * ldx + k0 + kk]);
        if (kk + 1 < kc) v |= bf16_bits(X[i * ldx + k0 + kk + 1]) << 16;
      }
      dst[(kk / 2) * kMr512 + i] = v;
    }
}

// C[0..R)[0..nr) (=|+=) sum over pairs u < ku of the dot products of Ap[u][i] and Bp[u][0..32).
template <int R>
void kernel_bf16(int64_t ku, const void* av, const void* bv, float* c, int64_t ldc, bool add, int nr) {
  const uint32_t* a = static_cast<const uint32_t*>(av);
  const __m512i* b = static_cast<const __m512i*>(bv);
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t u = 0; u < ku; ++u) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int32_t(a[i]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
    }
    a += kMr512;
    b += 2;
  }
  store_tile<R>(acc0, acc1, c, ldc, add, nr);
}

Kernel512 pick_bf16_kernel(int mr) {
  static constexpr Kernel512 by_rows[kMr512 + 1] = {
      kernel_bf16<1>,  kernel_bf16<1>,  kernel_bf16<2>,  kernel_bf16<3>,  kernel_bf16<4>,
      kernel_bf16<5>,  kernel_bf16<6>,  kernel_bf16<7>,  kernel_bf16<8>,  kernel_bf16<9>,
      kernel_bf16<10>, kernel_bf16<11>, kernel_bf16<12>, kernel_bf16<13>, kernel_bf16<14>};
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

template <DType T>
void gemm_task(void* ctx, int64_t task, int thread) {
  const GemmJob& j = *static_cast<const GemmJob*>(ctx);
  packed_task512<uint32_t, 2, kKc, kMc>(
      j.tasks, task, j.K, j.accumulate, j.Y, j.ldy, *j.pool, thread,
      [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, uint32_t* bp) {
        const int64_t ku = (kc + 1) / 2;
        for (int64_t p = 0; p < (nc + kNr512 - 1) / kNr512; ++p)
          pack_w_pairs<T>(j.W, j.K, n0 + p * kNr512, int(min64(kNr512, nc - p * kNr512)), k0, kc,
                          bp + p * ku * kNr512);
      },
      [&](int64_t i, int mr, int64_t k0, int64_t kc, uint32_t* ap) {
        pack_x_pairs(j.X + i * j.ldx, j.ldx, mr, k0, kc, ap);
      },
      pick_bf16_kernel);
}


// ---- gemv (few rows, bf16 compute): rows of W streamed once, 32 weights per vdpbf16ps ----------------------------

constexpr int64_t kPrefetchBytes = 4096;  // software prefetch distance along each streamed row of W

// 32 consecutive weights of a row as 16 bf16 pairs (bf16 weights: one load; f32/f16: converted, nearest even).
template <DType T>
inline __m512bh pairs16(const void* w, int64_t i) {
  if (T == DType::BF16) return (__m512bh)_mm512_loadu_si512(static_cast<const uint16_t*>(w) + i);
  return _mm512_cvtne2ps_pbh(load16<T>(w, i + 16), load16<T>(w, i));
}

// The sum of the 16 lanes (not _mm512_reduce_add_ps: see avx512_blocks.h on GCC 12).
inline float hsum16(__m512 v) {
  return hsum(_mm512_castps512_ps256(_mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e))));
}

// Y[m][n + r * step] for m < MB, r < R over the whole of K; X is MB rows of bf16 pairs (row stride ldp pairs).
// step = 1: R adjacent rows of W, software-prefetched (the M > 1 path); step > 1: see gemv_streams.
// ALIGNED (bf16 weights, MB = 1, K >= 32, rows at multiples of 4 bytes): the rows are read by Bf16AlignedRow, same lanes.
template <DType T, int MB, int R, bool PREFETCH = true, bool ALIGNED = false>
void gemv_block(const uint32_t* X, int64_t ldp, const void* w, int64_t K, int64_t n, float* Y, int64_t ldy, bool acc,
                int64_t step = 1) {
  static_assert(!ALIGNED || (T == DType::BF16 && MB == 1), "aligned row reads: bf16 weights, one row of X");
  __m512 s[MB][R];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) s[m][r] = _mm512_setzero_ps();
  Bf16AlignedRow rows[ALIGNED ? R : 1];
  if (ALIGNED)
    for (int r = 0; r < R; ++r) rows[r].start(static_cast<const uint16_t*>(w) + (n + r * step) * K, K);
  int64_t k = 0;
  // last: the final block of 32, where an aligned row may need a masked load past the row's end.
  const auto block = [&](bool last) __attribute__((always_inline)) {
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) {
      if (PREFETCH)
        _mm_prefetch(static_cast<const char*>(w) + ((n + r * step) * K + k) * (T == DType::F32 ? 4 : 2) +
                         kPrefetchBytes, _MM_HINT_T0);
      if constexpr (ALIGNED) wv[r] = (__m512bh)(last ? rows[r].last() : rows[r].next());
      else wv[r] = pairs16<T>(w, (n + r * step) * K + k);
    }
    for (int m = 0; m < MB; ++m) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(X + m * ldp + k / 2);
      for (int r = 0; r < R; ++r) s[m][r] = _mm512_dpbf16_ps(s[m][r], xv, wv[r]);
    }
  };
  for (; k + 64 <= K; k += 32) block(false);
  for (; k + 32 <= K; k += 32) block(true);
  // The last K % 32 elements: one product at a time (exact bf16 products, f32 sums, as the reference).
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) {
      float v = hsum16(s[m][r]);
      for (int64_t t = k; t < K; ++t) {
        const uint32_t pair = X[m * ldp + t / 2], xb = (t % 2 ? pair >> 16 : pair & 0xffffu) << 16;
        float xt;
        std::memcpy(&xt, &xb, 4);
        v += xt * round_bf16_1(load1<T>(w, (n + r * step) * K + t));
      }
      float* y = Y + m * ldy + n + r * step;
      *y = acc ? *y + v : v;
    }
}

template <DType T, int MB, int R>
void gemv_rows(const uint32_t* X, int64_t ldp, const void* w, int64_t K, int64_t n0, int64_t n1, float* Y,
               int64_t ldy, bool acc) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) gemv_block<T, MB, R>(X, ldp, w, K, n, Y, ldy, acc);
  for (; n < n1; ++n) gemv_block<T, MB, 1>(X, ldp, w, K, n, Y, ldy, acc);
}

// One row of X (M = 1, decoding), rows [n0, n1) of W: the range is cut into R = 4 equal parts read side by side,
// row i of every part in one gemv_block, so the task reads W as 4 long linear streams. R adjacent rows (the M > 1
// loop) are R short streams that the hardware prefetchers lose at every row end (a 896-wide bf16 row is 28 cache
// lines), one row at a time is one stream, too few misses in flight; measured on one core (CPU time, 896→4864 and
// 8192→2048, benchmarks/gemm/bench_gemv.cpp): 0.64-0.88 and 0.72-0.80 of the read loop, this 0.94-1.05. No
// software prefetch: with it the adjacent-rows loop measured 0.80-0.83, without 0.88-0.95 (K = 2048).
template <DType T>
void gemv_streams(const uint32_t* X, const void* w, int64_t K, int64_t n0, int64_t n1, float* Y, bool acc) {
  constexpr int R = 4;
  const int64_t part = (n1 - n0) / R;
  if constexpr (T == DType::BF16)
    if (Bf16AlignedRow::applies(w, K)) {
      for (int64_t i = 0; i < part; ++i) gemv_block<T, 1, R, false, true>(X, 0, w, K, n0 + i, Y, 0, acc, part);
      for (int64_t n = n0 + R * part; n < n1; ++n) gemv_block<T, 1, 1, false, true>(X, 0, w, K, n, Y, 0, acc);
      return;
    }
  for (int64_t i = 0; i < part; ++i) gemv_block<T, 1, R, false>(X, 0, w, K, n0 + i, Y, 0, acc, part);
  for (int64_t n = n0 + R * part; n < n1; ++n) gemv_block<T, 1, 1, false>(X, 0, w, K, n, Y, 0, acc);
}

struct GemvJob {
  int64_t M, N, K;
  const uint32_t* X;  // bf16 pairs
  int64_t ldp;
  const void* W;
  float* Y;
  int64_t ldy;
  bool accumulate;
  int64_t rows_per_task;
};

template <DType T>
void gemv_task(void* ctx, int64_t task, int) {
  const GemvJob& j = *static_cast<const GemvJob*>(ctx);
  const int64_t n_begin = task * j.rows_per_task, n_end = min64(j.N, n_begin + j.rows_per_task);
  if (j.M == 1) return gemv_streams<T>(j.X, j.W, j.K, n_begin, n_end, j.Y, j.accumulate);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int64_t n1 = min64(n_end, n0 + 16);
    for (int64_t m = 0; m < j.M;) {
      const uint32_t* x = j.X + m * j.ldp;
      float* y = j.Y + m * j.ldy;
      const int64_t left = j.M - m;
      if (left >= 4) {
        gemv_rows<T, 4, 4>(x, j.ldp, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 4;
      } else if (left == 3) {
        gemv_rows<T, 3, 4>(x, j.ldp, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 3;
      } else if (left == 2) {
        gemv_rows<T, 2, 4>(x, j.ldp, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 2;
      } else {
        gemv_rows<T, 1, 4>(x, j.ldp, j.W, j.K, n0, n1, y, j.ldy, j.accumulate), m += 1;
      }
    }
  }
}

}  // namespace

void avx512bf16_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy,
                     Compute compute, bool accumulate, ThreadPool& pool) {
  if (compute != Compute::BF16) return avx512_gemm(M, X, ldx, W, Y, ldy, compute, accumulate, pool);
  GemmJob j{W.cols, X, ldx, W.data, Y, ldy, accumulate, plan_tasks512(M, W.rows, pool.size(), kNcPanels), &pool};
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? gemm_task<DType::F32>
                                    : W.dtype == DType::F16 ? gemm_task<DType::F16>
                                                            : gemm_task<DType::BF16>;
  pool.run(j.tasks.count, fn, &j);
}

void avx512bf16_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy,
                     Compute compute, bool accumulate, ThreadPool& pool) {
  if (compute != Compute::BF16) return avx512_gemv(M, X, ldx, W, Y, ldy, compute, accumulate, pool);
  const int64_t K = W.cols, Kp = (K + 1) / 2;  // pairs per row of X
  // The few activation rows as bf16 pairs, once, on the calling thread (pool worker 0).
  uint32_t* xp = reinterpret_cast<uint32_t*>(pool.scratch(0, ThreadPool::Scratch::RowPrep, M * Kp));
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * ldx;
    float* d = reinterpret_cast<float*>(xp + m * Kp);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) _mm256_storeu_ps(d + k / 2, pairs8<DType::F32>(x, k));
    for (; k < K; k += 2) xp[m * Kp + k / 2] = bf16_bits(x[k]) | (k + 1 < K ? bf16_bits(x[k + 1]) << 16 : 0u);
  }
  GemvJob j{M, W.rows, K, xp, Kp, W.data, Y, ldy, accumulate, 0};
  const int threads = pool.size();
  const int64_t groups = (j.N + 15) / 16;
  j.rows_per_task = balanced_chunk(groups, threads, (groups + 4 * threads - 1) / (4 * threads)) * 16;
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? gemv_task<DType::F32>
                                    : W.dtype == DType::F16 ? gemv_task<DType::F16>
                                                            : gemv_task<DType::BF16>;
  pool.run((j.N + j.rows_per_task - 1) / j.rows_per_task, fn, &j);
}

}  // namespace ln
