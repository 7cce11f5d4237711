// Building blocks of the AVX-512 kernel files (gemm_avx512.cpp, gemm_avx512bf16.cpp, ...). Include it ONLY from
// *_avx512*.cpp files, compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c (and
// -mavx512bf16 for *_avx512bf16.cpp): like avx2_blocks.h (which it includes for the 8-wide conversions and
// transposes), everything is in an anonymous namespace so no AVX-512 body can be shared with portable code.
//
// The packed GEMM driver here is avx2_blocks.h's, generalised over the micro-panel element (float, or a uint32
// holding a pair of bf16 along the reduction for vdpbf16ps) and the register tile: MR rows x 32 columns, two zmm
// per row, MR = 14 -> 28 zmm accumulators + 2 for B out of 32 (the A value is an embedded broadcast operand).
#pragma once
// GCC 12's AVX-512 headers build several intrinsics (lane extracts and shuffles) on _mm512_undefined_*(), which it
// then reports as "used uninitialized" once inlined (GCC bug 105593, fixed in 12.3/13): silenced for these files.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/avx2_blocks.h"

namespace ln {
namespace {

constexpr int kMr512 = 14;  // rows of C per microkernel
constexpr int kNr512 = 32;  // columns of C per microkernel: two zmm

// Column masks for the last nr < 32 columns of a tile (masked loads/stores: no edge copy).
inline __mmask16 col_mask_lo(int nr) { return nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1); }
inline __mmask16 col_mask_hi(int nr) { return nr <= 16 ? __mmask16(0) : nr >= 32 ? __mmask16(0xffff) : __mmask16((1u << (nr - 16)) - 1); }

// C[0..R)[0..nr) (=|+=) the accumulators: masked so that a narrow last tile writes only its columns.
template <int R>
inline void store_tile(const __m512 (&acc0)[R], const __m512 (&acc1)[R], float* c, int64_t ldc, bool add, int nr) {
  if (nr == kNr512) {
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m512 v0 = acc0[i], v1 = acc1[i];
      if (add) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(ci));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(ci + 16));
      }
      _mm512_storeu_ps(ci, v0);
      _mm512_storeu_ps(ci + 16, v1);
    }
    return;
  }
  const __mmask16 m0 = col_mask_lo(nr), m1 = col_mask_hi(nr);
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m512 v0 = acc0[i], v1 = acc1[i];
    if (add) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, m0, v0);
    _mm512_mask_storeu_ps(ci + 16, m1, v1);
  }
}

// f32 microkernel: C[0..R)[0..nr) (=|+=) sum over k < kc of Ap[k][i] * Bp[k][0..32). Every R sums each element
// in the same order with the same FMAs, so tail rows give the bits the full tile would.
template <int R>
inline void kernel_f32_rx32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add, int nr) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
      acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
    }
    a += kMr512;
    b += kNr512;
  }
  store_tile<R>(acc0, acc1, c, ldc, add, nr);
}

using Kernel512 = void (*)(int64_t, const void*, const void*, float*, int64_t, bool, int);

// How C [rows x cols] is split into tasks (avx2_blocks.h's plan_packed_tasks with 32-column micro-panels).
struct Tasks512 {
  int64_t rows = 0, cols = 0, cols_per_task = 0, rows_per_task = 0, n_col_tasks = 0, count = 0;
};

inline Tasks512 plan_tasks512(int64_t rows, int64_t cols, int threads, int64_t max_panels_per_task) {
  Tasks512 t;
  t.rows = rows;
  t.cols = cols;
  t.cols_per_task = balanced_chunk((cols + kNr512 - 1) / kNr512, threads, max_panels_per_task) * kNr512;
  t.n_col_tasks = (cols + t.cols_per_task - 1) / t.cols_per_task;
  t.rows_per_task = rows;
  if (t.n_col_tasks < threads && rows > kMr512) {
    const int64_t row_blocks = (rows + kMr512 - 1) / kMr512;
    t.rows_per_task = balanced_chunk(row_blocks, threads, (row_blocks + threads - 1) / threads) * kMr512;
  }
  t.count = t.n_col_tasks * ((rows + t.rows_per_task - 1) / t.rows_per_task);
  return t;
}

