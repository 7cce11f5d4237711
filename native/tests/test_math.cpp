// Tests of kernels/math.h, the scalar math shared by the CPU backend and the CUDA kernels: every function against a
// double-precision computation and against values worked out by hand, plus agreement (bit-for-bit where no sum is
// involved) with the current CPU ops (kernels/ops.cpp) where they compute the same thing, so ops.cpp can switch to
// math.h without changing its results.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/math.h"
#include "kernels/ops.h"
#include "test_util.h"

namespace {

namespace m = ln::math;
constexpr double kPi = 3.14159265358979323846;

bool close_rel(double got, double want, double rel, double abs_tol = 0) {
  return std::fabs(got - want) <= rel * std::fabs(want) + abs_tol;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

LN_TEST(math_silu_and_swiglu) {
  LN_CHECK(m::silu(0.f) == 0.f);
  LN_CHECK_MSG(std::fabs(m::silu(1.f) - 0.7310586f) <= 1e-7f, "silu(1) = %.9g", double(m::silu(1.f)));
  // silu(-1) = -1 / (1 + e) = -0.26894142
  LN_CHECK_MSG(std::fabs(m::silu(-1.f) + 0.26894142f) <= 1e-7f, "silu(-1) = %.9g", double(m::silu(-1.f)));
  // Saturation: silu(x) -> x for large x, -> 0 (from below) for very negative x; no NaN at the extremes.
  LN_CHECK(m::silu(40.f) == 40.f);
  LN_CHECK(m::silu(-200.f) == 0.f);
  LN_CHECK(m::silu(INFINITY) == INFINITY);
  LN_CHECK(std::isnan(m::silu(-INFINITY)));  // -inf / inf, as torch's -inf * sigmoid(-inf) = -inf * 0
  LN_CHECK(std::isnan(m::silu(NAN)));

  double worst = 0;
  for (int i = -4000; i <= 4000; ++i) {
    const float x = float(i) * 0.005f;  // [-20, 20]
    const double want = double(x) / (1.0 + std::exp(-double(x)));
    const double err = std::fabs(double(m::silu(x)) - want) / (std::fabs(want) + 1e-30);
    if (want != 0 && err > worst) worst = err;
    // Same formula as the CPU backend's ln::silu, bit for bit.
    LN_CHECK(bits(m::silu(x)) == bits(ln::silu(x)));
  }
  LN_CHECK_MSG(worst < 1e-6, "silu worst rel err %.3g", worst);

  // swiglu(g, u) = silu(g) * u
  LN_CHECK(m::swiglu(0.f, 5.f) == 0.f);
  LN_CHECK_MSG(std::fabs(m::swiglu(1.f, 2.f) - 1.4621172f) <= 2e-7f, "swiglu(1,2) = %.9g", double(m::swiglu(1.f, 2.f)));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int i = 0; i < 1000; ++i) {
    const float g = nd(rng), u = nd(rng);
    const double want = double(g) / (1.0 + std::exp(-double(g))) * double(u);
    LN_CHECK(close_rel(m::swiglu(g, u), want, 2e-6, 1e-30));
    LN_CHECK(bits(m::swiglu(g, u)) == bits(ln::silu(g) * u));
  }
}

LN_TEST(math_rmsnorm) {
  // Hand-worked: row (3, 4), eps 0: mean of squares 12.5, inv_rms = 1/sqrt(12.5) = 0.28284271...
  {
    const float r = m::rmsnorm_inv_rms(9.0 + 16.0, 2, 0.f);
    LN_CHECK_MSG(std::fabs(r - 0.28284271f) <= 1e-7f, "inv_rms = %.9g", double(r));
    LN_CHECK(std::fabs(m::rmsnorm_apply(3.f, r, 1.f) - 0.84852814f) <= 1e-7f);
    LN_CHECK(std::fabs(m::rmsnorm_apply(4.f, r, 0.5f) - 0.56568542f) <= 1e-7f);
  }
  // eps matters for a zero row: 1/sqrt(eps).
  LN_CHECK(std::fabs(m::rmsnorm_inv_rms(0.0, 16, 1e-6f) - 1000.f) <= 1e-3f);

  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (int n : {1, 7, 64, 1000}) {
    std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n)), y_ops(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = 1.f + 0.1f * nd(rng);
    const float eps = 1e-5f;
    double ss = 0, ss_exact = 0;
    for (float v : x) {
      ss += double(v) * double(v);
      ss_exact += double(v) * double(v);
    }
    const float r = m::rmsnorm_inv_rms(ss, n, eps);
    const double r_exact = 1.0 / std::sqrt(ss_exact / n + double(eps));
    LN_CHECK_MSG(close_rel(r, r_exact, 1e-6), "n=%d inv_rms %.9g vs %.9g", n, double(r), r_exact);
    ln::rmsnorm(x.data(), w.data(), y_ops.data(), n, eps);
    for (int i = 0; i < n; ++i) {
      const float y = m::rmsnorm_apply(x[size_t(i)], r, w[size_t(i)]);
      LN_CHECK(close_rel(y, double(x[size_t(i)]) * r_exact * double(w[size_t(i)]), 2e-6, 1e-30));
      // Same formula as ops.cpp's rmsnorm (bit-identical while it sums in the same order; the tolerance lets a
      // reordered or vectorized sum of squares there keep this test green).
      LN_CHECK(close_rel(y, y_ops[size_t(i)], 3e-7, 1e-30));
    }
  }
}

