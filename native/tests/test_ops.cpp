// Row/elementwise ops (kernels/ops.h) against double-precision formulas written out here.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/ops.h"
#include "kernel_families.h"
#include "kernels/kernel_table.h"
#include "test_util.h"

using namespace ln;

static std::vector<float> rand_vec(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> U(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = U(rng);
  return v;
}

LN_TEST(ops_rmsnorm_matches_double) {
  const int64_t n = 77;
  const float eps = 1e-6f;
  const auto x = rand_vec(3 * n, -4.f, 4.f, 1), w = rand_vec(n, 0.5f, 1.5f, 2);
  std::vector<float> y(3 * n), y2(x);
  rmsnorm_rows(3, x.data(), n, w.data(), y.data(), n, n, eps);
  rmsnorm_rows(3, y2.data(), n, w.data(), y2.data(), n, n, eps);  // in place
  double worst = 0;
  for (int r = 0; r < 3; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
    const double inv = 1 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) {
      const double want = double(w[i]) * x[r * n + i] * inv;
      worst = std::max(worst, std::fabs(y[r * n + i] - want) / (std::fabs(want) + 1e-3));
    }
  }
  LN_CHECK_MSG(worst < 1e-6, "worst %g", worst);
  LN_CHECK(y == y2);
  // All zeros: eps keeps it finite.
  std::vector<float> z(8, 0.f), one(8, 1.f), out(8, 5.f);
  rmsnorm(z.data(), one.data(), out.data(), 8, 1e-5f);
  for (float v : out) LN_CHECK(v == 0.f);
}

LN_TEST(ops_silu_matches_double) {
  double worst = 0;
  for (float g : {-100.f, -20.f, -3.5f, -1.f, -1e-3f, 0.f, 1e-3f, 0.7f, 2.f, 15.f, 90.f}) {
    const double want = double(g) / (1 + std::exp(-double(g)));
    worst = std::max(worst, std::fabs(silu(g) - want) / (std::fabs(want) + 1e-30));
    LN_CHECK(std::isfinite(silu(g)));
  }
  LN_CHECK_MSG(worst < 1e-6, "worst %g", worst);
  std::vector<float> g{-1.f, 0.5f, 3.f}, u{2.f, -4.f, 0.25f};
  silu_inplace(g.data(), 3);
  mul_inplace(g.data(), u.data(), 3);
  LN_CHECK(std::fabs(g[0] - (-1.0 / (1 + std::exp(1.0))) * 2) < 1e-6);
  LN_CHECK(std::fabs(g[2] - (3.0 / (1 + std::exp(-3.0))) * 0.25) < 1e-6);
}

