// AVX2/FMA causal attention of a tile of query vectors (kernels/ops.h: attend_causal; the readable version of the
// same algorithm is attend_causal_plain in attention_kernels.cpp). Compiled with -mavx2 -mfma, called only after
// cpu_supports(Avx2); as in gemm_avx2.cpp everything here is in an anonymous namespace and no inline function or
// template of a portable header is instantiated here (the linker could keep the AVX copy for the portable code).
//
// A tile is up to 8, 16 or 24 query vectors, one per float lane of QV = 1, 2 or 3 ymm registers. Everything is
// laid out with the lanes innermost, so that both products are broadcast-FMA microkernels without horizontal sums:
//   scores   S[j][lane]  = sum_d K[j][d] * Qt[d][lane]     KR keys x QV vectors of accumulators, K[j][d] broadcast
//                                                           straight from the KV rows, Qt packed once per tile;
//   output   Ot[d][lane] = sum_j V[j][d] * P[j][lane]      DR dims x QV vectors, V[j][d] broadcast from the rows.
// Each K and V element is loaded once per tile and feeds 8·QV lanes (the GQA heads of a row and several rows),
// instead of once per query row. The softmax between them is vectorised over lanes as well (running max, rescale,
// exp, sum), per block of kAttnKeyBlock keys (online softmax), so the scratch stays bounded.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/avx2_blocks.h"
#include "kernels/ops.h"

namespace ln {
namespace {

constexpr int KB = kAttnKeyBlock;

inline int min_int(int a, int b) { return a < b ? a : b; }

// 2^x for 8 floats, x <= 0 (a score minus the running max, both in log2 units: the queries are multiplied by
// scale * log2(e), so 2^(s - m) = exp of the natural-log scores' difference). x = n + r with n = round(x) (the
// 1.5 * 2^23 trick: the sum rounds to an integer, whose low bits are n) and |r| <= 1/2; 2^r = exp(r ln2) by its
// degree-6 Taylor polynomial (|r ln2| <= ln2/2: the same range and error as the range reduction of expf-style
// kernels, below float rounding), times 2^n built in the exponent bits. Below -125 the result is ~2^-125 instead
// of a subnormal or 0 (masked keys are zeroed separately). A NaN propagates (the clamp keeps a NaN x).
inline __m256 exp2_8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-125.f), x);
  const __m256 magic = _mm256_set1_ps(12582912.f);  // 1.5 * 2^23
  const __m256 t = _mm256_add_ps(x, magic);
  const __m256 r = _mm256_sub_ps(x, _mm256_sub_ps(t, magic));
  constexpr float ln2 = 0.693147180559945309f;
  __m256 y = _mm256_set1_ps(ln2 * ln2 * ln2 * ln2 * ln2 * ln2 / 720);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ln2 * ln2 * ln2 * ln2 * ln2 / 120));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ln2 * ln2 * ln2 * ln2 / 24));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ln2 * ln2 * ln2 / 6));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ln2 * ln2 / 2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ln2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.f));
  // 2^n: (n + 127) << 23. The low 9 bits of t's bit pattern are n modulo 512, so t << 23 is n << 23.
  const __m256i e = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23), _mm256_set1_epi32(127 << 23));
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// Register blocking per tile width (keys of a score microkernel, dims of an output microkernel): QV = 3 (24 lanes):
// 4 x 3 accumulators + 3 operand vectors + 1 broadcast = 16 ymm, 12 FMAs per 3 loads + 4 broadcasts, and 4 divides
// head_dim 64/128 and the 64-key block; QV = 2: 6 x 2 + 2 + 1 = 15; QV = 1: 12 x 1 + 1 + 1 = 14.
template <int QV>
struct Blocking;
template <>
struct Blocking<2> {
  static constexpr int KR = 6, DR = 6;
};
template <>
struct Blocking<3> {
  static constexpr int KR = 4, DR = 4;
};
template <>
struct Blocking<1> {
  static constexpr int KR = 12, DR = 12;
};

