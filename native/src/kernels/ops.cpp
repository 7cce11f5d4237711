#include "kernels/ops.h"

#include <cmath>

namespace ln {

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  // transformers: variance (float32) + eps, rsqrt, then x * r, then weight * (that).
  const float var = float(ss / double(n));
  const float r = float(1.0 / std::sqrt(double(var + eps)));
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

void rmsnorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                  float eps) {
  for (int64_t r = 0; r < M; ++r) rmsnorm(x + r * ldx, w, y + r * ldy, n, eps);
}

void rope_inv_freq(int head_dim, double theta, const RopeScaling& s, double* inv_freq) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(theta, -2.0 * i / double(head_dim));
  if (!s.llama3) return;
  // Llama 3.1: long wavelengths (beyond the original context / low_freq_factor) are slowed down by `factor`,
  // short ones (below original context / high_freq_factor) are kept, and the band between is interpolated.
  const double pi = 3.14159265358979323846;
  const double low_wavelen = s.original_max_positions / s.low_freq_factor;
  const double high_wavelen = s.original_max_positions / s.high_freq_factor;
  for (int i = 0; i < half; ++i) {
    const double f = inv_freq[i], wavelen = 2 * pi / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      inv_freq[i] = f / s.factor;
    } else {
      const double smooth =
          (s.original_max_positions / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      inv_freq[i] = (1 - smooth) * f / s.factor + smooth * f;
    }
  }
}

void rope_tables(const float* inv_freq, int half, int64_t p0, int64_t p1, float* cos_out, float* sin_out) {
  for (int64_t p = p0; p < p1; ++p) {
    float* c = cos_out + (p - p0) * half;
    float* s = sin_out + (p - p0) * half;
    for (int i = 0; i < half; ++i) {
      // float(p) is exact for any realistic position (< 2^24); the product is rounded to float like torch's.
      const float angle = float(p) * inv_freq[i];
      c[i] = float(std::cos(double(angle)));
      s[i] = float(std::sin(double(angle)));
    }
  }
}

void rope_apply(float* x, int n_heads, int head_dim, const float* cos_row, const float* sin_row) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* a = x + int64_t(h) * head_dim;
    float* b = a + half;
    for (int i = 0; i < half; ++i) {
      const float x0 = a[i], x1 = b[i];
      a[i] = x0 * cos_row[i] - x1 * sin_row[i];
      b[i] = x1 * cos_row[i] + x0 * sin_row[i];
    }
  }
}

void silu_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = silu(x[i]);
}
void mul_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= y[i];
}
void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}
void round_bf16_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
}

void attend_row_plain(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                      float scale, float* p, float* out) {
  float m = -INFINITY;
  for (int32_t j = 0; j < n_keys; ++j) {
    const float* kj = k + j * ld;
    float s = 0.f;
    for (int d = 0; d < hd; ++d) s += q[d] * kj[d];
    s *= scale;
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

void attend_row(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd, float scale,
                float* p, float* out) {
  if (active_kernel() == CpuKernel::Avx2)
    attend_row_avx2(q, k, v, ld, n_keys, hd, scale, p, out);
  else
    attend_row_plain(q, k, v, ld, n_keys, hd, scale, p, out);
}

double logsumexp(const float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  if (!std::isfinite(m)) return double(m);  // all -inf (or a +inf/NaN logit): nothing sensible to shift by
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(std::exp(x[i] - m));
  return double(m) + std::log(s);
}

void embed_rows(const WeightRef& embed, const int32_t* tokens, int64_t n, float* out, int64_t ldo) {
  const int64_t hidden = embed.cols;
  for (int64_t i = 0; i < n; ++i) convert_to_f32(embed.data, embed.dtype, int64_t(tokens[i]) * hidden, hidden,
                                                  out + i * ldo);
}

}  // namespace ln
