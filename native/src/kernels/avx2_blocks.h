// Building blocks shared by the AVX2 kernel files (gemm_avx2.cpp, gemm_backward_avx2.cpp,
// attention_kernels_avx2.cpp, ops_avx2.cpp) and, through avx512_blocks.h, the AVX-512 ones. Include it ONLY from
// *_avx2.cpp / *_avx512*.cpp files, which are compiled with -mavx2 -mfma -mf16c (and more): everything here is in an anonymous namespace, so each of those files gets its own internal copy and the
// linker can never hand an AVX body to portable code (the SIGILL hazard described in gemm_avx2.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/gemm_kernels.h"

namespace ln {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// 8 consecutive elements starting at element i, as f32. Unaligned loads: checkpoints are memory-mapped at any
// 2-byte offset. bf16 -> f32 is a 16-bit shift; f16 -> f32 is F16C (exact, subnormals included).
template <DType T>
inline __m256 load8(const void* w, int64_t i) {
  if (T == DType::F32) return _mm256_loadu_ps(static_cast<const float*>(w) + i);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
  if (T == DType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// One element as f32, through memcpy (the pointer may be misaligned for its type).
template <DType T>
inline float load1(const void* w, int64_t i) {
  if (T == DType::F32) {
    float f;
    std::memcpy(&f, static_cast<const char*>(w) + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const char*>(w) + 2 * i, 2);
  if (T == DType::F16) return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even to bf16, NaN kept quiet: the same bits as ln::round_bf16 (dtype.h), 8 lanes at a time.
inline __m256 round_bf16_8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i hi_mask = _mm256_set1_epi32(int32_t(0xffff0000u));
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), hi_mask);
  __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                      _mm256_set1_epi32(0x7f800000));
  __m256i quiet = _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), hi_mask);
  return _mm256_castsi256_ps(_mm256_blendv_epi8(r, quiet, is_nan));
}

inline float round_bf16_1(float f) { return _mm256_cvtss_f32(round_bf16_8(_mm256_set1_ps(f))); }

// The sum of the 8 lanes of v.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// In-place transpose of 8 rows of 8 floats: r[t] becomes column t.
inline void transpose8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// ---- the 6x16 GEMM microkernels (gemm_avx2.cpp: forward, gemm_backward_avx2.cpp: dX and dW) ----------------
// Both pack A into MR-tall micro-panels Ap[k][MR] and B into NR-wide ones Bp[k][NR] (64-byte aligned). Every
// version sums each output element over k in the same order with the same FMAs, so the tail kernels give the
// same bits as the full one.

constexpr int MR = 6;   // rows of C per microkernel: 6 x 2 accumulators + 2 B vectors + 1 broadcast = 15 ymm
constexpr int NR = 16;  // columns of C per microkernel: two ymm

// C[0..6)[0..16) (=|+=) Ap[k][0..6) x Bp[k][0..16) summed over k < kc: 12 ymm accumulators, 12 FMAs per 2 loads
// and 6 broadcasts.
inline void kernel_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    a += MR;
    b += NR;
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    __m256 v0 = acc[i][0], v1 = acc[i][1];
    if (add) {
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, v0);
    _mm256_storeu_ps(ci + 8, v1);
  }
}

// The same for the last R < MR rows of a block (M = 1..5 rows: small batches, an LM-head chunk's tail), without
// spending FMAs on the zero rows of the panel. Accumulators in registers (R <= 5: 10 ymm).
template <int R>
inline void kernel_rx16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  __m256 acc0[R], acc1[R];
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
    }
    a += MR;
    b += NR;
  }
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m256 v0 = acc0[i], v1 = acc1[i];
    if (add) {
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, v0);
    _mm256_storeu_ps(ci + 8, v1);
  }
}

// mr x 16 rows of C (1 <= mr <= MR) into c with row stride ldc.
inline void kernel_mr(int mr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  switch (mr) {
    case 6: kernel_6x16(kc, a, b, c, ldc, add); break;
    case 5: kernel_rx16<5>(kc, a, b, c, ldc, add); break;
    case 4: kernel_rx16<4>(kc, a, b, c, ldc, add); break;
    case 3: kernel_rx16<3>(kc, a, b, c, ldc, add); break;
    case 2: kernel_rx16<2>(kc, a, b, c, ldc, add); break;
    default: kernel_rx16<1>(kc, a, b, c, ldc, add); break;
  }
}

// A tile narrower than NR (the last columns): computed into a local buffer, then the valid part copied.
inline void kernel_edge(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add, int mr,
                        int nr) {
  alignas(32) float tile[MR * NR];
  kernel_mr(mr, kc, a, b, tile, NR, false);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = add ? c[i * ldc + j] + tile[i * NR + j] : tile[i * NR + j];
}