// The AVX2 silu (own exp polynomial) against float64 over the whole float range that matters (bound: 4e-7
// relative, see silu8; the worst is also reported in ulps); special values as math::silu; and position
// independence: a value's result is the same in the 8-wide body and in the masked tail, for every row length 1..17.
static double ulps(float got, double want) {
  const float a = std::fabs(float(want));
  const double spacing = std::max(double(std::nextafter(a, INFINITY)) - double(a), 1e-45);
  return std::fabs(double(got) - want) / spacing;
}
LN_TEST(ops_silu_avx2_matches_double) {
  if (!cpu_supports(CpuKernel::Avx2)) return;
  std::vector<float> x;
  for (float v = -100.f; v <= 100.f; v += 0.0137f) x.push_back(v);
  for (float v : {-87.2f, -87.4f, -88.f, -1e-30f, 1e-30f, 1e-6f, -1e-6f, 0.f, -0.f, 1e4f, -1e4f, 3.4e38f}) x.push_back(v);
  std::vector<float> y(x);
  kernel_table(CpuKernel::Avx2).silu_inplace(y.data(), int64_t(y.size()));
  double worst = 0, worst_rel = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = double(x[i]) / (1 + std::exp(-double(x[i])));
    if (std::fabs(want) < 1e-35) {  // far left: silu underflows (math::silu gives -0 or a subnormal)
      LN_CHECK_MSG(std::fabs(y[i]) < 1e-35f && !(y[i] > 0.f), "x=%g y=%g", double(x[i]), double(y[i]));
      continue;
    }
    worst = std::max(worst, ulps(y[i], want));
    worst_rel = std::max(worst_rel, std::fabs(double(y[i]) - want) / std::fabs(want));
  }
  LN_CHECK_MSG(worst_rel <= 4e-7, "worst %g relative (%g ulp)", worst_rel, worst);
  float sp[] = {INFINITY, -INFINITY, NAN, -0.f, 0.f};
  kernel_table(CpuKernel::Avx2).silu_inplace(sp, 5);
  LN_CHECK(sp[0] == INFINITY);
  LN_CHECK(std::isnan(sp[1]) && std::isnan(math::silu(-INFINITY)));
  LN_CHECK(std::isnan(sp[2]));
  LN_CHECK(sp[3] == 0.f && std::signbit(sp[3]) && std::signbit(math::silu(-0.f)));
  LN_CHECK(sp[4] == 0.f && !std::signbit(sp[4]));
  const auto r = rand_vec(17, -6.f, 6.f, 9);
  std::vector<float> body(r);
  kernel_table(CpuKernel::Avx2).silu_inplace(body.data(), 17);
  for (int n = 1; n <= 17; ++n) {
    std::vector<float> guard(r);  // elements past n stay untouched
    kernel_table(CpuKernel::Avx2).silu_inplace(guard.data(), n);
    for (int i = 0; i < 17; ++i) LN_CHECK(guard[size_t(i)] == (i < n ? body[size_t(i)] : r[size_t(i)]));
    std::vector<float> shifted(r.begin() + (17 - n), r.end());  // the same values landing in the tail
    kernel_table(CpuKernel::Avx2).silu_inplace(shifted.data(), n);
    for (int i = 0; i < n; ++i) LN_CHECK(shifted[size_t(i)] == body[size_t(17 - n + i)]);
  }
}

// (The x86 kernels are reached through kernel_table(family), which exists on every architecture: an arm64 build
// links, and these tests skip there because cpu_supports says no.)
// The AVX-512 silu is the AVX2 one on 16 lanes: the same bits for every element (range, special values, and every
// row length 1..40 through its masked tail).
LN_TEST(ops_silu_avx512_same_bits_as_avx2) {
  if (!cpu_supports(CpuKernel::Avx512)) {
    std::printf("    skipped: needs %s\n", kernel_requirements(CpuKernel::Avx512));
    return;
  }
  std::vector<float> x;
  for (float v = -100.f; v <= 100.f; v += 0.0137f) x.push_back(v);
  for (float v : {-87.2f, -87.4f, -88.f, -1e-30f, 1e-30f, 0.f, -0.f, 1e4f, -1e4f, 3.4e38f, INFINITY, -INFINITY})
    x.push_back(v);
  std::vector<float> a(x), b(x);
  kernel_table(CpuKernel::Avx2).silu_inplace(a.data(), int64_t(a.size()));
  kernel_table(CpuKernel::Avx512).silu_inplace(b.data(), int64_t(b.size()));
  LN_CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  float nan_in[1] = {NAN};
  kernel_table(CpuKernel::Avx512).silu_inplace(nan_in, 1);
  LN_CHECK(std::isnan(nan_in[0]));
  const auto r = rand_vec(40, -6.f, 6.f, 19);
  for (int n = 1; n <= 40; ++n) {
    std::vector<float> p(r), q(r);
    kernel_table(CpuKernel::Avx2).silu_inplace(p.data(), n);
    kernel_table(CpuKernel::Avx512).silu_inplace(q.data(), n);
    LN_CHECK_MSG(p == q, "n=%d", n);  // elements past n untouched by both
  }
}