LN_TEST(math_rope_rotation) {
  float a, b;
  // (1, 0) rotated by 90 degrees (cos 0, sin 1) is (0, 1); (0, 1) goes to (-1, 0).
  m::rope_rotate(1.f, 0.f, 0.f, 1.f, &a, &b);
  LN_CHECK(a == 0.f && b == 1.f);
  m::rope_rotate(0.f, 1.f, 0.f, 1.f, &a, &b);
  LN_CHECK(a == -1.f && b == 0.f);
  // By 180 degrees: negation. By 0: identity.
  m::rope_rotate(0.25f, -2.f, -1.f, 0.f, &a, &b);
  LN_CHECK(a == -0.25f && b == 2.f);
  m::rope_rotate(0.25f, -2.f, 1.f, 0.f, &a, &b);
  LN_CHECK(a == 0.25f && b == -2.f);

  // General angles against a double rotation; the norm is preserved.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ud(-3.f, 3.f);
  for (int i = 0; i < 1000; ++i) {
    const float x0 = ud(rng), x1 = ud(rng), th = ud(rng);
    const float c = float(std::cos(double(th))), s = float(std::sin(double(th)));
    m::rope_rotate(x0, x1, c, s, &a, &b);
    const double wa = double(x0) * c - double(x1) * s, wb = double(x1) * c + double(x0) * s;
    LN_CHECK(std::fabs(a - wa) <= 1e-6 && std::fabs(b - wb) <= 1e-6);
    const double n0 = std::hypot(double(x0), double(x1)), n1 = std::hypot(double(a), double(b));
    LN_CHECK(std::fabs(n0 - n1) <= 1e-5 * (1 + n0));
  }

  // cos/sin of position p: p = 0 is the identity; otherwise the float32 angle p * inv_freq.
  float c, s;
  m::rope_cos_sin(0, 0.5f, &c, &s);
  LN_CHECK(c == 1.f && s == 0.f);
  m::rope_cos_sin(3, 0.5f, &c, &s);
  LN_CHECK(c == float(std::cos(1.5)) && s == float(std::sin(1.5)));

  // Whole heads, against ops.cpp's rope_tables + rope_apply (same rotate_half layout), bit for bit.
  const int hd = 16, half = hd / 2, n_heads = 3;
  std::vector<double> invd(static_cast<size_t>(half));
  ln::rope_inv_freq(hd, 10000.0, ln::RopeScaling{}, invd.data());
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) inv[size_t(i)] = float(invd[size_t(i)]);
  const int64_t pos = 1234;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  ln::rope_tables(inv.data(), half, pos, pos + 1, cs.data(), sn.data());
  std::vector<float> x(static_cast<size_t>(n_heads * hd)), y(x.size());
  for (auto& v : x) v = ud(rng);
  y = x;
  ln::rope_apply(y.data(), n_heads, hd, cs.data(), sn.data());
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < half; ++i) {
      float ci, si;
      m::rope_cos_sin(pos, inv[size_t(i)], &ci, &si);
      LN_CHECK(bits(ci) == bits(cs[size_t(i)]) && bits(si) == bits(sn[size_t(i)]));
      const size_t i0 = size_t(h * hd + i), i1 = i0 + size_t(half);
      m::rope_rotate(x[i0], x[i1], ci, si, &a, &b);
      LN_CHECK(bits(a) == bits(y[i0]) && bits(b) == bits(y[i1]));
    }
  }
}

