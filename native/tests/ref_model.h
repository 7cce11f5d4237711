// An independent float64 reference of the Llama-family forward, written from the math (Hugging Face semantics)
// with plain loops and no code shared with native/src/model: weights are read element by element from their
// stored dtype (dtype.h's scalar conversions define what the stored bits mean), everything else is double.
// One sequence at a time, starting at position 0, logits for every position. The family features of ModelConfig
// (Qwen3's q/k norms, YaRN / linear rope, Cohere's LayerNorm, parallel block, interleaved rope and logit scale,
// Gemma 2's (1+w) norms, embedding scale, post-norms, soft-capping, query scale, sliding windows and gelu-tanh) are
// written from their definitions here too.
//
// LoRA adapters (RefLora, written from PEFT's definition: y += (alpha / r) * B A dropout(x)) and a classification
// head on the final-normed state of the last position (class_logits) are optional additions; without adapters the
// forward is the plain model. Dropout masks are the trainer's documented function of (seed, step, micro-batch,
// layer, role, packed row, feature) (train/lora.h), so the reference draws the same masks; the arithmetic is
// independent.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "train/lora.h"
#include "train/trainer.h"

namespace lnref {

inline std::vector<double> load(const ln::WeightRef& w) {
  std::vector<double> v(size_t(w.rows * w.cols));
  for (int64_t i = 0; i < w.rows * w.cols; ++i) v[size_t(i)] = double(ln::load_as_f32(w.data, w.dtype, i));
  return v;
}

// y[n] = sum_k x[k] W[n][k] (+ b[n]); W is [N][K].
inline std::vector<double> linear(const std::vector<double>& x, const std::vector<double>& W, int64_t N,
                                  const std::vector<double>* b = nullptr) {
  const int64_t K = int64_t(x.size());
  std::vector<double> y(size_t(N), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += x[size_t(k)] * W[size_t(n * K + k)];
    y[size_t(n)] = s + (b ? (*b)[size_t(n)] : 0.0);
  }
  return y;
}

inline std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = w[i] * x[i] * r;
  return y;
}

// The config's norm: RMS, Gemma's RMS with (1 + w), or Cohere's mean-centred LayerNorm (weight, no bias).
inline std::vector<double> norm(const ln::ModelConfig& c, const std::vector<double>& x, const std::vector<double>& w) {
  if (c.norm == ln::NormType::RmsOnePlus) {
    std::vector<double> w1(w.size());
    for (size_t i = 0; i < w.size(); ++i) w1[i] = 1.0 + w[i];
    return rmsnorm(x, w1, c.rms_eps);
  }
  if (c.norm != ln::NormType::Layer) return rmsnorm(x, w, c.rms_eps);
  double mean = 0;
  for (double v : x) mean += v;
  mean /= double(x.size());
  double var = 0;
  for (double v : x) var += (v - mean) * (v - mean);
  var /= double(x.size());
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = w[i] * (x[i] - mean) / std::sqrt(var + c.rms_eps);
  return y;
}

inline double act(const ln::ModelConfig& c, double g) {
  if (c.act == ln::Activation::GeluTanh)
    return 0.5 * g * (1 + std::tanh(std::sqrt(2 / std::acos(-1.0)) * (g + 0.044715 * g * g * g)));
  return g / (1 + std::exp(-g));
}

// inv_freq with optional Llama-3 scaling (transformers' _compute_llama3_parameters).
inline std::vector<double> inv_freq(const ln::ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<double> f(static_cast<size_t>(half));
  const double pi = std::acos(-1.0);
  for (int i = 0; i < half; ++i) {
    double base = 1.0 / std::pow(double(c.rope_theta), double(2 * i) / double(c.head_dim));
    if (c.rope_type == ln::RopeType::Llama3) {
      const double old_ctx = c.rope_original_max_positions, lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
      const double wavelen = 2 * pi / base;
      if (wavelen > old_ctx / lo) {
        base = base / c.rope_factor;
      } else if (wavelen >= old_ctx / hi) {
        const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
        base = (1 - smooth) * base / c.rope_factor + smooth * base;
      }
    }
    if (c.rope_type == ln::RopeType::Linear) base /= c.rope_factor;
    if (c.rope_type == ln::RopeType::Yarn) {
      // YaRN from the paper's definition: dimension d of `rotations` turns over the original context,
      // d(r) = D ln(L / (2 pi r)) / (2 ln theta); frequencies below the band are interpolated (/ factor), above kept.
      const double D = c.head_dim, Lo = c.rope_original_max_positions, th = c.rope_theta;
      auto dim_of = [&](double r) { return D * std::log(Lo / (r * 2 * pi)) / (2 * std::log(th)); };
      const double lo = std::max(std::floor(dim_of(c.rope_beta_fast)), 0.0);
      double hi = std::min(std::ceil(dim_of(c.rope_beta_slow)), D - 1);
      if (hi == lo) hi += 0.001;
      const double ramp = std::min(1.0, std::max(0.0, (i - lo) / (hi - lo)));  // 1: fully interpolated
      base = ramp * base / c.rope_factor + (1 - ramp) * base;
    }
    f[size_t(i)] = base;
  }
  return f;
}