LN_TEST(ops_rope_inv_freq_default_and_llama3) {
  const int hd = 64;
  std::vector<double> f(hd / 2);
  rope_inv_freq(hd, 500000.0, RopeScaling{}, f.data());
  for (int i = 0; i < hd / 2; ++i) LN_CHECK(std::fabs(f[i] / std::pow(500000.0, -2.0 * i / hd) - 1) < 1e-14);

  // Llama 3.1 8B parameters: factor 8, low 1, high 4, original context 8192.
  RopeScaling s;
  s.llama3 = true;
  s.factor = 8;
  s.low_freq_factor = 1;
  s.high_freq_factor = 4;
  s.original_max_positions = 8192;
  rope_inv_freq(hd, 500000.0, s, f.data());
  int kept = 0, scaled = 0, smooth = 0;
  for (int i = 0; i < hd / 2; ++i) {
    const double base = std::pow(500000.0, -2.0 * i / hd), wl = 2 * M_PI / base;
    double want;
    if (wl < 8192.0 / 4) {
      want = base;
      ++kept;
    } else if (wl > 8192.0 / 1) {
      want = base / 8;
      ++scaled;
    } else {
      const double sm = (8192.0 / wl - 1) / (4 - 1);
      want = (1 - sm) * base / 8 + sm * base;
      ++smooth;
    }
    LN_CHECK_MSG(std::fabs(f[i] / want - 1) < 1e-14, "i=%d got %g want %g", i, f[i], want);
  }
  LN_CHECK(kept > 0 && scaled > 0 && smooth > 0);  // the test covers all three bands
  // A known value: index 0 is never scaled, the last is divided by 8.
  LN_CHECK(f[0] == 1.0);
  LN_CHECK(std::fabs(f[31] - std::pow(500000.0, -62.0 / 64) / 8) < 1e-18);
}

LN_TEST(ops_rope_tables_and_apply) {
  const int hd = 8, half = 4;
  const float inv[half] = {1.f, 0.1f, 0.01f, 0.001f};
  std::vector<float> c(10 * half), s(10 * half);
  rope_tables(inv, half, 0, 6, c.data(), s.data());
  rope_tables(inv, half, 6, 10, c.data() + 6 * half, s.data() + 6 * half);  // appended in two pieces
  for (int p = 0; p < 10; ++p)
    for (int i = 0; i < half; ++i) {
      LN_CHECK(std::fabs(c[p * half + i] - std::cos(double(p) * inv[i])) < 1e-6);
      LN_CHECK(std::fabs(s[p * half + i] - std::sin(double(p) * inv[i])) < 1e-6);
    }
  // Two heads at position 7, rotate_half pairing (i, i + 4), not interleaved pairs.
  auto x = rand_vec(2 * hd, -2.f, 2.f, 9);
  std::vector<float> y(x);
  rope_apply(y.data(), 2, hd, c.data() + 7 * half, s.data() + 7 * half);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < half; ++i) {
      const double a = 7.0 * inv[i], x0 = x[h * hd + i], x1 = x[h * hd + i + half];
      LN_CHECK(std::fabs(y[h * hd + i] - (x0 * std::cos(a) - x1 * std::sin(a))) < 1e-5);
      LN_CHECK(std::fabs(y[h * hd + i + half] - (x1 * std::cos(a) + x0 * std::sin(a))) < 1e-5);
    }
  // Position 0 is the identity.
  std::vector<float> z(x);
  rope_apply(z.data(), 2, hd, c.data(), s.data());
  LN_CHECK(z == x);
}

LN_TEST(ops_logsumexp_bias_round_embed) {
  const auto x = rand_vec(1000, -30.f, 30.f, 4);
  double m = -1e300, z = 0;
  for (float v : x) m = std::max(m, double(v));
  for (float v : x) z += std::exp(double(v) - m);
  LN_CHECK(std::fabs(logsumexp(x.data(), 1000) - (m + std::log(z))) < 1e-5);
  std::vector<float> big{1000.f, 1000.f};
  LN_CHECK(std::fabs(logsumexp(big.data(), 2) - (1000 + std::log(2.0))) < 1e-9);
  // target_logprob: logit - logsumexp, except a row of all-zero logits (an overflowed final norm), which is NaN
  LN_CHECK(std::fabs(target_logprob(x.data(), 1000, 17) - float(double(x[17]) - logsumexp(x.data(), 1000))) < 1e-6);
  std::vector<float> zeros(1000, 0.f);
  LN_CHECK(std::isnan(target_logprob(zeros.data(), 1000, 3)));
  zeros[999] = -1e-3f;  // nearly uniform, but a prediction: -log(999 + e^-0.001)
  LN_CHECK(std::fabs(target_logprob(zeros.data(), 1000, 3) + std::log(999.0 + std::exp(-1e-3))) < 1e-6);

  std::vector<float> r{1.f + 1.f / 512, 3.14159f, -2.7182818f};
  round_bf16_inplace(r.data(), 3);
  LN_CHECK(r[0] == 1.f);  // halfway: round to even
  LN_CHECK(r[1] == bf16_to_f32(f32_to_bf16(3.14159f)) && r[1] != 3.14159f);

  // Embedding rows from bf16 storage at a misaligned address.
  std::vector<uint8_t> buf(1 + 3 * 4 * 2);
  const float vals[12] = {0.5f, -1.f, 2.f, 3.f, 4.f, -5.f, 6.f, 7.f, 8.f, 9.f, -10.f, 0.25f};
  for (int i = 0; i < 12; ++i) {
    uint16_t b = f32_to_bf16(vals[i]);
    std::memcpy(buf.data() + 1 + 2 * i, &b, 2);
  }
  WeightRef e;
  e.data = buf.data() + 1;
  e.dtype = DType::BF16;
  e.rows = 3;
  e.cols = 4;
  const int32_t toks[3] = {2, 0, 2};
  std::vector<float> out(3 * 5, -1.f);
  embed_rows(e, toks, 3, out.data(), 5);
  for (int j = 0; j < 4; ++j) {
    LN_CHECK(out[j] == vals[8 + j]);
    LN_CHECK(out[5 + j] == vals[j]);
    LN_CHECK(out[10 + j] == vals[8 + j]);
  }
  LN_CHECK(out[4] == -1.f);  // row stride respected
}