LN_TEST(math_rope_inv_freq_and_llama3_scaling) {
  // Base frequencies: theta^(-2i/d).
  LN_CHECK(m::rope_base_inv_freq(0, 128, 10000.0) == 1.0);
  LN_CHECK(close_rel(m::rope_base_inv_freq(32, 128, 10000.0), 0.01, 1e-14));   // 10000^-0.5
  LN_CHECK(close_rel(m::rope_base_inv_freq(48, 128, 10000.0), 0.001, 1e-14));  // 10000^-0.75

  // Llama 3.1 parameters: factor 8, low 1, high 4, original context 8192
  //   -> wavelengths below 8192/4 = 2048 kept, above 8192/1 = 8192 divided by 8, interpolated between.
  const double F = 8, lo = 1, hi = 4, orig = 8192;
  auto scaled = [&](double wavelen) { return m::llama3_scale_inv_freq(2 * kPi / wavelen, F, lo, hi, orig); };
  // wavelen 1000 < 2048: unchanged.
  LN_CHECK(scaled(1000) == 2 * kPi / 1000);
  // wavelen 10000 > 8192: f / 8.
  LN_CHECK(close_rel(scaled(10000), 2 * kPi / 10000 / 8, 1e-15));
  // wavelen 4096: smooth = (8192/4096 - 1) / (4 - 1) = 1/3; f' = (2/3) f/8 + (1/3) f = (5/12) f.
  LN_CHECK_MSG(close_rel(scaled(4096), 2 * kPi / 4096 * 5.0 / 12.0, 1e-14), "got %.17g", scaled(4096));
  // wavelen 3000: smooth = (8192/3000 - 1) / 3 = 0.57688...; by hand: f * ((1 - smooth)/8 + smooth).
  {
    const double smooth = (8192.0 / 3000.0 - 1.0) / 3.0;
    LN_CHECK(close_rel(scaled(3000), 2 * kPi / 3000 * ((1 - smooth) / 8 + smooth), 1e-14));
  }
  // The interpolation is continuous at both ends of the band.
  LN_CHECK(close_rel(scaled(2048.0001), 2 * kPi / 2048.0001, 1e-6));
  LN_CHECK(close_rel(scaled(8191.999), 2 * kPi / 8191.999 / 8, 1e-6));
  // factor 1 changes nothing anywhere.
  for (double wl : {10.0, 2048.0, 3000.0, 8192.0, 1e6})
    LN_CHECK(close_rel(m::llama3_scale_inv_freq(2 * kPi / wl, 1, lo, hi, orig), 2 * kPi / wl, 1e-14));

  // Same numbers as ops.cpp's rope_inv_freq (Llama-3.1-8B: head_dim 128, theta 500000), bit for bit.
  const int hd = 128;
  ln::RopeScaling rs;
  rs.llama3 = true;
  rs.factor = F;
  rs.low_freq_factor = lo;
  rs.high_freq_factor = hi;
  rs.original_max_positions = orig;
  std::vector<double> ops(hd / 2);
  ln::rope_inv_freq(hd, 500000.0, rs, ops.data());
  int n_kept = 0, n_div = 0, n_mid = 0;
  for (int i = 0; i < hd / 2; ++i) {
    const double f = m::rope_base_inv_freq(i, hd, 500000.0);
    const double g = m::llama3_scale_inv_freq(f, F, lo, hi, orig);
    LN_CHECK_MSG(g == ops[size_t(i)], "i=%d %.17g vs %.17g", i, g, ops[size_t(i)]);
    (g == f ? n_kept : close_rel(g, f / F, 1e-15) ? n_div : n_mid)++;
  }
  LN_CHECK(n_kept > 0 && n_div > 0 && n_mid > 0);  // all three regimes exercised
}

