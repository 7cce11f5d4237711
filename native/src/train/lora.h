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

#include "kernels/math.h"

namespace ln {
namespace train {

// The hash, the keys and the uniforms are kernels/math.h's (host + device): the CUDA trainer draws the same masks.
using math::mix64;
using math::rng_key;
using math::rng_uniform;
using math::lora_keep;

enum RngDomain : uint64_t { kRngLoraInit = 1, kRngLoraDropout = 2, kRngHeadInit = 3 };

// The dropout stream of the adapter on (layer, role) in micro-batch `micro` of optimizer step `step`.
inline uint64_t lora_dropout_key(uint64_t seed, int64_t step, int64_t micro, int layer, int role) {
  return rng_key(seed, kRngLoraDropout, step, micro, layer, role);
}
// A [r, K] initial value i (row-major): uniform(-1/sqrt(K), 1/sqrt(K)).
inline float lora_init_a(uint64_t seed, int layer, int role, int64_t i, int64_t K) {
  const float bound = float(1.0 / std::sqrt(double(K)));
  return (2.f * rng_uniform(rng_key(seed, kRngLoraInit, layer, role, 0, 0), i) - 1.f) * bound;
}

// Value i of a normal(0, std) stream (Box-Muller on uniforms 2i and 2i + 1 of `key`): the classification head's
// init, and A's with lora_init_std.
inline float seeded_normal(uint64_t key, int64_t i, double std) {
  const double u1 = 1.0 - double(rng_uniform(key, 2 * i)), u2 = double(rng_uniform(key, 2 * i + 1));
  return float(std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2));
}

// A [r, K] initial value i: normal(0, std) (Mondal et al.'s LoRALayer, std 0.01).
inline float lora_init_a_normal(uint64_t seed, int layer, int role, int64_t i, float std) {
  return seeded_normal(rng_key(seed, kRngLoraInit, layer, role, 0, 0), i, double(std));
}

}  // namespace train
}  // namespace ln
