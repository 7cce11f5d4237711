// Forward/backward pairs of the decoder's layer types: see layers.h. Readable scalar loops; the matrix products
// (the O(T d^2) part) are in gemm_backward.cpp and kernels/gemm.h.
#include "train/layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/math.h"
#include "kernels/ops.h"

namespace ln {
namespace train {

namespace {
constexpr int64_t kRows = 16;  // rows per task of row-parallel loops

template <class F>
void for_rows(ThreadPool& pool, int64_t T, F&& f) {
  pool.parallel_for((T + kRows - 1) / kRows, [&](int64_t b, int) {
    const int64_t r0 = b * kRows, r1 = std::min(T, r0 + kRows);
    for (int64_t t = r0; t < r1; ++t) f(t);
  });
}

inline float dot(const float* a, const float* b, int n) {
  float s = 0.f;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

// ---------------------------------------------------------------- RMSNorm

void rmsnorm_forward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, float eps, float* y,
                     float* rstd) {
  for_rows(pool, T, [&](int64_t t) {
    const float* xr = x + t * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    const float r = math::rmsnorm_inv_rms(ss, n, eps);
    rstd[t] = r;
    float* yr = y + t * n;
    for (int64_t i = 0; i < n; ++i) yr[i] = math::rmsnorm_apply(xr[i], r, w[i]);
  });
}

void rmsnorm_backward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, const float* rstd,
                      const float* dy, float* dx, bool accumulate, float* dw) {
  for_rows(pool, T, [&](int64_t t) {
    const float* xr = x + t * n;
    const float* g = dy + t * n;
    const float r = rstd[t];
    double c = 0;  // sum_k w_k dy_k x_k
    for (int64_t k = 0; k < n; ++k) c += double(w[k]) * g[k] * xr[k];
    const float coef = float(c * double(r) * r * r / double(n));
    float* d = dx + t * n;
    for (int64_t i = 0; i < n; ++i) {
      const float v = r * (w[i] * g[i]) - coef * xr[i];
      d[i] = accumulate ? d[i] + v : v;
    }
  });
  if (!dw) return;
  // dw by column blocks: each task sums its columns over all rows.
  const int64_t cb = 64;
  pool.parallel_for((n + cb - 1) / cb, [&](int64_t b, int) {
    const int64_t c0 = b * cb, c1 = std::min(n, c0 + cb);
    for (int64_t i = c0; i < c1; ++i) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += double(dy[t * n + i]) * x[t * n + i] * rstd[t];
      dw[i] += float(s);
    }
  });
}

// ---------------------------------------------------------------- LayerNorm

void layernorm_forward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, float eps, float* y,
                       float* mean, float* rstd) {
  for_rows(pool, T, [&](int64_t t) {
    const float* xr = x + t * n;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += double(xr[i]);
    const float mu = float(sum / double(n));
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i] - mu) * double(xr[i] - mu);
    const float r = math::layernorm_inv_std(ss, n, eps);
    mean[t] = mu;
    rstd[t] = r;
    float* yr = y + t * n;
    for (int64_t i = 0; i < n; ++i) yr[i] = math::layernorm_apply(xr[i], mu, r, w[i]);
  });
}

void layernorm_backward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, const float* mean,
                        const float* rstd, const float* dy, float* dx, bool accumulate, float* dw) {
  for_rows(pool, T, [&](int64_t t) {
    const float* xr = x + t * n;
    const float* g = dy + t * n;
    const float mu = mean[t], r = rstd[t];
    double sg = 0, sgx = 0;  // sum_k w_k dy_k, sum_k w_k dy_k xhat_k
    for (int64_t k = 0; k < n; ++k) {
      const double gk = double(w[k]) * g[k];
      sg += gk;
      sgx += gk * double((xr[k] - mu) * r);
    }
    const float mg = float(sg / double(n)), mgx = float(sgx / double(n));
    float* d = dx + t * n;
    for (int64_t i = 0; i < n; ++i) {
      const float xhat = (xr[i] - mu) * r;
      const float v = r * (w[i] * g[i] - mg - xhat * mgx);
      d[i] = accumulate ? d[i] + v : v;
    }
  });
  if (!dw) return;
  const int64_t cb = 64;
  pool.parallel_for((n + cb - 1) / cb, [&](int64_t b, int) {
    const int64_t c0 = b * cb, c1 = std::min(n, c0 + cb);
    for (int64_t i = c0; i < c1; ++i) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += double(dy[t * n + i]) * ((x[t * n + i] - mean[t]) * rstd[t]);
      dw[i] += float(s);
    }
  });
}

// ---------------------------------------------------------------- RoPE