// RoPE of one head vector at position p: rotate_half pairs (i, i + half), or Cohere's (2i, 2i + 1); cos and sin
// times the YaRN attention factor m.
inline void rope(double* x, int hd, int64_t p, const std::vector<double>& f, bool interleaved = false, double m = 1) {
  const int half = hd / 2;
  for (int i = 0; i < half; ++i) {
    const double a = double(p) * f[size_t(i)], c = m * std::cos(a), s = m * std::sin(a);
    double* x0 = interleaved ? x + 2 * i : x + i;
    double* x1 = interleaved ? x + 2 * i + 1 : x + i + half;
    const double a0 = *x0, a1 = *x1;
    *x0 = a0 * c - a1 * s;
    *x1 = a1 * c + a0 * s;
  }
}

struct RefLayer {
  std::vector<double> attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, wg, wu, wd;
  std::vector<double> q_norm, k_norm, attn_post_norm, ffn_post_norm;  // family tensors (empty when absent)
};

// y[n] += scale * sum_j B[n][j] (A dropout(x))[j] on (layer, role): role is a train::LayerRole (kWq ... kWDown).
// A is [r][K]; B is [N][r], or with `rows` (masked B) [rows.size()][r] feeding only outputs rows[k].
struct RefLora {
  int layer = 0, role = 0;
  int64_t r = 0;
  double scale = 0, dropout = 0;
  std::vector<double> A, B;
  std::vector<int32_t> rows;
};

struct RefModel {
  ln::ModelConfig c;
  std::vector<double> embed, final_norm, lm_head;
  std::vector<RefLayer> layers;
  // Optional additions: LoRA adapters (dropout active when `train`), a classification head [C][hidden].
  std::vector<RefLora> loras;
  bool train = false;
  uint64_t seed = 0;
  int64_t drop_step = 0, drop_micro = 0;
  std::vector<double> score;
  std::vector<double> score_bias;  // [C] or empty (no bias)
  // >= 0: run layers 0..last_layer only, then the final norm (and LM head): the logit lens of that layer.
  int last_layer = -1;

  // Adds every adapter on (layer, role) to y = x W^T; `row` is x's row in the packed batch (for the masks).
  void adapt(int layer, int role, int64_t row, const std::vector<double>& x, std::vector<double>& y) const {
    for (const RefLora& a : loras) {
      if (a.layer != layer || a.role != role) continue;
      const int64_t K = int64_t(x.size());
      const uint64_t key = ln::train::lora_dropout_key(seed, drop_step, drop_micro, layer, role);
      std::vector<double> h(size_t(a.r), 0.0);
      for (int64_t j = 0; j < a.r; ++j)
        for (int64_t k = 0; k < K; ++k) {
          double xk = x[size_t(k)];
          if (train && a.dropout > 0) xk = ln::train::lora_keep(key, row, k, K, float(a.dropout)) ? xk / (1 - a.dropout) : 0.0;
          h[size_t(j)] += a.A[size_t(j * K + k)] * xk;
        }
      const int64_t nB = a.rows.empty() ? int64_t(y.size()) : int64_t(a.rows.size());
      for (int64_t n = 0; n < nB; ++n) {
        double s = 0;
        for (int64_t j = 0; j < a.r; ++j) s += a.B[size_t(n * a.r + j)] * h[size_t(j)];
        y[size_t(a.rows.empty() ? n : a.rows[size_t(n)])] += a.scale * s;
      }
    }
  }

