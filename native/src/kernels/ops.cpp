#include "kernels/ops.h"

#include "kernels/kernel_table.h"
#include "kernels/math.h"

#include <cmath>

namespace ln {

// The per-element math lives in kernels/math.h, shared with the CUDA kernels (one definition, tested once).
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float r = math::rmsnorm_inv_rms(ss, n, eps);
  for (int64_t i = 0; i < n; ++i) y[i] = math::rmsnorm_apply(x[i], r, w[i]);
}

void rmsnorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                  float eps) {
  for (int64_t r = 0; r < M; ++r) rmsnorm(x + r * ldx, w, y + r * ldy, n, eps);
}

void layernorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i]);
  const float mean = float(sum / double(n));
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(x[i] - mean);
    ss += d * d;
  }
  const float r = math::layernorm_inv_std(ss, n, eps);
  for (int64_t i = 0; i < n; ++i) y[i] = math::layernorm_apply(x[i], mean, r, w[i]);
}

void layernorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                    float eps) {
  for (int64_t r = 0; r < M; ++r) layernorm(x + r * ldx, w, y + r * ldy, n, eps);
}

void rope_inv_freq(int head_dim, double theta, const RopeScaling& sc, double* inv_freq) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    inv_freq[i] = math::rope_base_inv_freq(i, head_dim, theta);
    if (sc.llama3)
      inv_freq[i] = math::llama3_scale_inv_freq(inv_freq[i], sc.factor, sc.low_freq_factor, sc.high_freq_factor,
                                                sc.original_max_positions);
    else if (sc.yarn)
      inv_freq[i] = math::yarn_scale_inv_freq(inv_freq[i], i, head_dim, theta, sc.factor, sc.beta_fast, sc.beta_slow,
                                              sc.original_max_positions);
    else if (sc.linear)
      inv_freq[i] /= sc.factor;
  }
}

void rope_tables(const float* inv_freq, int half, int64_t p0, int64_t p1, float* cos_out, float* sin_out) {
  for (int64_t p = p0; p < p1; ++p)
    for (int i = 0; i < half; ++i) math::rope_cos_sin(p, inv_freq[i], cos_out + (p - p0) * half + i, sin_out + (p - p0) * half + i);
}

void rope_apply(float* x, int n_heads, int head_dim, const float* cos_row, const float* sin_row) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* a = x + int64_t(h) * head_dim;
    float* b = a + half;
    for (int i = 0; i < half; ++i) math::rope_rotate(a[i], b[i], cos_row[i], sin_row[i], a + i, b + i);
  }
}

void rope_apply_interleaved(float* x, int n_heads, int head_dim, const float* cos_row, const float* sin_row) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* a = x + int64_t(h) * head_dim;
    for (int i = 0; i < half; ++i) math::rope_rotate(a[2 * i], a[2 * i + 1], cos_row[i], sin_row[i], a + 2 * i, a + 2 * i + 1);
  }
}

void gelu_tanh_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = math::gelu_tanh(x[i]);
}

void silu_inplace_plain(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = silu(x[i]);
}
void silu_inplace(float* x, int64_t n) { cpu_kernels().silu_inplace(x, n); }
void mul_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= y[i];
}
void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}
void round_bf16_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
}

// One query row against n_keys keys: scores through `score` (the scaled dot product, optionally soft-capped), a
// softmax, the weighted sum of the values. The plain and the soft-capped kernels share it, same operations in the
// same order.
template <class Score>
static void attend_row_with(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                            Score score, float* p, float* out) {
  float m = -INFINITY;
  for (int32_t j = 0; j < n_keys; ++j) {
    const float* kj = k + j * ld;
    float s = 0.f;
    for (int d = 0; d < hd; ++d) s += q[d] * kj[d];
    s = score(s);
    p[j] = s;
    m = s > m ? s : m;
  }
  float sum = 0.f;
  for (int32_t j = 0; j < n_keys; ++j) {
    p[j] = std::exp(p[j] - m);
    sum += p[j];
  }
  for (int d = 0; d < hd; ++d) out[d] = 0.f;
  for (int32_t j = 0; j < n_keys; ++j) {
    const float* vj = v + j * ld;
    const float pj = p[j];
    for (int d = 0; d < hd; ++d) out[d] += pj * vj[d];
  }
  const float inv = 1.f / sum;
  for (int d = 0; d < hd; ++d) out[d] *= inv;
}

void attend_row_plain(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                      float scale, float* p, float* out) {
  attend_row_with(q, k, v, ld, n_keys, hd, [scale](float s) { return s * scale; }, p, out);
}

void attend_row_capped(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                       float scale, float cap, float* p, float* out) {
  attend_row_with(q, k, v, ld, n_keys, hd, [scale, cap](float s) { return math::softcap(s * scale, cap); }, p, out);
}

void attend_row(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd, float scale,
                float* p, float* out) {
  cpu_kernels().attend_row(q, k, v, ld, n_keys, hd, scale, p, out);
}

double logsumexp(const float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  if (!std::isfinite(m)) return double(m);  // all -inf (or a +inf/NaN logit): nothing sensible to shift by
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(std::exp(x[i] - m));
  return double(m) + std::log(s);
}

float target_logprob(const float* x, int64_t n, int32_t target) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  double s = 0;
  if (std::isfinite(m))
    for (int64_t i = 0; i < n; ++i) s += math::logsumexp_term(x[i], m);
  return math::target_log_softmax(x[target], m, s, n);
}

void embed_rows(const WeightRef& embed, const int32_t* tokens, int64_t n, float* out, int64_t ldo) {
  const int64_t hidden = embed.cols;
  for (int64_t i = 0; i < n; ++i) convert_to_f32(embed.data, embed.dtype, int64_t(tokens[i]) * hidden, hidden,
                                                  out + i * ldo);
}

}  // namespace ln
