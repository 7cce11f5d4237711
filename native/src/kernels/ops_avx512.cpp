// AVX-512 version of silu_inplace (kernels/ops.h): avx2_blocks.h's exp8 / silu8 on 16 lanes, the same operations in
// the same order, so every element gets the same bits as from silu_inplace_avx2 (tested); the row's tail is a
// masked load/store instead of a second loop. Compiled with the AVX-512 flags, only on x86, only called after
// cpu_supports(CpuKernel::Avx512).
#include <immintrin.h>

#include "kernels/avx512_blocks.h"
#include "kernels/ops.h"

namespace ln {
namespace {

// exp8 (avx2_blocks.h) on 16 lanes: inputs <= 0, clamped at -87.3.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 y = _mm512_set1_ps(1.f / 5040);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 720));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 120));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 24));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

// silu8 (avx2_blocks.h) on 16 lanes.
inline __m512 silu16(__m512 x) {
  const __m512 neg_abs = _mm512_or_ps(x, _mm512_set1_ps(-0.f));
  const __m512 e = exp16(neg_abs);
  const __m512 one = _mm512_set1_ps(1.f);
  const __mmask16 negative = _mm512_movepi32_mask(_mm512_castps_si512(x));  // sign bit set
  const __m512 numer = _mm512_mul_ps(x, _mm512_mask_blend_ps(negative, one, e));
  const __m512 y = _mm512_div_ps(numer, _mm512_add_ps(one, e));
  const __mmask16 far_left = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(far_left, y, _mm512_mul_ps(x, _mm512_setzero_ps()));
}

}  // namespace

void silu_inplace_avx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, silu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, silu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace ln