void rope_forward(ThreadPool& pool, int64_t T, float* x, int n_heads, int head_dim, const int32_t* pos,
                  const float* cos_tab, const float* sin_tab, bool interleaved) {
  const int half = head_dim / 2;
  for_rows(pool, T, [&](int64_t t) {
    float* row = x + t * int64_t(n_heads) * head_dim;
    const float* c = cos_tab + int64_t(pos[t]) * half;
    const float* s = sin_tab + int64_t(pos[t]) * half;
    if (interleaved)
      rope_apply_interleaved(row, n_heads, head_dim, c, s);
    else
      rope_apply(row, n_heads, head_dim, c, s);
  });
}

void rope_backward(ThreadPool& pool, int64_t T, float* dx, int n_heads, int head_dim, const int32_t* pos,
                   const float* cos_tab, const float* sin_tab, bool interleaved) {
  const int half = head_dim / 2;
  // The pair of frequency i: (i, i + half), or (2i, 2i + 1) interleaved.
  const int stride = interleaved ? 2 : 1, offset = interleaved ? 1 : half;
  for_rows(pool, T, [&](int64_t t) {
    const float* c = cos_tab + int64_t(pos[t]) * half;
    const float* s = sin_tab + int64_t(pos[t]) * half;
    for (int h = 0; h < n_heads; ++h) {
      float* d = dx + (t * n_heads + h) * int64_t(head_dim);
      for (int i = 0; i < half; ++i) {
        // forward: o0 = x0 c - x1 s, o1 = x1 c + x0 s  =>  dx0 = d0 c + d1 s, dx1 = d1 c - d0 s
        float* p0 = d + i * stride;
        float* p1 = p0 + offset;
        const float d0 = *p0, d1 = *p1;
        *p0 = d0 * c[i] + d1 * s[i];
        *p1 = d1 * c[i] - d0 * s[i];
      }
    }
  });
}

// ---------------------------------------------------------------- attention

void attention_forward(ThreadPool& pool, const std::vector<SeqSpan>& seqs, const AttnShape& a, const float* q,
                       const float* k, const float* v, float* out, float* lse, float* scratch) {
  const int hd = a.head_dim, nh = a.n_heads, group = a.n_heads / a.n_kv_heads;
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(a.n_kv_heads) * hd;
  const float scale = a.scale > 0 ? a.scale : float(1.0 / std::sqrt(double(hd)));
  const float cap = a.softcap;
  int32_t max_len = 0;
  for (const SeqSpan& s : seqs) max_len = std::max(max_len, s.len);
  pool.parallel_for(int64_t(seqs.size()) * nh, [&](int64_t task, int thread) {
    const SeqSpan& s = seqs[size_t(task / nh)];
    const int h = int(task % nh), kh = h / group;
    float* p = scratch + int64_t(thread) * max_len;
    for (int32_t i = 0; i < s.len; ++i) {
      const int64_t t = s.row0 + i;
      const float* qi = q + t * qd + int64_t(h) * hd;
      const int32_t first = a.window > 0 ? std::max(0, i - a.window + 1) : 0;
      float m = -INFINITY;
      for (int32_t j = first; j <= i; ++j) {
        p[j] = dot(qi, k + (s.row0 + j) * kvd + int64_t(kh) * hd, hd) * scale;
        if (cap > 0) p[j] = math::softcap(p[j], cap);
        m = std::max(m, p[j]);
      }
      double sum = 0;
      for (int32_t j = first; j <= i; ++j) {
        p[j] = std::exp(p[j] - m);
        sum += p[j];
      }
      const float inv = float(1.0 / sum);
      float* o = out + t * qd + int64_t(h) * hd;
      std::memset(o, 0, size_t(hd) * sizeof(float));
      for (int32_t j = first; j <= i; ++j) {
        const float w = p[j] * inv;
        const float* vj = v + (s.row0 + j) * kvd + int64_t(kh) * hd;
        for (int d = 0; d < hd; ++d) o[d] += w * vj[d];
      }
      lse[t * nh + h] = float(double(m) + std::log(sum));
    }
  });
}

