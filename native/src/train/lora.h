// LoRA (Hu et al. 2021, Hugging Face PEFT semantics) on a frozen Linear W [N, K]:
//   Y = X W^T + s * dropout(X) A^T B^T,   s = alpha / r,   A [r, K], B [N, r]
// Dropout acts on the adapter's input only (inverted: kept values scaled by 1 / (1 - p)) and only while training.
// Init as PEFT's default: A ~ kaiming_uniform(a = sqrt(5)) = uniform(-1/sqrt(K), 1/sqrt(K)), B = 0.
//
// Every random number here comes from a counter-based hash (splitmix64 finaliser) of a key and an element index,
// not from a stateful generator: a dropout mask is a pure function of (seed, step, micro-batch, layer, role,
// token row, feature), so a resumed run draws the same masks as an uninterrupted one, any thread count draws the
// same masks, and the float64 reference of the tests can rebuild them (native/tests/ref_model.h).
#pragma once
#include <cmath>
#include <cstdint>

namespace ln {
namespace train {

inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Key of one stream of random numbers. `domain` separates uses (below), a..d their coordinates.
inline uint64_t rng_key(uint64_t seed, uint64_t domain, int64_t a, int64_t b, int64_t c, int64_t d) {
  uint64_t k = mix64(seed ^ (domain << 56));
  k = mix64(k ^ uint64_t(a));
  k = mix64(k ^ uint64_t(b));
  k = mix64(k ^ uint64_t(c));
  return mix64(k ^ uint64_t(d));
}

// Uniform in [0, 1) with 24 random bits (exact in float) for element i of stream `key`.
inline float rng_uniform(uint64_t key, int64_t i) {
  return float(mix64(key ^ (uint64_t(i) * 0xD1B54A32D192ED03ull)) >> 40) * (1.0f / 16777216.0f);
}

enum RngDomain : uint64_t { kRngLoraInit = 1, kRngLoraDropout = 2, kRngHeadInit = 3 };

// The dropout stream of the adapter on (layer, role) in micro-batch `micro` of optimizer step `step`.
inline uint64_t lora_dropout_key(uint64_t seed, int64_t step, int64_t micro, int layer, int role) {
  return rng_key(seed, kRngLoraDropout, step, micro, layer, role);
}
// Element (row, col) of the adapter input [M, K] is kept when this is true (probability 1 - p).
inline bool lora_keep(uint64_t key, int64_t row, int64_t col, int64_t K, float p) {
  return rng_uniform(key, row * K + col) >= p;
}
// A [r, K] initial value i (row-major): uniform(-1/sqrt(K), 1/sqrt(K)).
inline float lora_init_a(uint64_t seed, int layer, int role, int64_t i, int64_t K) {
  const float bound = float(1.0 / std::sqrt(double(K)));
  return (2.f * rng_uniform(rng_key(seed, kRngLoraInit, layer, role, 0, 0), i) - 1.f) * bound;
}

}  // namespace train
}  // namespace ln
