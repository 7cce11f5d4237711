// AVX2/FMA versions of the row ops that matter for speed (compiled with -mavx2 -mfma; called only when
// active_kernel() is Avx2). Same math as the plain versions in ops.cpp, different summation order.
#include <immintrin.h>

#include <cmath>

#include "kernels/avx2_blocks.h"
#include "kernels/ops.h"

namespace ln {

// q . k over hd floats: 8-wide FMAs, scalar tail (head_dim need not be a multiple of 8).
static inline float dot(const float* q, const float* k, int hd, int hd8) {
  __m256 acc = _mm256_setzero_ps();
  for (int d = 0; d < hd8; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc);
  float s = hsum(acc);
  for (int d = hd8; d < hd; ++d) s += q[d] * k[d];
  return s;
}

// Sums of each of 8 vectors, as one vector (lane i = sum of a[i]): a transpose-reduction with 3 rounds of hadd.
static inline __m256 hsum8(const __m256 a[8]) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  // s0123 = [a0 a1 a2 a3 | a0 a1 a2 a3] partial halves (low 128 / high 128); likewise s4567.
  const __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20), hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
  return _mm256_add_ps(lo, hi);
}

// One query row of causal attention: scores of 8 keys at a time (one horizontal reduction per 8 keys instead of
// one per key), a vectorised exp, then out = sum_j p_j v_j with 32 output dims held in registers.
void attend_row_avx2(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                     float scale, float* p, float* out) {
  const int hd8 = hd & ~7;
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  int32_t j = 0;
  if (hd8 == hd) {
    for (; j + 8 <= n_keys; j += 8) {
      __m256 acc[8];
      for (int u = 0; u < 8; ++u) acc[u] = _mm256_setzero_ps();
      for (int d = 0; d < hd; d += 8) {
        const __m256 qd = _mm256_loadu_ps(q + d);
        for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + (j + u) * ld + d), acc[u]);
      }
      const __m256 sc = _mm256_mul_ps(hsum8(acc), vscale);
      _mm256_storeu_ps(p + j, sc);
      vmax = _mm256_max_ps(vmax, sc);
    }
  }
  __m128 mm = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  mm = _mm_max_ps(mm, _mm_movehl_ps(mm, mm));
  mm = _mm_max_ss(mm, _mm_movehdup_ps(mm));
  float m = _mm_cvtss_f32(mm);  // max of the scores computed 8 at a time (-inf if none)
  for (; j < n_keys; ++j) {
    const float s = dot(q, k + j * ld, hd, hd8) * scale;
    p[j] = s;
    m = s > m ? s : m;
  }
  const __m256 vm = _mm256_set1_ps(m);
  __m256 vsum = _mm256_setzero_ps();
  j = 0;
  for (; j + 8 <= n_keys; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), vm));
    _mm256_storeu_ps(p + j, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (; j < n_keys; ++j) {
    p[j] = std::exp(p[j] - m);
    sum += p[j];
  }
  const float inv = 1.f / sum;
  // out = sum_j p_j v_j, 32 dims at a time held in registers across all keys.
  int d0 = 0;
  for (; d0 + 32 <= hd8; d0 += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int32_t jj = 0; jj < n_keys; ++jj) {
      const float* vj = v + jj * ld + d0;
      const __m256 pj = _mm256_set1_ps(p[jj]);
      a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj), a0);
      a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8), a1);
      a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 16), a2);
      a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 24), a3);
    }
    const __m256 vi = _mm256_set1_ps(inv);
    _mm256_storeu_ps(out + d0, _mm256_mul_ps(a0, vi));
    _mm256_storeu_ps(out + d0 + 8, _mm256_mul_ps(a1, vi));
    _mm256_storeu_ps(out + d0 + 16, _mm256_mul_ps(a2, vi));
    _mm256_storeu_ps(out + d0 + 24, _mm256_mul_ps(a3, vi));
  }
  for (; d0 < hd8; d0 += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int32_t jj = 0; jj < n_keys; ++jj) a = _mm256_fmadd_ps(_mm256_set1_ps(p[jj]), _mm256_loadu_ps(v + jj * ld + d0), a);
    _mm256_storeu_ps(out + d0, _mm256_mul_ps(a, _mm256_set1_ps(inv)));
  }
  for (int d = hd8; d < hd; ++d) {
    float a = 0.f;
    for (int32_t jj = 0; jj < n_keys; ++jj) a += p[jj] * v[jj * ld + d];
    out[d] = a * inv;
  }
}

// silu in place, 8 at a time; the tail goes through the same silu8 with a masked load and store, so an element's
// result does not depend on where it sits in the row (the FFN calls this on whole rows or on column chunks).
void silu_inplace_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n - i)), lane);
    _mm256_maskstore_ps(x + i, mask, silu8(_mm256_maskload_ps(x + i, mask)));
  }
}

}  // namespace ln