// ---- the packed GEMM driver (GotoBLAS/BLIS blocking), for the forward and the backward products ------------

constexpr int64_t KC = 256;        // Bp micro-panel KC x NR x 4 = 16 KB: half of the 32 KB L1
constexpr int64_t MC = 120;        // Ap block MC x KC x 4 = 120 KB: well inside the 512 KB L2 next to Bp traffic
constexpr int64_t NC_PANELS = 64;  // at most 64 x 16 = 1024 columns per task: Bp = 1 MB per thread in L3

// How C [rows x cols] is split into tasks over `threads` workers: whole micro-panels of columns, about the same
// share per thread; the rows too (whole MR blocks) when there are too few columns for the threads (N <= 16 on 2
// threads, a LoRA rank of 8), each such task then packing its own B.
struct PackedTasks {
  int64_t rows = 0, cols = 0;
  int64_t cols_per_task = 0;  // multiple of NR
  int64_t rows_per_task = 0;  // multiple of MR (all rows unless the columns alone cannot keep the threads busy)
  int64_t n_col_tasks = 0, count = 0;
};

inline PackedTasks plan_packed_tasks(int64_t rows, int64_t cols, int threads) {
  PackedTasks t;
  t.rows = rows;
  t.cols = cols;
  t.cols_per_task = balanced_chunk((cols + NR - 1) / NR, threads, NC_PANELS) * NR;
  t.n_col_tasks = (cols + t.cols_per_task - 1) / t.cols_per_task;
  t.rows_per_task = rows;
  if (t.n_col_tasks < threads && rows > MR) {
    const int64_t row_blocks = (rows + MR - 1) / MR;
    t.rows_per_task = balanced_chunk(row_blocks, threads, (row_blocks + threads - 1) / threads) * MR;
  }
  t.count = t.n_col_tasks * ((rows + t.rows_per_task - 1) / t.rows_per_task);
  return t;
}

// Task `task` of C (=|+=) A B over a reduction of length `red`, C with row stride ldc. For the task's rows
// [m0, m1) and columns [c0, c1):
//   for each block of KC along the reduction:  pack_b(r0, kc, c0, nc, Bp): NR-wide micro-panels Bp[k][NR];
//     for each block of MC rows:                pack_a(i, mr, r0, kc, Ap): the MR-tall micro-panel of rows
//                                               i..i+mr, Ap[k][MR] (zero rows past mr);
//       for each micro-panel of Bp (stays in L1), each micro-panel of Ap (streams from L2): the 6x16 microkernel,
//       its tail-row versions for the last rows and kernel_edge for the last columns.
// The packing buffers are worker `thread`'s (ThreadPool::scratch): nothing is allocated once they have grown.
template <class PackB, class PackA>
inline void packed_gemm_task(const PackedTasks& t, int64_t task, int64_t red, bool accumulate, float* C, int64_t ldc,
                             ThreadPool& pool, int thread, const PackB& pack_b, const PackA& pack_a) {
  const int64_t c0 = (task % t.n_col_tasks) * t.cols_per_task, c1 = min64(t.cols, c0 + t.cols_per_task);
  const int64_t m0 = (task / t.n_col_tasks) * t.rows_per_task, m1 = min64(t.rows, m0 + t.rows_per_task);
  if (c0 >= c1 || m0 >= m1) return;
  const int64_t nc = c1 - c0, n_panels = (nc + NR - 1) / NR;
  float* bp = pool.scratch(thread, ThreadPool::Scratch::PackB, KC * n_panels * NR);
  float* ap = pool.scratch(thread, ThreadPool::Scratch::PackA, MC * KC + 8);
  for (int64_t r0 = 0; r0 < red; r0 += KC) {
    const int64_t kc = min64(KC, red - r0);
    const bool add = accumulate || r0 > 0;
    pack_b(r0, kc, c0, nc, bp);
    for (int64_t i0 = m0; i0 < m1; i0 += MC) {
      const int64_t mc = min64(MC, m1 - i0);
      for (int64_t ir = 0; ir < mc; ir += MR) pack_a(i0 + ir, int(min64(MR, mc - ir)), r0, kc, ap + ir * kc);
      for (int64_t p = 0; p < n_panels; ++p) {
        const int nr = int(min64(NR, nc - p * NR));
        const float* b = bp + p * kc * NR;
        float* c = C + i0 * ldc + c0 + p * NR;
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int mr = int(min64(MR, mc - ir));
          if (nr == NR)
            kernel_mr(mr, kc, ap + ir * kc, b, c + ir * ldc, ldc, add);
          else
            kernel_edge(kc, ap + ir * kc, b, c + ir * ldc, ldc, add, mr, nr);
        }
      }
    }
  }
}