  // Class logits of one sequence: score · (final-normed state of its last token) + score_bias.
  std::vector<double> class_logits(const std::vector<int32_t>& tokens, int64_t row0 = 0) const {
    const std::vector<double> hs = final_states(tokens, row0);
    const int64_t H = c.hidden, C = int64_t(score.size()) / H;
    std::vector<double> z = score_bias.empty() ? std::vector<double>(size_t(C), 0.0) : score_bias;
    for (int64_t k = 0; k < C; ++k)
      for (int64_t i = 0; i < H; ++i) z[size_t(k)] += score[size_t(k * H + i)] * hs[size_t((int64_t(tokens.size()) - 1) * H + i)];
    return z;
  }

  RefModel(const ln::ModelConfig& cfg, const ln::ModelWeights& w) : c(cfg) {
    embed = load(w.embed);
    final_norm = load(w.final_norm);
    lm_head = (c.tie_embeddings && w.lm_head.empty()) ? embed : load(w.lm_head);
    for (const auto& L : w.layers) {
      RefLayer r;
      r.attn_norm = load(L.attn_norm);
      r.wq = load(L.wq);
      r.wk = load(L.wk);
      r.wv = load(L.wv);
      r.wo = load(L.wo);
      if (c.qkv_bias) {
        r.bq = load(L.bq);
        r.bk = load(L.bk);
        r.bv = load(L.bv);
      }
      if (!c.parallel_block) r.ffn_norm = load(L.ffn_norm);
      if (c.qk_norm) {
        r.q_norm = load(L.q_norm);
        r.k_norm = load(L.k_norm);
      }
      if (c.post_norms) {
        r.attn_post_norm = load(L.attn_post_norm);
        r.ffn_post_norm = load(L.ffn_post_norm);
      }
      r.wg = load(L.w_gate);
      r.wu = load(L.w_up);
      r.wd = load(L.w_down);
      layers.push_back(std::move(r));
    }
  }

