// Host-side parts of the CUDA trainer's kernels, checked on the CPU: the counter-based random numbers now in
// kernels/math.h (the values of the generator the LoRA tests were written against, and train/lora.h's names are
// the same functions), the SwiGLU backward element, and the token grouping of the deterministic embedding
// backward (train/token_groups.h): adding each group's rows in order gives the CPU's embedding_backward bit for
// bit.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <random>

#include "kernels/math.h"
#include "train/layers.h"
#include "train/param_layout.h"
#include "train/lora.h"
#include "train/token_groups.h"
#include "test_util.h"

using namespace ln;

namespace {
// splitmix64 as published (Vigna): state += golden gamma, then the finaliser. Its first outputs from state 0 are
// the well-known 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F.
uint64_t splitmix64_next(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

LN_TEST(train_rng_is_splitmix64_and_shared) {
  uint64_t st = 0;
  const uint64_t want[3] = {0xE220A8397B1DCDAFull, 0x6E789E6AA1B965F4ull, 0x06C45D188009454Full};
  for (int i = 0; i < 3; ++i) {
    LN_CHECK(splitmix64_next(&st) == want[i]);
    // mix64(z) is one splitmix64 step from state z: from state i * gamma it gives output i + 1.
    LN_CHECK(math::mix64(uint64_t(i) * 0x9E3779B97F4A7C15ull) == want[i]);
  }
  // The key chain and the uniform, rebuilt from the published step.
  auto step_from = [](uint64_t s) { return splitmix64_next(&s); };
  const uint64_t seed = 1234567, dom = 2;
  uint64_t k = step_from(seed ^ (dom << 56));
  for (int64_t c : {int64_t(7), int64_t(-1), int64_t(3), int64_t(4)}) k = step_from(k ^ uint64_t(c));
  LN_CHECK(math::rng_key(seed, dom, 7, -1, 3, 4) == k);
  LN_CHECK(train::rng_key(seed, dom, 7, -1, 3, 4) == k);
  LN_CHECK(train::lora_dropout_key(seed, 7, -1, 3, 4) == k);
  for (int64_t i : {int64_t(0), int64_t(1), int64_t(99), int64_t(1) << 40}) {
    const uint64_t bits = step_from(k ^ (uint64_t(i) * 0xD1B54A32D192ED03ull)) >> 40;
    const float u = float(double(bits) / 16777216.0);
    LN_CHECK(math::rng_uniform(k, i) == u);
    LN_CHECK(train::rng_uniform(k, i) == u);
    LN_CHECK(u >= 0.f && u < 1.f);
    LN_CHECK(math::lora_keep(k, i / 10, i % 10, 10, 0.3f) == (u >= 0.3f));
  }
}

LN_TEST(train_swiglu_grads_element_matches_float64) {
  std::mt19937 rng(5);
  std::normal_distribution<float> N(0.f, 3.f);
  for (int i = 0; i < 1000; ++i) {
    const float g = N(rng), u = N(rng), d = N(rng);
    float dg, du;
    math::swiglu_grads(g, u, d, &dg, &du);
    const double s = 1.0 / (1.0 + std::exp(-double(g)));
    const double want_dg = double(d) * u * s * (1.0 + g * (1.0 - s)), want_du = double(d) * g * s;
    // s (1 + g (1 - s)) cancels for negative g: float rounding of the terms, scaled by |d u| (1 + |g|), bounds it.
    const double bound = 1e-6 * std::fabs(double(d) * u) * (1 + std::fabs(g));
    LN_CHECK_MSG(std::fabs(dg - want_dg) <= bound, "dg %g vs %g (g %g)", dg, want_dg, g);
    LN_CHECK_MSG(std::fabs(du - want_du) <= 1e-5 * (std::fabs(want_du) + 1e-3), "du %g vs %g", du, want_du);
  }
}

LN_TEST(train_token_groups_hand_example) {
  const int32_t tokens[] = {5, 2, 5, 7, 2, 5};
  train::TokenGroups g;
  train::plan_token_groups(tokens, 6, &g);
  LN_CHECK((g.order == std::vector<int64_t>{1, 4, 0, 2, 5, 3}));
  LN_CHECK((g.group_token == std::vector<int32_t>{2, 5, 7}));
  LN_CHECK((g.group_start == std::vector<int64_t>{0, 2, 5, 6}));
  LN_CHECK(g.n_groups() == 3);
  train::plan_token_groups(tokens, 0, &g);  // an empty batch: no groups, one boundary
  LN_CHECK(g.n_groups() == 0 && g.order.empty() && (g.group_start == std::vector<int64_t>{0}));
  // Reuse without new capacity once grown.
  train::plan_token_groups(tokens, 6, &g);
  const int64_t* before = g.order.data();
  train::plan_token_groups(tokens + 1, 5, &g);
  LN_CHECK(g.order.data() == before);
  LN_CHECK((g.order == std::vector<int64_t>{0, 3, 1, 4, 2}));
}

// The GPU kernel's summation (per group, rows in `order`, e = e + scale * d per row) equals the CPU's serial loop
// over tokens bit for bit.
LN_TEST(train_token_groups_sum_equals_cpu_embedding_backward) {
  const int64_t T = 517, H = 19, V = 40;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(V - 1));
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<int32_t> tokens(T);
  for (int32_t& t : tokens) t = tok(rng) % 13 * 3;  // repeats, and tokens never seen
  std::vector<float> dh(size_t(T * H)), e0(size_t(V * H));
  for (float& x : dh) x = N(rng);
  for (float& x : e0) x = N(rng);
  const float scale = 6.2f;
  std::vector<float> want = e0;
  train::embedding_backward(T, H, tokens.data(), dh.data(), want.data(), scale);
  train::TokenGroups g;
  train::plan_token_groups(tokens.data(), T, &g);
  std::vector<float> got = e0;
  for (int64_t grp = 0; grp < g.n_groups(); ++grp)
    for (int64_t c = 0; c < H; ++c) {
      float acc = got[size_t(g.group_token[size_t(grp)] * H + c)];
      for (int64_t r = g.group_start[size_t(grp)]; r < g.group_start[size_t(grp) + 1]; ++r)
        acc = acc + scale * dh[size_t(g.order[size_t(r)] * H + c)];
      got[size_t(g.group_token[size_t(grp)] * H + c)] = acc;
    }
  LN_CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
}

// The AdamW scalars both trainers hand to math::adamw_update (train/param_layout.h), against values worked out by
// hand: lr 0.1, betas 0.9 / 0.99, weight decay 0.01, clip 1 with a gradient norm of 3, step t = 2.
LN_TEST(train_adamw_step_scalars_hand_example) {
  train::AdamWConfig c;
  c.lr = 0.1f;
  c.beta1 = 0.9f;
  c.beta2 = 0.99f;
  c.weight_decay = 0.01f;
  c.clip = 1.f;
  const train::AdamWStep s = train::adamw_step_scalars(c, 3.0, 2);
  LN_CHECK(s.clip_scale == float(1.0 / (3.0 + 1e-6)));                                  // clipped: 1 / (3 + 1e-6)
  LN_CHECK(s.step_size == float(double(0.1f) / (1 - double(0.9f) * double(0.9f))));     // lr / (1 - 0.9^2) ~ 0.526
  LN_CHECK(s.bc2_sqrt == float(std::sqrt(1 - double(0.99f) * double(0.99f))));          // sqrt(1 - 0.99^2) ~ 0.141
  LN_CHECK(s.decay == 1.f - 0.1f * 0.01f);
  LN_CHECK(train::adamw_step_scalars(c, 0.5, 2).clip_scale == 1.f);  // under the clip: untouched
  std::string msg;
  try {
    train::adamw_step_scalars(c, std::nan(""), 1);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  LN_CHECK_MSG(msg.find("the gradient is not finite") != std::string::npos, "got '%s'\n", msg.c_str());
  msg.clear();
  c.beta1 = 1.f;
  try {
    train::check_adamw_config(c);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  LN_CHECK_MSG(msg.find("bad AdamW settings") != std::string::npos, "got '%s'\n", msg.c_str());
}