// Task `task` of C (=|+=) A B over a reduction of `red` elements, as packed_gemm_task in avx2_blocks.h. E is the
// micro-panel element and PER_UNIT how many reduction elements one holds (float: 1; bf16 pair: 2). KC reduction
// elements per block (a multiple of PER_UNIT), MC rows per A block (a multiple of kMr512).
//   pack_b(r0, kc, c0, nc, Bp): Bp[u][32] micro-panels for columns c0..c0+nc (zero columns past nc);
//   pack_a(i, mr, r0, kc, Ap):  Ap[u][kMr512] for rows i..i+mr (zero rows past mr);
//   kernel(mr)(units, Ap, Bp, c, ldc, add, nr).
template <class E, int PER_UNIT, int64_t KC, int64_t MC, class PackB, class PackA, class PickKernel>
inline void packed_task512(const Tasks512& t, int64_t task, int64_t red, bool accumulate, float* C, int64_t ldc,
                           ThreadPool& pool, int thread, const PackB& pack_b, const PackA& pack_a,
                           const PickKernel& kernel) {
  static_assert(sizeof(E) == 4, "micro-panel elements are 32-bit");
  constexpr int64_t KU = KC / PER_UNIT;  // units per block
  const int64_t c0 = (task % t.n_col_tasks) * t.cols_per_task, c1 = min64(t.cols, c0 + t.cols_per_task);
  const int64_t m0 = (task / t.n_col_tasks) * t.rows_per_task, m1 = min64(t.rows, m0 + t.rows_per_task);
  if (c0 >= c1 || m0 >= m1) return;
  const int64_t nc = c1 - c0, n_panels = (nc + kNr512 - 1) / kNr512;
  E* bp = reinterpret_cast<E*>(pool.scratch(thread, ThreadPool::Scratch::PackB, KU * n_panels * kNr512));
  // +16: the transposing A packer may store 2 floats past a micro-panel (see pack_x_panel14).
  E* ap = reinterpret_cast<E*>(pool.scratch(thread, ThreadPool::Scratch::PackA, MC * KU + 16));
  for (int64_t r0 = 0; r0 < red; r0 += KC) {
    const int64_t kc = min64(KC, red - r0), ku = (kc + PER_UNIT - 1) / PER_UNIT;
    const bool add = accumulate || r0 > 0;
    pack_b(r0, kc, c0, nc, bp);
    for (int64_t i0 = m0; i0 < m1; i0 += MC) {
      const int64_t mc = min64(MC, m1 - i0);
      for (int64_t ir = 0; ir < mc; ir += kMr512) pack_a(i0 + ir, int(min64(kMr512, mc - ir)), r0, kc, ap + ir * ku);
      for (int64_t p = 0; p < n_panels; ++p) {
        const int nr = int(min64(kNr512, nc - p * kNr512));
        const E* b = bp + p * ku * kNr512;
        float* c = C + i0 * ldc + c0 + p * kNr512;
        for (int64_t ir = 0; ir < mc; ir += kMr512) {
          const int mr = int(min64(kMr512, mc - ir));
          kernel(mr)(ku, ap + ir * ku, b, c + ir * ldc, ldc, add, nr);
        }
      }
    }
  }
}

// v, kept in a register: stops the compiler from folding the load of v into the memory operands of the two
// instructions that use it (vpslld m512 and vpandd m512 in the bf16 GEMV), which loads it twice. Weights at a
// checkpoint's offsets are not 64-byte aligned, so each load spans two cache lines, and the doubled loads of lines
// still in flight from DRAM halved the bf16-weights f32-compute GEMV (0.57 of the read loop, 0.82 with one load;
// one core, rows 16 bytes off alignment).
inline __m512i in_register(__m512i v) {
#if defined(__GNUC__)
  asm("" : "+v"(v));
#endif
  return v;
}

