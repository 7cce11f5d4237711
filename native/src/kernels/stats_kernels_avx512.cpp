// AVX-512 version of the statistics row kernel (kernels/stats_kernels.h): stats_kernels_avx2.cpp's arithmetic on
// 16 units per step (comparison masks add 1 to the int32 counters; values widened to two float64 octets), so the
// results are identical to the plain and AVX2 versions (tested). Compiled with the AVX-512 flags, only on x86, only
// called after cpu_supports(CpuKernel::Avx512).
#include <immintrin.h>

#include <cmath>

#include "kernels/avx512_blocks.h"  // (also for its GCC 12 warning note)
#include "kernels/stats_kernels.h"

namespace ln {
namespace {

template <bool kThresholds, bool kSeqSum>
void accumulate(const float* x, int64_t n, const RowAccumulators& a) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1);
  const __m512d sign = _mm512_set1_pd(-0.0);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 v = _mm512_loadu_ps(x + j);
    int32_t* oz = a.over_zero + j;
    const __mmask16 gt0 = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
    _mm512_storeu_si512(oz, _mm512_mask_add_epi32(_mm512_loadu_si512(oz), gt0, _mm512_loadu_si512(oz), one));
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    double* s = a.sum + j;
    double* q = a.sum_sq + j;
    _mm512_storeu_pd(s, _mm512_add_pd(_mm512_loadu_pd(s), lo));
    _mm512_storeu_pd(s + 8, _mm512_add_pd(_mm512_loadu_pd(s + 8), hi));
    _mm512_storeu_pd(q, _mm512_fmadd_pd(lo, lo, _mm512_loadu_pd(q)));
    _mm512_storeu_pd(q + 8, _mm512_fmadd_pd(hi, hi, _mm512_loadu_pd(q + 8)));
    double* ab = a.abs_sum + j;
    _mm512_storeu_pd(ab, _mm512_add_pd(_mm512_loadu_pd(ab), _mm512_andnot_pd(sign, lo)));
    _mm512_storeu_pd(ab + 8, _mm512_add_pd(_mm512_loadu_pd(ab + 8), _mm512_andnot_pd(sign, hi)));
    if (kThresholds) {
      int32_t* ac = a.above + j;
      const __mmask16 gt = _mm512_cmp_ps_mask(v, _mm512_loadu_ps(a.thresholds + j), _CMP_GT_OQ);
      _mm512_storeu_si512(ac, _mm512_mask_add_epi32(_mm512_loadu_si512(ac), gt, _mm512_loadu_si512(ac), one));
    }
    if (kSeqSum) {
      double* ss = a.seq_sum + j;
      _mm512_storeu_pd(ss, _mm512_add_pd(_mm512_loadu_pd(ss), lo));
      _mm512_storeu_pd(ss + 8, _mm512_add_pd(_mm512_loadu_pd(ss + 8), hi));
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

}  // namespace

void accumulate_row_avx512(const float* x, int64_t n, const RowAccumulators& a) {
  if (a.thresholds)
    a.seq_sum ? accumulate<true, true>(x, n, a) : accumulate<true, false>(x, n, a);
  else
    a.seq_sum ? accumulate<false, true>(x, n, a) : accumulate<false, false>(x, n, a);
}

}  // namespace ln