LN_TEST(ops_attend_row_matches_double) {
  // magnitude 30 spreads the scores over hundreds of nats: exercises the exp range reduction and underflow
  for (float magnitude : {1.f, 30.f})
  for (int hd : {8, 12, 64, 72}) {
    const int n_keys = 37;
    const int64_t ld = 3 * hd;  // keys of one kv head inside wider rows
    auto q = rand_vec(size_t(hd), -1.f, 1.f, 20);
    for (float& x : q) x *= magnitude;
    const auto kv = rand_vec(size_t(2 * n_keys * ld), -1.f, 1.f, 21);
    const float* k = kv.data();
    const float* v = kv.data() + n_keys * ld;
    const float scale = 1.f / std::sqrt(float(hd));
    std::vector<double> s(n_keys), want(size_t(hd), 0.0);
    double m = -1e300, z = 0;
    for (int j = 0; j < n_keys; ++j) {
      double d = 0;
      for (int e = 0; e < hd; ++e) d += double(q[e]) * k[j * ld + e];
      s[j] = d * scale;
      m = std::max(m, s[j]);
    }
    for (double& x : s) z += (x = std::exp(x - m));
    for (int j = 0; j < n_keys; ++j)
      for (int e = 0; e < hd; ++e) want[e] += s[j] / z * v[j * ld + e];
    std::vector<float> p(n_keys), out(static_cast<size_t>(hd));
    attend_row_plain(q.data(), k, v, ld, n_keys, hd, scale, p.data(), out.data());
    double worst = 0;
    for (int e = 0; e < hd; ++e) worst = std::max(worst, std::fabs(out[e] - want[e]));
    LN_CHECK_MSG(worst < 1e-5, "plain hd=%d: %g", hd, worst);
    if (cpu_supports(CpuKernel::Avx2)) {
      std::fill(out.begin(), out.end(), 0.f);
      kernel_table(CpuKernel::Avx2).attend_row(q.data(), k, v, ld, n_keys, hd, scale, p.data(), out.data());
      worst = 0;
      for (int e = 0; e < hd; ++e) worst = std::max(worst, std::fabs(out[e] - want[e]));
      LN_CHECK_MSG(worst < 1e-5, "avx2 hd=%d: %g", hd, worst);
    }
  }
}