LN_TEST(math_online_softmax_equals_two_pass) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + int(rng() % 300);
    const float spread = trial % 3 == 0 ? 30.f : trial % 3 == 1 ? 3.f : 0.1f;
    std::vector<float> x(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (auto& e : x) e = spread * nd(rng);
    for (auto& e : v) e = nd(rng);
    if (trial % 5 == 0) std::sort(x.begin(), x.end());  // ascending: the max moves at every step
    if (trial % 7 == 0 && n > 2) x[size_t(n / 2)] = -INFINITY;  // a masked position

    // Two-pass reference in double.
    double mx = -INFINITY;
    for (float e : x) mx = std::max(mx, double(e));
    double sum = 0, wsum = 0;
    for (int j = 0; j < n; ++j) {
      const double p = std::exp(double(x[size_t(j)]) - mx);
      sum += p;
      wsum += p * v[size_t(j)];
    }
    const double lse = mx + std::log(sum), attn = wsum / sum;

    // Online, attention-style accumulator.
    m::SoftmaxState st = m::softmax_init();
    float acc = 0.f;
    for (int j = 0; j < n; ++j) {
      float r, p;
      m::softmax_push(&st, x[size_t(j)], &r, &p);
      acc = acc * r + p * v[size_t(j)];
    }
    LN_CHECK_MSG(std::fabs(m::softmax_logsumexp(st) - lse) <= 1e-5 * (1 + std::fabs(lse)), "n=%d lse %.9g vs %.9g",
                 n, double(m::softmax_logsumexp(st)), lse);
    LN_CHECK_MSG(std::fabs(acc / st.s - attn) <= 1e-5, "n=%d attn %.9g vs %.9g", n, double(acc / st.s), attn);
    // Probabilities from the final state equal the two-pass softmax.
    for (int j = 0; j < n; j += 17) {
      const double want = std::exp(double(x[size_t(j)]) - mx) / sum;
      const double got = double(m::softmax_weight(x[size_t(j)], st.m)) / st.s;
      LN_CHECK(std::fabs(got - want) <= 1e-6);
    }

    // Split into two halves, each streamed separately, then merged: same result.
    const int cut = n / 2;
    m::SoftmaxState a = m::softmax_init(), b = m::softmax_init();
    float acc_a = 0, acc_b = 0, r, p;
    for (int j = 0; j < cut; ++j) {
      m::softmax_push(&a, x[size_t(j)], &r, &p);
      acc_a = acc_a * r + p * v[size_t(j)];
    }
    for (int j = cut; j < n; ++j) {
      m::softmax_push(&b, x[size_t(j)], &r, &p);
      acc_b = acc_b * r + p * v[size_t(j)];
    }
    float ra, rb;
    const m::SoftmaxState ab = m::softmax_merge(a, b, &ra, &rb);
    LN_CHECK(std::fabs(m::softmax_logsumexp(ab) - lse) <= 1e-5 * (1 + std::fabs(lse)));
    LN_CHECK(std::fabs((acc_a * ra + acc_b * rb) / ab.s - attn) <= 1e-5);
  }

  // Hand-worked: logits (0, 0) -> lse = log 2, each p = 1/2; (0, log 3) -> lse = log 4.
  m::SoftmaxState st = m::softmax_init();
  m::softmax_update(&st, 0.f);
  m::softmax_update(&st, 0.f);
  LN_CHECK(st.m == 0.f && st.s == 2.f);
  LN_CHECK(std::fabs(m::softmax_logsumexp(st) - float(std::log(2.0))) <= 1e-7f);
  st = m::softmax_init();
  m::softmax_update(&st, 0.f);
  m::softmax_update(&st, float(std::log(3.0)));
  LN_CHECK(std::fabs(m::softmax_logsumexp(st) - float(std::log(4.0))) <= 2e-7f);
  // Empty / all-masked rows: lse -inf, and merging two empty states stays empty (no NaN).
  st = m::softmax_init();
  LN_CHECK(m::softmax_logsumexp(st) == -INFINITY);
  m::softmax_update(&st, -INFINITY);
  LN_CHECK(m::softmax_logsumexp(st) == -INFINITY && st.s == 0.f);
  float ra, rb;
  const m::SoftmaxState e = m::softmax_merge(m::softmax_init(), m::softmax_init(), &ra, &rb);
  LN_CHECK(e.m == -INFINITY && e.s == 0.f && !std::isnan(ra) && !std::isnan(rb));
  // softmax_weight: exp(x - m); a masked -inf weighs 0 even against an empty state's -inf max.
  LN_CHECK(m::softmax_weight(2.f, 2.f) == 1.f);
  LN_CHECK(std::fabs(m::softmax_weight(0.f, 1.f) - float(std::exp(-1.0))) <= 1e-7f);
  LN_CHECK(m::softmax_weight(-INFINITY, -INFINITY) == 0.f);
  LN_CHECK(m::softmax_weight(-INFINITY, 3.f) == 0.f);
  // Merging with an empty state is the identity.
  st = m::softmax_init();
  m::softmax_update(&st, 1.5f);
  const m::SoftmaxState f = m::softmax_merge(st, m::softmax_init(), &ra, &rb);
  LN_CHECK(f.m == 1.5f && f.s == 1.f && ra == 1.f && rb == 0.f);
  // NaN propagates.
  st = m::softmax_init();
  m::softmax_update(&st, 1.f);
  m::softmax_update(&st, NAN);
  LN_CHECK(std::isnan(m::softmax_logsumexp(st)));
}