// exp(x) for 8 floats: x = n·ln2 + r with |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (truncation
// error 5e-9 relative on that interval, below float rounding), times 2^n built in the exponent bits. Inputs must be
// <= 0 (scores minus their maximum, -|x| in silu8); below -87.3 the input is clamped, so the result is ~2^-126
// rather than a subnormal or 0 (callers that care mask it). The clamp turns a NaN input into that too: callers
// keep NaN in the value they multiply by the result (silu8) or get it from elsewhere.
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n·ln2, with ln2 split in a high and a low part so that the subtraction stays exact
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 y = _mm256_set1_ps(1.f / 5040);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f / 720));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f / 120));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f / 24));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f / 6));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// silu(x) = x * sigmoid(x) for 8 floats (math::silu's x / (1 + exp(-x)); relative error below 4e-7 = 1.5 times
// exp8's error plus three roundings, under 3 ulp measured). With e = exp(-|x|) in (0, 1], which never overflows: silu(x) = x / (1 + e) for
// x >= 0 and (x * e) / (1 + e) for x < 0. Below x = -87.3 the result is taken as -0 (exp(-|x|) is clamped there),
// as math::silu gives; silu(+inf) = inf, silu(-inf) = NaN and a NaN stays NaN, as math::silu.
inline __m256 silu8(__m256 x) {
  const __m256 neg_abs = _mm256_or_ps(x, _mm256_set1_ps(-0.f));  // -|x|
  const __m256 e = exp8(neg_abs);
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 numer = _mm256_mul_ps(x, _mm256_blendv_ps(one, e, x));  // sign bit of x set: x * e, else x * 1
  const __m256 y = _mm256_div_ps(numer, _mm256_add_ps(one, e));
  const __m256 far_left = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  return _mm256_blendv_ps(y, _mm256_mul_ps(x, _mm256_setzero_ps()), far_left);  // x * 0: -0, or NaN for -inf
}

// The attention tiles' layout changes (attention_kernels_avx2.cpp, attention_kernels_avx512.cpp): a tile of W lanes
// (query vectors) keeps its queries and outputs transposed, [d][W], lanes innermost. Both use 8x8 transposes on
// groups of 8 lanes (scalar for the last hd % 8 dims); a null lane pointer is an unused lane (zero queries, no output).
// Qt[d][lane] = qp[lane][d] * qscale.
template <int W>
inline void attn_load_queries(const float* const* qp, int hd, float qscale, float* Qt) {
  const int hd8 = hd & ~7;
  const __m256 vscale = _mm256_set1_ps(qscale);
  for (int u = 0; u < W / 8; ++u) {
    for (int d = 0; d < hd8; d += 8) {
      __m256 r[8];
      for (int t = 0; t < 8; ++t)
        r[t] = qp[8 * u + t] ? _mm256_mul_ps(_mm256_loadu_ps(qp[8 * u + t] + d), vscale) : _mm256_setzero_ps();
      transpose8(r);
      for (int t = 0; t < 8; ++t) _mm256_store_ps(Qt + (d + t) * W + 8 * u, r[t]);
    }
    for (int d = hd8; d < hd; ++d)
      for (int t = 0; t < 8; ++t) Qt[d * W + 8 * u + t] = qp[8 * u + t] ? qp[8 * u + t][d] * qscale : 0.f;
  }
}
// op[lane][d] = Ot[d][lane] * inv[lane] for the used lanes.
template <int W>
inline void attn_store_outputs(float* const* op, int hd, const float* Ot, const float* inv) {
  const int hd8 = hd & ~7;
  for (int u = 0; u < W / 8; ++u) {
    const __m256 vi = _mm256_load_ps(inv + 8 * u);
    for (int d = 0; d < hd8; d += 8) {
      __m256 r[8];
      for (int t = 0; t < 8; ++t) r[t] = _mm256_mul_ps(_mm256_load_ps(Ot + (d + t) * W + 8 * u), vi);
      transpose8(r);
      for (int t = 0; t < 8; ++t)
        if (op[8 * u + t]) _mm256_storeu_ps(op[8 * u + t] + d, r[t]);
    }
    for (int d = hd8; d < hd; ++d)
      for (int t = 0; t < 8; ++t)
        if (op[8 * u + t]) op[8 * u + t][d] = Ot[d * W + 8 * u + t] * inv[8 * u + t];
  }
}

}  // namespace
}  // namespace ln