// attend_causal against float64: n_rows query rows of n_q heads sharing one KV head, row r at position key0 + r
// attending to keys 0..key0+r. Strides wider than the data (heads inside wider rows) and a sentinel around every
// output vector check that nothing outside the outputs is written.
namespace {
struct CausalCase {
  int hd, n_q, n_rows;
  int32_t key0;
  float magnitude;
};

// Worst |difference| of one family's attend_causal from a float64 recomputation; the outputs go to *got.
double check_attend_causal(const CausalCase& c, uint32_t seed, CpuKernel fam, std::vector<float>* got = nullptr) {
  const int hd = c.hd, n_q = c.n_q, n_rows = c.n_rows;
  const int32_t n_keys = c.key0 + n_rows;
  const int64_t ldq = int64_t(n_q + 1) * hd + 3, ldo = int64_t(n_q) * hd + 5, ldkv = 2 * int64_t(hd) + 1;
  auto q = rand_vec(size_t(n_rows * ldq), -1.f, 1.f, seed);
  for (float& x : q) x *= c.magnitude;
  const auto k = rand_vec(size_t(n_keys * ldkv), -1.f, 1.f, seed + 1);
  const auto v = rand_vec(size_t(n_keys * ldkv), -1.f, 1.f, seed + 2);
  const float scale = 1.f / std::sqrt(float(hd));
  const float sentinel = 12345.f;
  std::vector<float> out(size_t(n_rows * ldo), sentinel);
  std::vector<float> scratch(size_t(attend_causal_scratch_floats(hd)) + 16);
  float* sp = scratch.data();
  while (reinterpret_cast<uintptr_t>(sp) % 64) ++sp;  // the kernels expect the 64-byte alignment they get
  if (fam != CpuKernel::Plain)
    kernel_table(fam).attend_causal(q.data(), ldq, n_rows, n_q, k.data(), v.data(), ldkv, c.key0, hd, scale, out.data(), ldo, sp);
  else
    attend_causal_plain(q.data(), ldq, n_rows, n_q, k.data(), v.data(), ldkv, c.key0, hd, scale, out.data(), ldo,
                        sp);
  double worst = 0;
  for (int r = 0; r < n_rows; ++r) {
    const int32_t nk = c.key0 + r + 1;
    for (int g = 0; g < n_q; ++g) {
      const float* qv = q.data() + r * ldq + g * hd;
      std::vector<double> s(static_cast<size_t>(nk)), want(static_cast<size_t>(hd), 0.0);
      double m = -1e300, z = 0;
      for (int32_t j = 0; j < nk; ++j) {
        double d = 0;
        for (int e = 0; e < hd; ++e) d += double(qv[e]) * k[size_t(j * ldkv + e)];
        s[size_t(j)] = d * scale;
        m = std::max(m, s[size_t(j)]);
      }
      for (double& x : s) z += (x = std::exp(x - m));
      for (int32_t j = 0; j < nk; ++j)
        for (int e = 0; e < hd; ++e) want[size_t(e)] += s[size_t(j)] / z * v[size_t(j * ldkv + e)];
      for (int e = 0; e < hd; ++e)
        worst = std::max(worst, double(std::fabs(out[size_t(r * ldo + g * hd + e)] - want[size_t(e)])));
    }
    for (int64_t e = int64_t(n_q) * hd; e < ldo; ++e)
      if (out[size_t(r * ldo + e)] != sentinel) worst = 1e30;  // wrote outside the outputs
  }
  if (got) *got = out;
  return worst;
}
}  // namespace

