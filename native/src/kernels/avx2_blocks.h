// Building blocks shared by the AVX2 kernel files (gemm_avx2.cpp, gemm_backward_avx2.cpp,
// attention_kernels_avx2.cpp, ops_avx2.cpp). Include it ONLY from *_avx2.cpp files, which are compiled with -mavx2 -mfma
// -mf16c: everything here is in an anonymous namespace, so each of those files gets its own internal copy and the
// linker can never hand an AVX body to portable code (the SIGILL hazard described in gemm_avx2.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace ln {
namespace {

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

}  // namespace
}  // namespace ln