// One row of bf16 weights read 32 elements at a time through 64-byte-aligned loads, the elements in the lanes an
// unaligned load at the same place would give them (so the sums, and their bits, do not depend on where the
// checkpoint put the tensor). Why: tensors of a checkpoint sit wherever the safetensors header ends, rarely on a
// 64-byte boundary, and then every unaligned 64-byte load of a streamed row spans two cache lines. One core, the
// memory-mapped LM head of the random Qwen2.5-0.5B checkpoint (24 bytes past a line start), GEMV time over a read
// loop's on the same bytes, medians of 8: bf16 compute 0.84-0.90 with unaligned loads, 0.95-1.00 with this; and
// decoding that model went from 38.8 to 33.4 ms a token. Each line is loaded once, aligned, and the 32 elements are
// picked from the last two lines by one vpermt2d (with vpermt2w, which would also take rows at 2 mod 4 bytes, the
// GEMV measured no faster than with unaligned loads). The line before the row and the one past its end are read with masked loads,
// so nothing outside the row is touched (native test gemv_bf16_same_bits_wherever_the_weights_lie puts the rows
// against inaccessible pages).
class Bf16AlignedRow {
 public:
  // Whether every row of a [N x K] bf16 matrix at w can be read this way: rows start at multiples of 4 bytes
  // (w 4-byte aligned, K even) and hold at least one block of 32.
  static bool applies(const void* w, int64_t K) {
    return K >= 32 && K % 2 == 0 && (reinterpret_cast<uintptr_t>(w) & 3) == 0;
  }
  // row: element 0 of the row, at an address that is a multiple of 4 (the lines are recombined by 32-bit lanes:
  // vpermt2d, a single fast shuffle where vpermt2w is not); K >= 32 elements.
  void start(const uint16_t* row, int64_t K) {
    const int s = int((reinterpret_cast<uintptr_t>(row) & 63) / 2);  // elements of the first line before the row
    line_ = reinterpret_cast<const __m512i*>(row - s);
    full_lines_ = (K + s) / 32;  // lines 1 .. full_lines_ - 1 lie wholly inside the row (line 0 is read masked here)
    end_in_lines_ = K + s;       // one past the row's last element, counted from the first line's start
    pick_ = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                             _mm512_set1_epi32(s / 2));
    prev_ = _mm512_maskz_loadu_epi16(lanes_between(s, end_in_lines_), line_);
  }
  // Elements [32 i, 32 i + 32) of the row at the i-th call, in lanes 0..31: next() while 64 more elements fit in
  // the row, last() for the final block of 32 (the next line may then reach past the row's end).
  __m512i next() { return pick(_mm512_load_si512(line_ + ++at_)); }
  __m512i last() {
    ++at_;
    return pick(at_ < full_lines_ ? _mm512_load_si512(line_ + at_)
                                  : _mm512_maskz_loadu_epi16(lanes_between(0, end_in_lines_ - 32 * at_), line_ + at_));
  }

 private:
  // Lanes [lo, hi) of a line of 32 (hi clamped to 32; none when hi <= lo).
  static __mmask32 lanes_between(int64_t lo, int64_t hi) {
    if (hi > 32) hi = 32;
    if (hi <= lo) return 0;
    const uint64_t below_hi = (uint64_t(1) << hi) - 1, below_lo = (uint64_t(1) << lo) - 1;
    return __mmask32(below_hi & ~below_lo);
  }
  __m512i pick(__m512i cur) {
    const __m512i out = _mm512_permutex2var_epi32(prev_, pick_, cur);
    prev_ = cur;
    return out;
  }
  const __m512i* line_;
  int64_t full_lines_ = 0, end_in_lines_ = 0, at_ = 0;
  __m512i pick_, prev_;
};

// round_bf16 (dtype.h) on 16 lanes: the same bits as avx2_blocks.h's round_bf16_8 (nearest even, NaN kept quiet).
inline __m512 round_bf16_16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i hi_mask = _mm512_set1_epi32(int32_t(0xffff0000u));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), hi_mask);
  const __mmask16 is_nan =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), hi_mask);
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(is_nan, r, quiet));
}

// 16 floats at element i of a checkpoint tensor of dtype T (two 8-wide loads of avx2_blocks.h).
template <DType T>
inline __m512 load16(const void* w, int64_t i) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(load8<T>(w, i)), load8<T>(w, i + 8), 1);
}

// Ap[kk][i] = X[i][k0 + kk] (bf16-rounded when ROUND) for a micro-panel of mr <= 14 rows (zero rows past mr), kc
// columns. Full panels transpose 8x8 blocks: rows 0..7, then rows 8..13 with two zero rows; the second block's
// 8-float column is stored at offset 8 of a 14-float column, so its last 2 floats land on the next column (written
// afterwards) or, for the last column, up to 2 floats past the panel (the +16 slack of the A buffer).
template <bool ROUND>
inline void pack_x_panel14(const float* X, int64_t ldx, int mr, int64_t k0, int64_t kc, float* dst) {
  int64_t kk = 0;
  if (mr == kMr512) {
    for (; kk + 8 <= kc; kk += 8) {
      __m256 r0[8], r1[8];
      for (int i = 0; i < 8; ++i) {
        r0[i] = _mm256_loadu_ps(X + i * ldx + k0 + kk);
        if (ROUND) r0[i] = round_bf16_8(r0[i]);
      }
      for (int i = 0; i < 6; ++i) {
        r1[i] = _mm256_loadu_ps(X + (8 + i) * ldx + k0 + kk);
        if (ROUND) r1[i] = round_bf16_8(r1[i]);
      }
      r1[6] = r1[7] = _mm256_setzero_ps();
      transpose8(r0);
      transpose8(r1);
      for (int t = 0; t < 8; ++t) {
        _mm256_storeu_ps(dst + (kk + t) * kMr512, r0[t]);
        _mm256_storeu_ps(dst + (kk + t) * kMr512 + 8, r1[t]);
      }
    }
  }
  for (; kk < kc; ++kk)
    for (int i = 0; i < kMr512; ++i) {
      const float v = i < mr ? X[i * ldx + k0 + kk] : 0.f;
      dst[kk * kMr512 + i] = ROUND ? round_bf16_1(v) : v;
    }
}

}  // namespace
}  // namespace ln