  // logits [T][vocab] for one sequence starting at position 0 (row0: its first row in the packed batch).
  std::vector<double> forward(const std::vector<int32_t>& tokens, int64_t row0 = 0) const {
    const std::vector<double> hs = final_states(tokens, row0);
    const int64_t T = int64_t(tokens.size()), H = c.hidden;
    std::vector<double> logits;
    logits.reserve(size_t(T * c.vocab));
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> x(hs.begin() + t * H, hs.begin() + (t + 1) * H);
      std::vector<double> l = linear(x, lm_head, c.vocab);
      for (double& v : l) {
        v *= c.logit_scale;
        if (c.final_softcap > 0) v = c.final_softcap * std::tanh(v / c.final_softcap);
      }
      logits.insert(logits.end(), l.begin(), l.end());
    }
    return logits;
  }

  // Final-normed hidden states [T][hidden].
  std::vector<double> final_states(const std::vector<int32_t>& tokens, int64_t row0 = 0) const {
    using namespace ln::train;
    const int64_t T = int64_t(tokens.size()), H = c.hidden, hd = c.head_dim;
    const int64_t nh = c.n_heads, nkv = c.n_kv_heads, qd = nh * hd, kvd = nkv * hd;
    const std::vector<double> freqs = inv_freq(c);
    std::vector<std::vector<double>> h(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      h[size_t(t)].assign(embed.begin() + tokens[size_t(t)] * H, embed.begin() + (tokens[size_t(t)] + 1) * H);
      for (double& v : h[size_t(t)]) v *= c.embed_scale;
    }
    const double qscale = c.query_scale > 0 ? double(c.query_scale) : 1.0 / std::sqrt(double(hd));

    const size_t n_run = last_layer < 0 ? layers.size() : size_t(last_layer) + 1;
    for (size_t li = 0; li < n_run; ++li) {
      const RefLayer& L = layers[li];
      const int l = int(li);
      const size_t nT = static_cast<size_t>(T);
      std::vector<std::vector<double>> q(nT), k(nT), v(nT), x1(nT);
      for (int64_t t = 0; t < T; ++t) {
        const std::vector<double> x = norm(c, h[size_t(t)], L.attn_norm);
        x1[size_t(t)] = x;
        q[size_t(t)] = linear(x, L.wq, qd, c.qkv_bias ? &L.bq : nullptr);
        k[size_t(t)] = linear(x, L.wk, kvd, c.qkv_bias ? &L.bk : nullptr);
        v[size_t(t)] = linear(x, L.wv, kvd, c.qkv_bias ? &L.bv : nullptr);
        adapt(l, kWq, row0 + t, x, q[size_t(t)]);
        adapt(l, kWk, row0 + t, x, k[size_t(t)]);
        adapt(l, kWv, row0 + t, x, v[size_t(t)]);
        if (c.qk_norm) {
          for (int64_t hh = 0; hh < nh; ++hh) {
            std::vector<double> seg(q[size_t(t)].begin() + hh * hd, q[size_t(t)].begin() + (hh + 1) * hd);
            seg = rmsnorm(seg, L.q_norm, c.rms_eps);
            std::copy(seg.begin(), seg.end(), q[size_t(t)].begin() + hh * hd);
          }
          for (int64_t hh = 0; hh < nkv; ++hh) {
            std::vector<double> seg(k[size_t(t)].begin() + hh * hd, k[size_t(t)].begin() + (hh + 1) * hd);
            seg = rmsnorm(seg, L.k_norm, c.rms_eps);
            std::copy(seg.begin(), seg.end(), k[size_t(t)].begin() + hh * hd);
          }
        }
        for (int64_t hh = 0; hh < nh; ++hh)
          rope(q[size_t(t)].data() + hh * hd, int(hd), t, freqs, c.rope_interleaved, c.rope_attention_factor);
        for (int64_t hh = 0; hh < nkv; ++hh)
          rope(k[size_t(t)].data() + hh * hd, int(hd), t, freqs, c.rope_interleaved, c.rope_attention_factor);
      }
      const int64_t window = c.window_of(l);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> att(size_t(qd), 0.0);
        for (int64_t hh = 0; hh < nh; ++hh) {
          const int64_t kv = hh / (nh / nkv);
          std::vector<double> s(size_t(t + 1), 0.0);
          const int64_t first = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
          double m = -1e300;
          for (int64_t j = first; j <= t; ++j) {
            double d = 0;
            for (int64_t e = 0; e < hd; ++e) d += q[size_t(t)][size_t(hh * hd + e)] * k[size_t(j)][size_t(kv * hd + e)];
            s[size_t(j)] = d * qscale;
            if (c.attn_softcap > 0) s[size_t(j)] = c.attn_softcap * std::tanh(s[size_t(j)] / c.attn_softcap);
            m = std::max(m, s[size_t(j)]);
          }
          double z = 0;
          for (int64_t j = first; j <= t; ++j) z += (s[size_t(j)] = std::exp(s[size_t(j)] - m));
          for (int64_t j = first; j <= t; ++j)
            for (int64_t e = 0; e < hd; ++e)
              att[size_t(hh * hd + e)] += s[size_t(j)] / z * v[size_t(j)][size_t(kv * hd + e)];
        }
        std::vector<double> o = linear(att, L.wo, H);
        adapt(l, kWo, row0 + t, att, o);
        if (c.post_norms) o = norm(c, o, L.attn_post_norm);
        for (int64_t i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += o[size_t(i)];
      }
      for (int64_t t = 0; t < T; ++t) {
        const std::vector<double> x = c.parallel_block ? x1[size_t(t)] : norm(c, h[size_t(t)], L.ffn_norm);
        std::vector<double> g = linear(x, L.wg, c.intermediate), u = linear(x, L.wu, c.intermediate);
        adapt(l, kWGate, row0 + t, x, g);
        adapt(l, kWUp, row0 + t, x, u);
        std::vector<double> a(g.size());
        for (size_t i = 0; i < g.size(); ++i) a[i] = act(c, g[i]) * u[i];
        std::vector<double> d = linear(a, L.wd, H);
        adapt(l, kWDown, row0 + t, a, d);
        if (c.post_norms) d = norm(c, d, L.ffn_post_norm);
        for (int64_t i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += d[size_t(i)];
      }
    }
    std::vector<double> out;
    out.reserve(size_t(T * H));
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> x = norm(c, h[size_t(t)], final_norm);
      out.insert(out.end(), x.begin(), x.end());
    }
    return out;
  }
};

}  // namespace lnref