void attention_backward(ThreadPool& pool, const std::vector<SeqSpan>& seqs, const AttnShape& a, const float* q,
                        const float* k, const float* v, const float* lse, const float* dout, float* dq, float* dk,
                        float* dv, float* scratch) {
  const int hd = a.head_dim, nh = a.n_heads, nkv = a.n_kv_heads, group = nh / nkv;
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd;
  const float scale = a.scale > 0 ? a.scale : float(1.0 / std::sqrt(double(hd)));
  const float cap = a.softcap;
  int32_t max_len = 0;
  for (const SeqSpan& s : seqs) max_len = std::max(max_len, s.len);
  pool.parallel_for(int64_t(seqs.size()) * nkv, [&](int64_t task, int thread) {
    const SeqSpan& s = seqs[size_t(task / nkv)];
    const int kh = int(task % nkv);
    float* p = scratch + int64_t(thread) * 3 * max_len;
    float* dp = p + max_len;
    float* chain = dp + max_len;  // soft-capping: d(capped score) / d(raw score) = 1 - (capped / cap)^2
    for (int32_t j = 0; j < s.len; ++j) {
      std::memset(dk + (s.row0 + j) * kvd + int64_t(kh) * hd, 0, size_t(hd) * sizeof(float));
      std::memset(dv + (s.row0 + j) * kvd + int64_t(kh) * hd, 0, size_t(hd) * sizeof(float));
    }
    for (int h = kh * group; h < (kh + 1) * group; ++h) {
      for (int32_t i = 0; i < s.len; ++i) {
        const int64_t t = s.row0 + i;
        const float* qi = q + t * qd + int64_t(h) * hd;
        const float* doi = dout + t * qd + int64_t(h) * hd;
        const float l = lse[t * nh + h];
        const int32_t first = a.window > 0 ? std::max(0, i - a.window + 1) : 0;
        double D = 0;  // sum_j p_j dp_j (= dout_i . out_i)
        for (int32_t j = first; j <= i; ++j) {
          const int64_t r = (s.row0 + j) * kvd + int64_t(kh) * hd;
          float sc = dot(qi, k + r, hd) * scale;
          chain[j] = 1.f;
          if (cap > 0) {
            sc = math::softcap(sc, cap);
            chain[j] = math::softcap_grad_from_output(sc, cap);
          }
          p[j] = std::exp(sc - l);
          dp[j] = dot(doi, v + r, hd);
          D += double(p[j]) * dp[j];
        }
        float* dqi = dq + t * qd + int64_t(h) * hd;
        std::memset(dqi, 0, size_t(hd) * sizeof(float));
        const float Df = float(D);
        for (int32_t j = first; j <= i; ++j) {
          const int64_t r = (s.row0 + j) * kvd + int64_t(kh) * hd;
          const float ds = p[j] * (dp[j] - Df) * chain[j] * scale;
          const float* kj = k + r;
          float* dkj = dk + r;
          float* dvj = dv + r;
          for (int d = 0; d < hd; ++d) {
            dqi[d] += ds * kj[d];
            dkj[d] += ds * qi[d];
            dvj[d] += p[j] * doi[d];
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------- SwiGLU

void swiglu_forward(ThreadPool& pool, int64_t n, const float* g, const float* u, float* a, bool gelu) {
  const int64_t b = 4096;
  pool.parallel_for((n + b - 1) / b, [&](int64_t blk, int) {
    for (int64_t i = blk * b, e = std::min(n, i + b); i < e; ++i)
      a[i] = (gelu ? math::gelu_tanh(g[i]) : math::silu(g[i])) * u[i];
  });
}

void swiglu_backward(ThreadPool& pool, int64_t n, const float* g, const float* u, const float* da, float* dg,
                     float* du, bool gelu) {
  const int64_t b = 4096;
  pool.parallel_for((n + b - 1) / b, [&](int64_t blk, int) {
    for (int64_t i = blk * b, e = std::min(n, i + b); i < e; ++i) {
      const float d = da[i];
      if (gelu) {
        dg[i] = d * u[i] * math::gelu_tanh_grad(g[i]);
        du[i] = d * math::gelu_tanh(g[i]);
        continue;
      }
      math::swiglu_grads(g[i], u[i], d, &dg[i], &du[i]);  // shared with the CUDA trainer's kernel
    }
  });
}

// ---------------------------------------------------------------- cross-entropy

double crossentropy_forward_backward(ThreadPool& pool, int64_t rows, int64_t V, float* logits, const int32_t* targets,
                                     float scale, double* row_loss) {
  pool.parallel_for(rows, [&](int64_t r, int) {
    float* l = logits + r * V;
    const double lse = logsumexp(l, V);
    row_loss[r] = lse - double(l[targets[r]]);
    for (int64_t i = 0; i < V; ++i) l[i] = float(std::exp(double(l[i]) - lse)) * scale;
    l[targets[r]] -= scale;
  });
  double s = 0;
  for (int64_t r = 0; r < rows; ++r) s += row_loss[r];
  return s;
}

// ---------------------------------------------------------------- embedding

void embedding_backward(int64_t T, int64_t H, const int32_t* tokens, const float* dh, float* dE, float scale) {
  for (int64_t t = 0; t < T; ++t) {
    float* e = dE + int64_t(tokens[t]) * H;
    const float* d = dh + t * H;
    for (int64_t i = 0; i < H; ++i) e[i] += scale * d[i];
  }
}

}  // namespace train
}  // namespace ln