LN_TEST(math_logsumexp_and_log_softmax) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 5.f);
  for (int n : {1, 2, 10, 1000, 32000}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& e : x) e = nd(rng);
    float mx = -INFINITY;
    for (float e : x) mx = e > mx ? e : mx;
    double s = 0, s_exact = 0;
    for (float e : x) {
      s += m::logsumexp_term(e, mx);
      s_exact += std::exp(double(e) - double(mx));
    }
    const double lse = m::logsumexp_finish(mx, s), lse_exact = double(mx) + std::log(s_exact);
    LN_CHECK_MSG(std::fabs(lse - lse_exact) <= 1e-6 * (1 + std::fabs(lse_exact)), "n=%d", n);
    // ops.cpp's logsumexp (bit-identical while it sums in the same order).
    LN_CHECK(std::fabs(lse - ln::logsumexp(x.data(), n)) <= 1e-12 * (1 + std::fabs(lse)));
    const int t = n / 3;
    LN_CHECK(std::fabs(m::log_softmax_of(x[size_t(t)], lse) - (double(x[size_t(t)]) - lse_exact)) <= 1e-5);
    LN_CHECK(m::log_softmax_of(x[size_t(t)], lse) <= 0.f);
  }
  // Hand-worked: (1, 1, 1, 1) -> lse = 1 + log 4, log p = -log 4.
  const float four[4] = {1, 1, 1, 1};
  double s = 0;
  for (float e : four) s += m::logsumexp_term(e, 1.f);
  LN_CHECK(std::fabs(m::logsumexp_finish(1.f, s) - (1 + std::log(4.0))) <= 1e-12);
  LN_CHECK(std::fabs(m::log_softmax_of(1.f, m::logsumexp_finish(1.f, s)) + float(std::log(4.0))) <= 1e-7f);
  // Degenerate rows: all -inf gives -inf; a +inf logit gives +inf (no NaN from inf - inf).
  LN_CHECK(m::logsumexp_finish(-INFINITY, 0.0) == -INFINITY);
  LN_CHECK(m::logsumexp_finish(INFINITY, 0.0) == INFINITY);
}

LN_TEST(math_storage_conversions) {
  // bf16: exact values, round-to-nearest-even at ties, NaN stays NaN.
  LN_CHECK(ln::f32_to_bf16(1.f) == 0x3f80 && ln::bf16_to_f32(0x3f80) == 1.f);
  LN_CHECK(ln::f32_to_bf16(-2.f) == 0xc000);
  LN_CHECK(ln::round_bf16(1.f + 0x1p-8f) == 1.f);               // tie -> even (down)
  LN_CHECK(ln::round_bf16(1.f + 3 * 0x1p-8f) == 1.f + 0x1p-6f);  // tie -> even (up)
  LN_CHECK(ln::round_bf16(1.f + 0x1p-8f + 0x1p-20f) == 1.f + 0x1p-7f);  // above the tie -> up
  LN_CHECK(std::isnan(ln::bf16_to_f32(ln::f32_to_bf16(NAN))));
  LN_CHECK(ln::bf16_to_f32(ln::f32_to_bf16(INFINITY)) == INFINITY);
  // f16: 1, the largest finite, the smallest subnormal, -inf, NaN, -0.
  LN_CHECK(ln::f16_to_f32(0x3c00) == 1.f);
  LN_CHECK(ln::f16_to_f32(0x7bff) == 65504.f);
  LN_CHECK(ln::f16_to_f32(0x0001) == 0x1p-24f);
  LN_CHECK(ln::f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
  LN_CHECK(ln::f16_to_f32(0xfc00) == -INFINITY);
  LN_CHECK(std::isnan(ln::f16_to_f32(0x7e00)));
  LN_CHECK(ln::f16_to_f32(0x8000) == 0.f && std::signbit(ln::f16_to_f32(0x8000)));
  // Every bf16 bit pattern round-trips through float32.
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = ln::bf16_to_f32(uint16_t(h));
    if (!std::isnan(f) && ln::f32_to_bf16(f) != h) ++bad;
  }
  LN_CHECK(bad == 0);

  // load_f32 reads all three dtypes like load_as_f32, also from misaligned addresses.
  alignas(8) unsigned char buf[64 + 1];
  for (int i = 0; i < 65; ++i) buf[i] = (unsigned char)(i * 37 + 11);
  for (ln::DType t : {ln::DType::F32, ln::DType::F16, ln::DType::BF16}) {
    for (int off : {0, 1}) {
      for (int64_t i = 0; i < 8; ++i) {
        const float a = m::load_f32(buf + off, t, i), b = ln::load_as_f32(buf + off, t, i);
        LN_CHECK((std::isnan(a) && std::isnan(b)) || bits(a) == bits(b));
      }
    }
  }
}

