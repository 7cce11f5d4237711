// AVX2/FMA versions of the row ops that matter for speed (compiled with -mavx2 -mfma; called only when
// active_kernel() is Avx2). Same math as the plain versions in ops.cpp, different summation order.
#include <immintrin.h>

#include <cmath>

#include "kernels/ops.h"

namespace ln {

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// q . k over hd floats: 8-wide FMAs, scalar tail (head_dim need not be a multiple of 8).
static inline float dot(const float* q, const float* k, int hd, int hd8) {
  __m256 acc = _mm256_setzero_ps();
  for (int d = 0; d < hd8; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc);
  float s = hsum(acc);
  for (int d = hd8; d < hd; ++d) s += q[d] * k[d];
  return s;
}

void attend_row_avx2(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                     float scale, float* p, float* out) {
  const int hd8 = hd & ~7;
  float m = -INFINITY;
  for (int32_t j = 0; j < n_keys; ++j) {
    const float s = dot(q, k + j * ld, hd, hd8) * scale;
    p[j] = s;
    m = s > m ? s : m;
  }
  float sum = 0.f;
  for (int32_t j = 0; j < n_keys; ++j) {
    p[j] = std::exp(p[j] - m);
    sum += p[j];
  }
  const float inv = 1.f / sum;
  // out = sum_j p_j v_j, 32 dims at a time held in registers across all keys.
  int d0 = 0;
  for (; d0 + 32 <= hd8; d0 += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int32_t j = 0; j < n_keys; ++j) {
      const float* vj = v + j * ld + d0;
      const __m256 pj = _mm256_set1_ps(p[j]);
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
    for (int32_t j = 0; j < n_keys; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * ld + d0), a);
    _mm256_storeu_ps(out + d0, _mm256_mul_ps(a, _mm256_set1_ps(inv)));
  }
  for (int d = hd8; d < hd; ++d) {
    float a = 0.f;
    for (int32_t j = 0; j < n_keys; ++j) a += p[j] * v[j * ld + d];
    out[d] = a * inv;
  }
}

}  // namespace ln