// S[i][lane] for the N keys k + i*ld (key indices j..j+N-1), i < N: sum_d k_i[d] * Qt[d][lane]; with MASK, -inf
// where the key is past the lane's last key. bmax = max(bmax, scores).
template <int QV, int N, bool MASK>
inline void qk_kernel(const float* Qt, const float* k, int64_t ld, int hd, float* S, int32_t j, const __m256i* last,
                      __m256* bmax) {
  constexpr int W = 8 * QV;
  __m256 acc[N][QV];
  for (int i = 0; i < N; ++i)
    for (int u = 0; u < QV; ++u) acc[i][u] = _mm256_setzero_ps();
  const float* kr[N];
  for (int i = 0; i < N; ++i) kr[i] = k + i * ld;
  for (int d = 0; d < hd; ++d) {
    __m256 qv[QV];
    for (int u = 0; u < QV; ++u) qv[u] = _mm256_load_ps(Qt + d * W + 8 * u);
    for (int i = 0; i < N; ++i) {
      const __m256 b = _mm256_broadcast_ss(kr[i] + d);
      for (int u = 0; u < QV; ++u) acc[i][u] = _mm256_fmadd_ps(b, qv[u], acc[i][u]);
    }
  }
  for (int i = 0; i < N; ++i)
    for (int u = 0; u < QV; ++u) {
      __m256 s = acc[i][u];
      if (MASK) {
        const __m256i past = _mm256_cmpgt_epi32(_mm256_set1_epi32(j + i), last[u]);
        s = _mm256_blendv_ps(s, _mm256_set1_ps(-INFINITY), _mm256_castsi256_ps(past));
      }
      _mm256_store_ps(S + i * W + 8 * u, s);
      bmax[u] = _mm256_max_ps(bmax[u], s);
    }
}

// The n (< N) leftover keys of a block.
template <int QV, int N, bool MASK>
inline void qk_tail(int n, const float* Qt, const float* k, int64_t ld, int hd, float* S, int32_t j,
                    const __m256i* last, __m256* bmax) {
  if constexpr (N > 0) {
    if (n == N) return qk_kernel<QV, N, MASK>(Qt, k, ld, hd, S, j, last, bmax);
    qk_tail<QV, N - 1, MASK>(n, Qt, k, ld, hd, S, j, last, bmax);
  }
}

// Ot[i][lane] for the N dims i < N starting at v's column: (first ? 0 : Ot * rescale) + sum_jj v_jj[i] * P[jj][lane]
// over the kb keys of the block (v + jj*ld).
template <int QV, int N>
inline void pv_kernel(const float* P, const float* v, int64_t ld, int kb, float* Ot, bool first,
                      const __m256* rescale) {
  constexpr int W = 8 * QV;
  __m256 acc[N][QV];
  for (int i = 0; i < N; ++i)
    for (int u = 0; u < QV; ++u)
      acc[i][u] = first ? _mm256_setzero_ps() : _mm256_mul_ps(_mm256_load_ps(Ot + i * W + 8 * u), rescale[u]);
  for (int jj = 0; jj < kb; ++jj) {
    __m256 p[QV];
    for (int u = 0; u < QV; ++u) p[u] = _mm256_load_ps(P + jj * W + 8 * u);
    const float* vr = v + jj * ld;
    for (int i = 0; i < N; ++i) {
      const __m256 b = _mm256_broadcast_ss(vr + i);
      for (int u = 0; u < QV; ++u) acc[i][u] = _mm256_fmadd_ps(b, p[u], acc[i][u]);
    }
  }
  for (int i = 0; i < N; ++i)
    for (int u = 0; u < QV; ++u) _mm256_store_ps(Ot + i * W + 8 * u, acc[i][u]);
}

template <int QV, int N>
inline void pv_tail(int n, const float* P, const float* v, int64_t ld, int kb, float* Ot, bool first,
                    const __m256* rescale) {
  if constexpr (N > 0) {
    if (n == N) return pv_kernel<QV, N>(P, v, ld, kb, Ot, first, rescale);
    pv_tail<QV, N - 1>(n, P, v, ld, kb, Ot, first, rescale);
  }
}

// Scores of keys [j0, j0 + kb) for the tile into S, and their max per lane into bmax.
template <int QV, bool MASK>
inline void block_scores(const float* Qt, const float* k, int64_t ld, int hd, int32_t j0, int kb, float* S,
                         const __m256i* last, __m256* bmax) {
  constexpr int W = 8 * QV, KR = Blocking<QV>::KR;
  int jj = 0;
  for (; jj + KR <= kb; jj += KR)
    qk_kernel<QV, KR, MASK>(Qt, k + (j0 + jj) * ld, ld, hd, S + jj * W, j0 + jj, last, bmax);
  if (jj < kb) qk_tail<QV, KR - 1, MASK>(kb - jj, Qt, k + (j0 + jj) * ld, ld, hd, S + jj * W, j0 + jj, last, bmax);
}

