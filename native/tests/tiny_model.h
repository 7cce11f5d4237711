// Tiny random Llama-family models for the native tests (test_model.cpp, test_stats.cpp): every tensor in an
// owned byte buffer, in the chosen storage dtype, with ModelWeights pointing into them.
#pragma once
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/model.h"

namespace lntiny {

using namespace ln;

// Any f16 bit pattern near x (the reference reads the stored bits back, so exact rounding does not matter).
inline uint16_t to_f16_bits(float x) {
  uint32_t u = f32_to_bits(x), sign = (u >> 16) & 0x8000u;
  int32_t e = int32_t((u >> 23) & 0xff) - 127 + 15;
  if (e <= 0) return uint16_t(sign);  // tiny: zero
  return uint16_t(sign | (uint32_t(e) << 10) | ((u >> 13) & 0x3ffu));
}

struct TinyOpts {
  DType dtype = DType::F32;
  int hidden = 48, inter = 80, layers = 3, heads = 6, kv = 2, head_dim = 8, vocab = 64, max_pos = 128;
  bool bias = false, tied = false, llama3 = false, misalign_1d = false;
  float theta = 10000.f;
  // Families: Qwen3 (q/k norms), Gemma 2 (every Gemma feature, window `window` on even layers), Cohere; YaRN and
  // linear rope; a Mistral-style window on every layer (window > 0 without gemma2).
  enum class Family { Llama, Qwen3, Gemma2, Cohere } family = Family::Llama;
  bool yarn = false, linear = false;
  int window = 0;
  uint32_t seed = 1;
};

// A model whose tensors live in owned byte buffers, with ModelWeights pointing into them.
struct Tiny {
  ModelConfig cfg;
  ModelWeights w;
  std::vector<std::vector<uint8_t>> blobs;
  std::mt19937 rng;

  explicit Tiny(const TinyOpts& o) : rng(o.seed) {
    cfg.hidden = o.hidden;
    cfg.intermediate = o.inter;
    cfg.n_layers = o.layers;
    cfg.n_heads = o.heads;
    cfg.n_kv_heads = o.kv;
    cfg.head_dim = o.head_dim;
    cfg.vocab = o.vocab;
    cfg.max_positions = o.max_pos;
    cfg.rms_eps = 1e-5f;
    cfg.rope_theta = o.theta;
    cfg.tie_embeddings = o.tied;
    cfg.qkv_bias = o.bias;
    if (o.yarn) {
      cfg.rope_type = RopeType::Yarn;
      cfg.rope_factor = 4.f;
      cfg.rope_original_max_positions = 32;
      cfg.rope_attention_factor = float(0.1 * std::log(4.0) + 1.0);
    }
    if (o.linear) {
      cfg.rope_type = RopeType::Linear;
      cfg.rope_factor = 2.f;
    }
    cfg.sliding_window = o.window;
    if (o.family == TinyOpts::Family::Qwen3) cfg.qk_norm = true;
    if (o.family == TinyOpts::Family::Gemma2) {
      cfg.norm = NormType::RmsOnePlus;
      cfg.act = Activation::GeluTanh;
      cfg.post_norms = true;
      cfg.embed_scale = std::sqrt(float(o.hidden));
      cfg.query_scale = 1.f / std::sqrt(24.f);
      cfg.attn_softcap = 4.f;
      cfg.final_softcap = 30.f;  // Gemma 2's value: a tighter cap flattens random logits into near ties
      cfg.sliding_period = 2;
    }
    if (o.family == TinyOpts::Family::Cohere) {
      cfg.norm = NormType::Layer;
      cfg.parallel_block = true;
      cfg.rope_interleaved = true;
      cfg.logit_scale = 0.125f;
    }
    const bool gemma = o.family == TinyOpts::Family::Gemma2;
    if (o.llama3) {
      cfg.rope_type = RopeType::Llama3;
      cfg.rope_factor = 8.f;
      cfg.rope_low_freq_factor = 1.f;
      cfg.rope_high_freq_factor = 4.f;
      cfg.rope_original_max_positions = 64;
    }
    const int64_t H = o.hidden, I = o.inter, qd = int64_t(o.heads) * o.head_dim, kvd = int64_t(o.kv) * o.head_dim;
    auto mat = [&](int64_t r, int64_t c) { return tensor(o.dtype, r, c, std::sqrt(3.0f / float(c)), 0.f, 0); };
    auto vec = [&](int64_t n, float center, float spread) {
      return tensor(o.dtype, n, 1, spread, center, o.misalign_1d ? 2 : 0);
    };
    w.embed = tensor(o.dtype, o.vocab, H, 1.f, 0.f, 0);
    for (int l = 0; l < o.layers; ++l) {
      LayerWeights L;
      L.attn_norm = vec(H, gemma ? 0.f : 1.f, 0.3f);  // Gemma's norms multiply by 1 + w
      L.wq = mat(qd, H);
      L.wk = mat(kvd, H);
      L.wv = mat(kvd, H);
      L.wo = mat(H, qd);
      if (o.bias) {
        L.bq = vec(qd, 0.f, 0.5f);
        L.bk = vec(kvd, 0.f, 0.5f);
        L.bv = vec(kvd, 0.f, 0.5f);
      }
      if (o.family != TinyOpts::Family::Cohere) L.ffn_norm = vec(H, gemma ? 0.f : 1.f, 0.3f);
      if (o.family == TinyOpts::Family::Qwen3) {
        L.q_norm = vec(o.head_dim, 1.f, 0.3f);
        L.k_norm = vec(o.head_dim, 1.f, 0.3f);
      }
      if (gemma) {
        L.attn_post_norm = vec(H, 0.f, 0.3f);
        L.ffn_post_norm = vec(H, 0.f, 0.3f);
      }
      L.w_gate = mat(I, H);
      L.w_up = mat(I, H);
      L.w_down = mat(H, I);
      w.layers.push_back(L);
    }
    w.final_norm = vec(H, gemma ? 0.f : 1.f, 0.3f);
    w.lm_head = o.tied ? w.embed : mat(o.vocab, H);
  }

  // uniform(center - spread, center + spread), stored as `dt`, starting `offset` bytes into its buffer.
  WeightRef tensor(DType dt, int64_t rows, int64_t cols, float spread, float center, int offset) {
    std::uniform_real_distribution<float> U(center - spread, center + spread);
    const int64_t n = rows * cols, es = dtype_size(dt);
    blobs.emplace_back(size_t(n * es + offset));
    uint8_t* p = blobs.back().data() + offset;
    for (int64_t i = 0; i < n; ++i) {
      const float x = U(rng);
      if (dt == DType::F32) std::memcpy(p + 4 * i, &x, 4);
      uint16_t b = dt == DType::BF16 ? f32_to_bf16(x) : to_f16_bits(x);
      if (dt != DType::F32) std::memcpy(p + 2 * i, &b, 2);
    }
    WeightRef r;
    r.data = p;
    r.dtype = dt;
    r.rows = rows;
    r.cols = cols;
    return r;
  }
};

inline std::vector<int32_t> random_tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint32_t(vocab));
  return t;
}

}  // namespace lntiny