LN_TEST(ops_attend_causal_matches_double) {
  std::vector<CausalCase> cases = {
      {64, 1, 1, 0, 1.f},     // one key
      {64, 4, 1, 0, 1.f},     // one key, a GQA group
      {7, 1, 1, 0, 1.f},      // one key, odd head_dim
      {64, 4, 16, 0, 1.f},    // Llama-3.2-1B: 4 heads per KV head, a full block of rows
      {64, 7, 16, 0, 1.f},    // Qwen2.5-0.5B: 7 heads per KV head
      {64, 7, 16, 48, 30.f},  // ... a later block of the same prompt, large scores
      {128, 1, 16, 100, 1.f}, // MHA, head_dim 128
      {64, 4, 1, 200, 1.f},   // decode: one row against a 201-key cache
      {64, 7, 1, 63, 30.f},   // decode, 64 keys (exactly one key block)
      {64, 2, 3, 62, 1.f},    // rows straddling the first key-block boundary
      {72, 3, 5, 123, 1.f},   // ... the second one; head_dim not a multiple of 16
      {12, 5, 17, 0, 30.f},   // 85 query vectors: 5 full tiles and a partial one
      {100, 4, 3, 9, 1.f},    // head_dim 100
      {1, 4, 6, 70, 1.f},     // head_dim 1
      {3, 8, 2, 130, 30.f},   // 16 lanes exactly, 3-dim heads, three key blocks
      {65, 1, 9, 0, 1.f},     // 9 vectors: a 16-lane tile with 7 unused lanes
      {64, 32, 1, 20, 1.f},   // 32 heads of one KV head (MQA-like): two full tiles for one row
  };
  // A small product over the rest: group sizes, row counts, offsets and head sizes (odd ones included).
  for (int hd : {5, 16, 40})
    for (int n_q : {1, 3, 4})
      for (int n_rows : {1, 4, 11})
        for (int32_t key0 : {0, 61, 66}) cases.push_back({hd, n_q, n_rows, key0, key0 == 61 ? 30.f : 1.f});
  uint32_t seed = 100;
  for (const CausalCase& c : cases) {
    seed += 3;
    const double wp = check_attend_causal(c, seed, CpuKernel::Plain);
    LN_CHECK_MSG(wp < 1e-5, "plain hd=%d n_q=%d rows=%d key0=%d mag=%g: %g", c.hd, c.n_q, c.n_rows, c.key0,
                 double(c.magnitude), wp);
    std::vector<float> by_avx2, by_avx512;
    if (cpu_supports(CpuKernel::Avx2)) {
      const double wa = check_attend_causal(c, seed, CpuKernel::Avx2, &by_avx2);
      LN_CHECK_MSG(wa < 1e-5, "avx2 hd=%d n_q=%d rows=%d key0=%d mag=%g: %g", c.hd, c.n_q, c.n_rows, c.key0,
                   double(c.magnitude), wa);
    }
    if (cpu_supports(CpuKernel::Avx512)) {  // the 16-lane tile: the same bound, and the avx2 tile's bits
      const double wz = check_attend_causal(c, seed, CpuKernel::Avx512, &by_avx512);
      LN_CHECK_MSG(wz < 1e-5, "avx512 hd=%d n_q=%d rows=%d key0=%d mag=%g: %g", c.hd, c.n_q, c.n_rows, c.key0,
                   double(c.magnitude), wz);
      LN_CHECK_MSG(by_avx512 == by_avx2, "avx512 != avx2 bits: hd=%d n_q=%d rows=%d key0=%d", c.hd, c.n_q, c.n_rows,
                   c.key0);
    }
  }
}

// The dispatcher runs the active family: same bits as calling that family directly, also when the head size changes
// between calls.
LN_TEST(ops_attend_causal_dispatch) {
  KernelFamilyRestore restore;
  for (int hd : {64, 8, 136}) {
    const int n_q = 4, n_rows = 5;
    const int32_t key0 = 70;
    const int64_t ld = int64_t(n_q) * hd, ldkv = hd;
    const auto q = rand_vec(size_t(n_rows * ld), -1.f, 1.f, 40);
    const auto kv = rand_vec(size_t(2 * (key0 + n_rows) * ldkv), -1.f, 1.f, 41);
    const float* k = kv.data();
    const float* v = kv.data() + (key0 + n_rows) * ldkv;
    std::vector<float> a(size_t(n_rows * ld)), b(size_t(n_rows * ld));
    std::vector<float> scratch(size_t(attend_causal_scratch_floats(hd)) + 16);
    float* sp = scratch.data();
    while (reinterpret_cast<uintptr_t>(sp) % 64) ++sp;
    // The x86 families' tables run the avx2 tile (avx2) or the 16-lane tile (avx512, avx512bf16), which gives the
    // same bits (ops_attend_causal_matches_double).
    for (CpuKernel fam : kernel_families_to_test()) {
      set_kernel(fam);
      attend_causal(q.data(), ld, n_rows, n_q, k, v, ldkv, key0, hd, 0.1f, a.data(), ld, sp);
      if (fam == CpuKernel::Plain)
        attend_causal_plain(q.data(), ld, n_rows, n_q, k, v, ldkv, key0, hd, 0.1f, b.data(), ld, sp);
      else
        kernel_table(CpuKernel::Avx2).attend_causal(q.data(), ld, n_rows, n_q, k, v, ldkv, key0, hd, 0.1f, b.data(), ld, sp);
      LN_CHECK_MSG(a == b, "%s hd=%d", kernel_name(fam), hd);
    }
  }
}
