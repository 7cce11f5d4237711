// AVX2 version of the statistics row kernel (compiled with -mavx2 -mfma). 8 units per step: the comparison
// masks (all ones = -1 per lane) are subtracted from int32 counters, and the values are widened to two
// float64 quads for the sums. v*v of a widened float32 is exact in float64, so the fused multiply-add gives
// the same sum of squares as the plain version's multiply then add; |x| is the value with its sign bit cleared,
// as std::fabs.
#include <immintrin.h>

#include <cmath>

#include "kernels/stats_kernels.h"

namespace ln {

template <bool kThresholds, bool kSeqSum>
static void accumulate(const float* x, int64_t n, const RowAccumulators& a) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256d sign = _mm256_set1_pd(-0.0);  // |x| = x with the sign bit cleared (andnot)
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    __m256i* oz = reinterpret_cast<__m256i*>(a.over_zero + j);
    const __m256i gt0 = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_GT_OQ));
    _mm256_storeu_si256(oz, _mm256_sub_epi32(_mm256_loadu_si256(oz), gt0));
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    double* s = a.sum + j;
    double* q = a.sum_sq + j;
    _mm256_storeu_pd(s, _mm256_add_pd(_mm256_loadu_pd(s), lo));
    _mm256_storeu_pd(s + 4, _mm256_add_pd(_mm256_loadu_pd(s + 4), hi));
    _mm256_storeu_pd(q, _mm256_fmadd_pd(lo, lo, _mm256_loadu_pd(q)));
    _mm256_storeu_pd(q + 4, _mm256_fmadd_pd(hi, hi, _mm256_loadu_pd(q + 4)));
    double* ab = a.abs_sum + j;
    _mm256_storeu_pd(ab, _mm256_add_pd(_mm256_loadu_pd(ab), _mm256_andnot_pd(sign, lo)));
    _mm256_storeu_pd(ab + 4, _mm256_add_pd(_mm256_loadu_pd(ab + 4), _mm256_andnot_pd(sign, hi)));
    if (kThresholds) {
      __m256i* ac = reinterpret_cast<__m256i*>(a.above + j);
      const __m256i gt = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_loadu_ps(a.thresholds + j), _CMP_GT_OQ));
      _mm256_storeu_si256(ac, _mm256_sub_epi32(_mm256_loadu_si256(ac), gt));
    }
    if (kSeqSum) {
      double* ss = a.seq_sum + j;
      _mm256_storeu_pd(ss, _mm256_add_pd(_mm256_loadu_pd(ss), lo));
      _mm256_storeu_pd(ss + 4, _mm256_add_pd(_mm256_loadu_pd(ss + 4), hi));
    }
  }
  for (; j < n; ++j) {  // tail: the plain arithmetic
    const double v = double(x[j]);
    a.over_zero[j] += x[j] > 0.f;
    a.sum[j] += v;
    a.sum_sq[j] += v * v;
    a.abs_sum[j] += std::fabs(v);
    if (kThresholds) a.above[j] += x[j] > a.thresholds[j];
    if (kSeqSum) a.seq_sum[j] += v;
  }
}

void accumulate_row_avx2(const float* x, int64_t n, const RowAccumulators& a) {
  if (a.thresholds)
    a.seq_sum ? accumulate<true, true>(x, n, a) : accumulate<true, false>(x, n, a);
  else
    a.seq_sum ? accumulate<false, true>(x, n, a) : accumulate<false, false>(x, n, a);
}

}  // namespace ln
