// Helpers of the GPU tests: device buffers from host vectors, error measures, a skip exception.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_buffer.h"
#include "test_util.h"

namespace lngpu {

extern std::string g_fixtures;

// Thrown by a test that cannot run here (e.g. fixtures missing): reported as SKIPPED, not passed.
struct Skip : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A device copy of a host vector, and back.
template <class T>
struct Dev {
  ln::cuda::DeviceBuffer buf;
  size_t n = 0;
  Dev() = default;
  explicit Dev(const std::vector<T>& h) { upload(h); }
  explicit Dev(size_t count) { zeros(count); }
  void zeros(size_t count) {
    n = count;
    buf.ensure(std::max<size_t>(1, n) * sizeof(T));
    ln::cuda::memset_zero(buf.get(), std::max<size_t>(1, n) * sizeof(T));
  }
  void upload(const std::vector<T>& h) {
    n = h.size();
    buf.ensure(std::max<size_t>(1, n) * sizeof(T));
    if (n) ln::cuda::copy_to_device(buf.get(), h.data(), n * sizeof(T), nullptr);
    ln::cuda::synchronize(nullptr);
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    ln::cuda::synchronize(nullptr);
    if (n) ln::cuda::copy_to_host(h.data(), buf.get(), n * sizeof(T), nullptr);
    ln::cuda::synchronize(nullptr);
    return h;
  }
  T* get() const { return buf.as<T>(); }
};

// Seeded N(0, scale^2) values, and bf16 conversions (nearest even) of host vectors.
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = N(rng);
  return v;
}
inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = ln::f32_to_bf16(v[i]);
  return b;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t>& b) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = ln::bf16_to_f32(b[i]);
  return v;
}

// max |a - b| / max(max |b|, tiny): the relative error of a block of values.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  if (a.size() != b.size()) return INFINITY;
  return num / std::max(den, 1e-30);
}

// ||a - b|| / ||b|| (L2, in double); 0 when both are all zeros. *norm (optional) = ||b||.
inline double l2_rel(const std::vector<float>& a, const std::vector<float>& b, double* norm = nullptr) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (norm) *norm = std::sqrt(den);
  return std::sqrt(num / std::max(den, 1e-300));
}

inline int64_t argmax_row(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }

}  // namespace lngpu
