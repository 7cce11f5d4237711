// Test data shared by the GEMM tests (test_gemm.cpp: the forward Y = X W^T; test_gemm_backward.cpp: dX and dW):
// the tolerance unit, a small deterministic generator, and weights stored in any dtype at a misaligned address
// with the exact float64 value of every element.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/gemm.h"

namespace gemmtest {

using namespace ln;

constexpr double kU = 1.0 / 16777216.0;  // 2^-24, float32 unit roundoff
constexpr double kTolUnits = 4.0;        // the tolerance in units of u * sqrt(reduction length) (see the tests)

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return uint32_t(s >> 16);
  }
  float uniform() { return float(next() & 0xffffff) / float(0x800000) - 1.f; }  // [-1, 1)
  int small_int() { return int(next() % 7) - 3; }                             // -3..3
};

// A [rows x cols] weight stored in `dtype` 2 bytes past an allocation (misaligned for F32, as a memory-mapped
// safetensors file can give), with the exact float64 value of each element.
struct Weights {
  std::vector<uint8_t> storage;
  WeightRef ref;
  std::vector<double> value;
};

// Normal f16 numbers in [2^-6, 2) with random sign and mantissa, and some subnormals (the F16C path must handle
// them exactly like the scalar conversion).
inline uint16_t random_f16(Rng& r) {
  const uint32_t sign = (r.next() & 1) << 15, mant = r.next() & 0x3ff;
  const uint32_t exp = (r.next() % 20 == 0) ? 0 : 9 + r.next() % 7;
  return uint16_t(sign | (exp << 10) | mant);
}

// v in -3..3 as f16 (exact: 1.m x 2^e).
inline uint16_t f16_small_int(int v) {
  const int a = v < 0 ? -v : v;
  return a == 0 ? 0 : uint16_t((v < 0 ? 0x8000 : 0) | ((a >= 2 ? 16 : 15) << 10) | (a == 3 ? 0x200 : 0));
}

// Uniform values in [-1, 1) (random f16 patterns for F16), or small integers -3..3 (exact in every dtype, so
// products and sums are exact too).
inline Weights make_weights(DType t, int64_t rows, int64_t cols, Rng& r, bool small_ints) {
  Weights w;
  const int64_t n = rows * cols, esz = dtype_size(t);
  w.storage.assign(size_t(n * esz + 2), 0);
  uint8_t* base = w.storage.data() + 2;
  for (int64_t i = 0; i < n; ++i) {
    const int si = small_ints ? r.small_int() : 0;
    const float f = small_ints ? float(si) : r.uniform();
    if (t == DType::F32) {
      std::memcpy(base + 4 * i, &f, 4);
    } else {
      const uint16_t h = t == DType::BF16 ? f32_to_bf16(f) : small_ints ? f16_small_int(si) : random_f16(r);
      std::memcpy(base + 2 * i, &h, 2);
    }
  }
  w.ref = WeightRef{base, t, rows, cols};
  w.value.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) w.value[size_t(i)] = load_as_f32(base, t, i);
  return w;
}

}  // namespace gemmtest