LN_TEST(math_gelu_tanh_and_softcap) {
  // gelu_tanh(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.84119199; gelu_tanh(-1) = 1 - 0.84119199 - 1 = -0.15880801
  LN_CHECK_MSG(std::fabs(m::gelu_tanh(1.f) - 0.84119199f) <= 1e-6f, "gelu_tanh(1) = %.9g", double(m::gelu_tanh(1.f)));
  LN_CHECK_MSG(std::fabs(m::gelu_tanh(-1.f) + 0.15880801f) <= 1e-6f, "gelu_tanh(-1) = %.9g", double(m::gelu_tanh(-1.f)));
  LN_CHECK(m::gelu_tanh(0.f) == 0.f);
  double worst = 0, worst_grad = 0, erf_gap = 0;
  for (int i = -2000; i <= 2000; ++i) {
    const float x = float(i) * 0.005f;  // [-10, 10]
    const double xd = x;
    const double want = 0.5 * xd * (1 + std::tanh(std::sqrt(2 / kPi) * (xd + 0.044715 * xd * xd * xd)));
    // Relative error where the value is not tiny; for x < -3 the float32 1 + tanh(.) cancels (as torch's float32
    // formula does), so there only the absolute error (< 1e-7, far below anything a logit sees) is checked.
    if (x > -3 && std::fabs(want) > 1e-6) worst = std::max(worst, std::fabs(m::gelu_tanh(x) - want) / std::fabs(want));
    LN_CHECK_MSG(std::fabs(m::gelu_tanh(x) - want) < 1e-6 * std::max(1.0, std::fabs(want)), "gelu_tanh(%g) abs err", double(x));
    // "active" keeps its meaning: positive exactly where the gate is positive.
    LN_CHECK_MSG((m::gelu_tanh(x) > 0) == (x > 0), "gelu_tanh sign at %g", double(x));
    // The tanh form is not the exact (erf) GELU: they differ by up to ~5e-4 (what the fixtures detect).
    erf_gap = std::max(erf_gap, std::fabs(want - 0.5 * xd * (1 + std::erf(xd / std::sqrt(2.0)))));
    const double h = 1e-3, fd = (0.5 * (xd + h) * (1 + std::tanh(std::sqrt(2 / kPi) * ((xd + h) + 0.044715 * std::pow(xd + h, 3)))) -
                                 0.5 * (xd - h) * (1 + std::tanh(std::sqrt(2 / kPi) * ((xd - h) + 0.044715 * std::pow(xd - h, 3))))) / (2 * h);
    worst_grad = std::max(worst_grad, std::fabs(m::gelu_tanh_grad(x) - fd));
  }
  LN_CHECK_MSG(worst < 2e-5, "gelu_tanh worst rel err %.3g", worst);  // 1e-5 near x = -3 (the cancellation)
  LN_CHECK_MSG(worst_grad < 1e-5, "gelu_tanh_grad worst abs err %.3g", worst_grad);
  LN_CHECK_MSG(erf_gap > 1e-4 && erf_gap < 1e-3, "tanh vs erf GELU gap %.3g", erf_gap);
  LN_CHECK_MSG(std::fabs(m::silu_grad(1.f) - 0.92767054f) < 1e-6f, "silu'(1) = %.9g", double(m::silu_grad(1.f)));

  // softcap(x, c) = c tanh(x / c): ~x for |x| << c, bounded by c; its derivative from the output.
  LN_CHECK(m::softcap(0.f, 4.f) == 0.f);
  LN_CHECK_MSG(std::fabs(m::softcap(4.f, 4.f) - 4.f * 0.76159416f) < 1e-6f, "softcap(4, 4) = %.9g", double(m::softcap(4.f, 4.f)));
  LN_CHECK(m::softcap(1000.f, 4.f) == 4.f);
  LN_CHECK(std::fabs(m::softcap(1e-3f, 50.f) - 1e-3f) < 1e-9f);
  for (float x : {-7.f, -1.f, 0.3f, 2.5f}) {
    const double fd = (4.0 * std::tanh((double(x) + 1e-4) / 4.0) - 4.0 * std::tanh((double(x) - 1e-4) / 4.0)) / 2e-4;
    LN_CHECK_MSG(std::fabs(m::softcap_grad_from_output(m::softcap(x, 4.f), 4.f) - fd) < 1e-5, "softcap' at %g", double(x));
  }
}

