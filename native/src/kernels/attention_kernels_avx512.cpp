// AVX-512 causal attention of a tile of query vectors (kernels/ops.h: attend_causal), the 16-lane version of
// attention_kernels_avx2.cpp: the same algorithm and layout (lanes innermost, scores and outputs as broadcast-FMA
// microkernels, online softmax per block of kAttnKeyBlock keys), with one zmm per 16 query vectors instead of up to
// three ymm per 24, and 16 keys / dims per microkernel (16 accumulators + 1 operand of the 32 zmm; the key or
// value element is an embedded-broadcast operand). Compiled with the avx512 flags (CMakeLists.txt), called only
// after cpu_supports(Avx512); everything is in an anonymous namespace (avx512_blocks.h explains why).
//
// Each lane (query vector) goes through the same float operations in the same order as in the avx2 tile (the key
// blocks, the d-ordered FMAs of a score, the exp2 polynomial, the rescales), so the two give the same bits; the
// tests check that, and hold both to the same float64 bound.
#include "kernels/avx512_blocks.h"

#include <cmath>
#include <cstdint>

#include "kernels/ops.h"

namespace ln {
namespace {

constexpr int KB = kAttnKeyBlock;
constexpr int W = 16;  // lanes (query vectors) per tile
constexpr int KR = 16; // keys per score microkernel
constexpr int DR = 16; // dims per output microkernel

inline int min_int(int a, int b) { return a < b ? a : b; }

// 2^x for 16 floats, x <= 0: attention_kernels_avx2.cpp exp2_8 on zmm (same range reduction, same polynomial).
inline __m512 exp2_16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-125.f), x);
  const __m512 magic = _mm512_set1_ps(12582912.f);  // 1.5 * 2^23
  const __m512 t = _mm512_add_ps(x, magic);
  const __m512 r = _mm512_sub_ps(x, _mm512_sub_ps(t, magic));
  constexpr float ln2 = 0.693147180559945309f;
  __m512 y = _mm512_set1_ps(ln2 * ln2 * ln2 * ln2 * ln2 * ln2 / 720);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(ln2 * ln2 * ln2 * ln2 * ln2 / 120));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(ln2 * ln2 * ln2 * ln2 / 24));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(ln2 * ln2 * ln2 / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(ln2 * ln2 / 2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(ln2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  const __m512i e = _mm512_add_epi32(_mm512_slli_epi32(_mm512_castps_si512(t), 23), _mm512_set1_epi32(127 << 23));
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

// S[i][lane] for the N keys k + i*ld (key indices j..j+N-1): sum_d k_i[d] * Qt[d][lane]; with MASK, -inf where the
// key is past the lane's last key. bmax = max(bmax, scores).
template <int N, bool MASK>
inline void qk_kernel(const float* Qt, const float* k, int64_t ld, int hd, float* S, int32_t j, __m512i last,
                      __m512& bmax) {
  __m512 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm512_setzero_ps();
  for (int d = 0; d < hd; ++d) {
    const __m512 qv = _mm512_load_ps(Qt + d * W);
    for (int i = 0; i < N; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(k[i * ld + d]), qv, acc[i]);
  }
  for (int i = 0; i < N; ++i) {
    __m512 s = acc[i];
    if (MASK) {
      const __mmask16 past = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(j + i), last);
      s = _mm512_mask_mov_ps(s, past, _mm512_set1_ps(-INFINITY));
    }
    _mm512_store_ps(S + i * W, s);
    bmax = _mm512_max_ps(bmax, s);
  }
}

template <int N, bool MASK>
inline void qk_tail(int n, const float* Qt, const float* k, int64_t ld, int hd, float* S, int32_t j, __m512i last,
                    __m512& bmax) {
  if constexpr (N > 0) {
    if (n == N) return qk_kernel<N, MASK>(Qt, k, ld, hd, S, j, last, bmax);
    qk_tail<N - 1, MASK>(n, Qt, k, ld, hd, S, j, last, bmax);
  }
}

// Ot[i][lane] for the N dims starting at v's column: (first ? 0 : Ot * rescale) + sum_jj v_jj[i] * P[jj][lane].
template <int N>
inline void pv_kernel(const float* P, const float* v, int64_t ld, int kb, float* Ot, bool first, __m512 rescale) {
  __m512 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = first ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_load_ps(Ot + i * W), rescale);
  for (int jj = 0; jj < kb; ++jj) {
    const __m512 p = _mm512_load_ps(P + jj * W);
    const float* vr = v + jj * ld;
    for (int i = 0; i < N; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(vr[i]), p, acc[i]);
  }
  for (int i = 0; i < N; ++i) _mm512_store_ps(Ot + i * W, acc[i]);
}

template <int N>
inline void pv_tail(int n, const float* P, const float* v, int64_t ld, int kb, float* Ot, bool first, __m512 rescale) {
  if constexpr (N > 0) {
    if (n == N) return pv_kernel<N>(P, v, ld, kb, Ot, first, rescale);
    pv_tail<N - 1>(n, P, v, ld, kb, Ot, first, rescale);
  }
}

template <bool MASK>
inline void block_scores(const float* Qt, const float* k, int64_t ld, int hd, int32_t j0, int kb, float* S,
                         __m512i last, __m512& bmax) {
  int jj = 0;
  for (; jj + KR <= kb; jj += KR) qk_kernel<KR, MASK>(Qt, k + (j0 + jj) * ld, ld, hd, S + jj * W, j0 + jj, last, bmax);
  if (jj < kb) qk_tail<KR - 1, MASK>(kb - jj, Qt, k + (j0 + jj) * ld, ld, hd, S + jj * W, j0 + jj, last, bmax);
}

// One tile: query vectors [i0, i0 + nl) (nl <= 16; vector i = row i / n_q, head i % n_q).
void run_tile(const float* q, int64_t ldq, int n_q, int i0, int nl, const float* k, const float* v, int64_t ldkv,
              int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch) {
  float* Qt = scratch;      // [hd][W]
  float* Ot = Qt + hd * W;  // [hd][W]
  float* S = Ot + hd * W;   // [KB][W]
  const float* qp[W];
  float* op[W];
  alignas(64) int32_t lastv[W];
  for (int lane = 0; lane < W; ++lane) {
    // Unused lanes: zero queries (finite scores), the keys of the last used lane; their results are dropped.
    const int i = i0 + min_int(lane, nl - 1);
    qp[lane] = lane < nl ? q + int64_t(i / n_q) * ldq + int64_t(i % n_q) * hd : nullptr;
    op[lane] = lane < nl ? out + int64_t(i / n_q) * ldo + int64_t(i % n_q) * hd : nullptr;
    lastv[lane] = key0 + i / n_q;
  }

  // Qt = (queries * scale * log2(e))^T: scores in log2 units (see exp2_16).
  attn_load_queries<W>(qp, hd, scale * 1.44269504088896341f, Qt);

  const __m512i last = _mm512_load_si512(lastv);
  __m512 m = _mm512_set1_ps(-INFINITY), l = _mm512_setzero_ps();
  const int32_t n_keys = lastv[nl - 1] + 1;  // lanes are in row order: the last used one sees the most keys
  const int32_t unmasked = lastv[0] + 1;     // keys [0, unmasked) are seen by every lane
  for (int32_t j0 = 0; j0 < n_keys; j0 += KB) {
    const int kb = min_int(KB, n_keys - j0);
    const bool mask = j0 + kb > unmasked;
    const bool first = j0 == 0;
    __m512 bmax = _mm512_set1_ps(-INFINITY);
    if (mask)
      block_scores<true>(Qt, k, ldkv, hd, j0, kb, S, last, bmax);
    else
      block_scores<false>(Qt, k, ldkv, hd, j0, kb, S, last, bmax);

    // Online softmax over the lanes: new max, rescale of the old sums, weights p = 2^(s - m) (0 where masked).
    const __m512 mn = _mm512_max_ps(m, bmax);
    const __m512 rescale = first ? _mm512_setzero_ps() : exp2_16(_mm512_sub_ps(m, mn));
    m = mn;
    __m512 sum = _mm512_setzero_ps();
    for (int jj = 0; jj < kb; ++jj) {
      const __m512 s = _mm512_load_ps(S + jj * W);
      __m512 p = exp2_16(_mm512_sub_ps(s, m));
      if (mask) p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ), p);
      _mm512_store_ps(S + jj * W, p);
      sum = _mm512_add_ps(sum, p);
    }
    l = _mm512_fmadd_ps(l, rescale, sum);

    const float* vb = v + int64_t(j0) * ldkv;
    int d0 = 0;
    for (; d0 + DR <= hd; d0 += DR) pv_kernel<DR>(S, vb + d0, ldkv, kb, Ot + d0 * W, first, rescale);
    if (d0 < hd) pv_tail<DR - 1>(hd - d0, S, vb + d0, ldkv, kb, Ot + d0 * W, first, rescale);
  }

  // out = Ot^T / l.
  alignas(64) float inv[W];
  _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.f), l));
  attn_store_outputs<W>(op, hd, Ot, inv);
}

}  // namespace

void attend_causal_avx512(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                          int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch) {
  static_assert(W <= kAttnTile, "the scratch (attend_causal_scratch_floats) is sized for kAttnTile lanes");
  const int n_vec = n_rows * n_q;
  for (int i0 = 0; i0 < n_vec; i0 += W)
    run_tile(q, ldq, n_q, i0, min_int(W, n_vec - i0), k, v, ldkv, key0, hd, scale, out, ldo, scratch);
}

}  // namespace ln
