// Storage dtypes of checkpoint tensors and their scalar conversions.
// The conversions are plain inline functions so that the CPU kernels, the tests and (later) CUDA kernels share
// exactly the same rounding: LN_HD marks them host+device when compiled by nvcc.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LN_HD __host__ __device__
#else
#define LN_HD
#endif

namespace ln {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

inline int64_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) {
  return t == DType::F32 ? "F32" : t == DType::F16 ? "F16" : "BF16";
}

LN_HD inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
LN_HD inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

LN_HD inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// Round-to-nearest-even, NaN kept quiet (as torch does).
LN_HD inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Value of f after rounding to bf16 (the "bf16 compute" rounding of activations).
LN_HD inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

LN_HD inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_to_f32(sign);
    // subnormal: value = mant * 2^-24
    float v = float(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
  return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Value of element i of a tensor stored as `t`.
inline float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: { float f; std::memcpy(&f, static_cast<const char*>(p) + 4 * i, 4); return f; }
    case DType::BF16: { uint16_t h; std::memcpy(&h, static_cast<const char*>(p) + 2 * i, 2); return bf16_to_f32(h); }
    case DType::F16: { uint16_t h; std::memcpy(&h, static_cast<const char*>(p) + 2 * i, 2); return f16_to_f32(h); }
  }
  return 0.f;
}

// Convert n elements starting at element `first` to float32.
void convert_to_f32(const void* src, DType t, int64_t first, int64_t n, float* dst);

}  // namespace ln