LN_TEST(math_layernorm_and_yarn) {
  // [1, 2, 3, 4]: mean 2.5, centred squares sum to 5, variance 1.25.
  const float r = m::layernorm_inv_std(5.0, 4, 1e-5f);
  LN_CHECK_MSG(std::fabs(r - float(1 / std::sqrt(1.25 + 1e-5))) < 1e-7f, "inv std %.9g", double(r));
  LN_CHECK(std::fabs(m::layernorm_apply(4.f, 2.5f, r, 2.f) - 2.f * 1.5f * r) < 1e-7f);
  float y[4];
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
  ln::layernorm(x, w, y, 4, 1e-5f);
  LN_CHECK(std::fabs(y[0] + y[3]) < 1e-7f && std::fabs(y[1] + y[2]) < 1e-7f && std::fabs(y[3] - 1.5f * r) < 1e-6f);

  // YaRN on the tiny-qwen2-yarn fixture's settings (head_dim 32, theta 1e4, original context 32, factor 4), worked
  // by hand: d(32 rotations) = 32 ln(32 / (64 pi)) / (2 ln 1e4) = -3.19 -> low 0; d(1) = 32 ln(32 / (2 pi)) /
  // (2 ln 1e4) = 2.83 -> high 3. Pair 0 keeps its frequency, pairs 1 and 2 blend 1/3 and 2/3 of f/4, pairs >= 3 are f/4.
  LN_CHECK(std::fabs(m::yarn_correction_dim(32, 32, 1e4, 32) + 3.1928) < 1e-3);
  LN_CHECK(std::fabs(m::yarn_correction_dim(1, 32, 1e4, 32) - 2.8278) < 1e-3);
  for (int i = 0; i < 16; ++i) {
    const double f = m::rope_base_inv_freq(i, 32, 1e4);
    const double ramp = std::min(1.0, i / 3.0);
    const double want = f / 4 * ramp + f * (1 - ramp);
    LN_CHECK_MSG(close_rel(m::yarn_scale_inv_freq(f, i, 32, 1e4, 4, 32, 1, 32), want, 1e-15), "yarn pair %d", i);
  }
  LN_CHECK(close_rel(m::yarn_mscale(4, 1), 0.1 * std::log(4.0) + 1, 1e-15));
  LN_CHECK(m::yarn_mscale(1, 1) == 1.0);
  // ops.cpp's rope_inv_freq with yarn and linear scaling are these formulas.
  std::vector<double> f(16), plain(16);
  ln::RopeScaling rs;
  ln::rope_inv_freq(32, 1e4, rs, plain.data());
  rs.yarn = true;
  rs.factor = 4;
  rs.original_max_positions = 32;
  ln::rope_inv_freq(32, 1e4, rs, f.data());
  LN_CHECK(f[0] == plain[0] && close_rel(f[15], plain[15] / 4, 1e-15) && f[1] < plain[1] && f[1] > plain[1] / 4);
  rs.yarn = false;
  rs.linear = true;
  ln::rope_inv_freq(32, 1e4, rs, f.data());
  for (int i = 0; i < 16; ++i) LN_CHECK(close_rel(f[size_t(i)], plain[size_t(i)] / 4, 1e-15));
}