// One tile: query vectors [i0, i0 + nl) (nl <= 8 * QV) of the block (vector i = row i / n_q, head i % n_q).
template <int QV>
void run_tile(const float* q, int64_t ldq, int n_q, int i0, int nl, const float* k, const float* v, int64_t ldkv,
              int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch) {
  constexpr int W = 8 * QV, DR = Blocking<QV>::DR;
  float* Qt = scratch;        // [hd][W]
  float* Ot = Qt + hd * W;    // [hd][W]
  float* S = Ot + hd * W;     // [KB][W]
  const float* qp[W];
  float* op[W];
  alignas(32) int32_t lastv[W];
  for (int lane = 0; lane < W; ++lane) {
    // Unused lanes: zero queries (finite scores), the keys of the last used lane; their results are dropped.
    const int i = i0 + min_int(lane, nl - 1);
    qp[lane] = lane < nl ? q + int64_t(i / n_q) * ldq + int64_t(i % n_q) * hd : nullptr;
    op[lane] = lane < nl ? out + int64_t(i / n_q) * ldo + int64_t(i % n_q) * hd : nullptr;
    lastv[lane] = key0 + i / n_q;
  }

  // Qt = (queries * scale * log2(e))^T: scores in log2 units (see exp2_8).
  attn_load_queries<W>(qp, hd, scale * 1.44269504088896341f, Qt);

  __m256i last[QV];
  __m256 m[QV], l[QV];
  for (int u = 0; u < QV; ++u) {
    last[u] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lastv + 8 * u));
    m[u] = _mm256_set1_ps(-INFINITY);
    l[u] = _mm256_setzero_ps();
  }
  const int32_t n_keys = lastv[nl - 1] + 1;  // lanes are in row order: the last used one sees the most keys
  const int32_t unmasked = lastv[0] + 1;     // keys [0, unmasked) are seen by every lane
  for (int32_t j0 = 0; j0 < n_keys; j0 += KB) {
    const int kb = min_int(KB, n_keys - j0);
    const bool mask = j0 + kb > unmasked;
    const bool first = j0 == 0;
    __m256 bmax[QV];
    for (int u = 0; u < QV; ++u) bmax[u] = _mm256_set1_ps(-INFINITY);
    if (mask)
      block_scores<QV, true>(Qt, k, ldkv, hd, j0, kb, S, last, bmax);
    else
      block_scores<QV, false>(Qt, k, ldkv, hd, j0, kb, S, last, bmax);

    // Online softmax over the lanes: new max, rescale of the old sums, weights p = 2^(s - m) (0 where masked).
    __m256 rescale[QV], sum[QV];
    for (int u = 0; u < QV; ++u) {
      const __m256 mn = _mm256_max_ps(m[u], bmax[u]);
      rescale[u] = first ? _mm256_setzero_ps() : exp2_8(_mm256_sub_ps(m[u], mn));
      m[u] = mn;
      sum[u] = _mm256_setzero_ps();
    }
    for (int jj = 0; jj < kb; ++jj)
      for (int u = 0; u < QV; ++u) {
        const __m256 s = _mm256_load_ps(S + jj * W + 8 * u);
        __m256 p = exp2_8(_mm256_sub_ps(s, m[u]));
        if (mask) p = _mm256_and_ps(p, _mm256_cmp_ps(s, _mm256_set1_ps(-INFINITY), _CMP_NEQ_UQ));
        _mm256_store_ps(S + jj * W + 8 * u, p);
        sum[u] = _mm256_add_ps(sum[u], p);
      }
    for (int u = 0; u < QV; ++u) l[u] = _mm256_fmadd_ps(l[u], rescale[u], sum[u]);

    const float* vb = v + int64_t(j0) * ldkv;
    int d0 = 0;
    for (; d0 + DR <= hd; d0 += DR) pv_kernel<QV, DR>(S, vb + d0, ldkv, kb, Ot + d0 * W, first, rescale);
    if (d0 < hd) pv_tail<QV, DR - 1>(hd - d0, S, vb + d0, ldkv, kb, Ot + d0 * W, first, rescale);
  }

  // out = Ot^T / l.
  alignas(32) float inv[W];
  for (int u = 0; u < QV; ++u) _mm256_store_ps(inv + 8 * u, _mm256_div_ps(_mm256_set1_ps(1.f), l[u]));
  attn_store_outputs<W>(op, hd, Ot, inv);
}

}  // namespace

void attend_causal_avx2(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                        int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch) {
  const int n_vec = n_rows * n_q;
  for (int i0 = 0; i0 < n_vec; i0 += kAttnTile) {
    const int nl = min_int(kAttnTile, n_vec - i0);
    if (nl > 16)
      run_tile<3>(q, ldq, n_q, i0, nl, k, v, ldkv, key0, hd, scale, out, ldo, scratch);
    else if (nl > 8)
      run_tile<2>(q, ldq, n_q, i0, nl, k, v, ldkv, key0, hd, scale, out, ldo, scratch);
    else
      run_tile<1>(q, ldq, n_q, i0, nl, k, v, ldkv, key0, hd, scale, out, ldo, scratch);
  }
}

}  // namespace ln
