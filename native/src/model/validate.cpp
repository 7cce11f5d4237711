// validate_config / validate_weights: everything is checked before a Model exists, so that the forward can
// trust sizes and shapes (and the binding can report a broken checkpoint by tensor name).
#include <cmath>
#include <string>

#include "model/model.h"

namespace ln {

std::string validate_config(const ModelConfig& c) {
  auto positive = [](const char* name, int64_t v) -> std::string {
    return v > 0 ? "" : std::string("config: ") + name + " must be positive, got " + std::to_string(v);
  };
  for (auto& [name, v] : {std::pair<const char*, int64_t>{"hidden_size", c.hidden},
                          {"intermediate_size", c.intermediate},
                          {"num_hidden_layers", c.n_layers},
                          {"num_attention_heads", c.n_heads},
                          {"num_key_value_heads", c.n_kv_heads},
                          {"head_dim", c.head_dim},
                          {"vocab_size", c.vocab},
                          {"max_position_embeddings", c.max_positions}}) {
    std::string e = positive(name, v);
    if (!e.empty()) return e;
  }
  if (c.n_heads % c.n_kv_heads != 0)
    return "config: num_attention_heads (" + std::to_string(c.n_heads) + ") is not a multiple of " +
           "num_key_value_heads (" + std::to_string(c.n_kv_heads) + ")";
  if (c.head_dim % 2 != 0) return "config: head_dim must be even for RoPE, got " + std::to_string(c.head_dim);
  if (!(std::isfinite(c.rms_eps) && c.rms_eps > 0))
    return "config: rms_norm_eps must be a positive number, got " + std::to_string(c.rms_eps);
  if (!(std::isfinite(c.rope_theta) && c.rope_theta > 0))
    return "config: rope_theta must be a positive number, got " + std::to_string(c.rope_theta);
  if (c.rope_type == RopeType::Llama3) {
    if (!(std::isfinite(c.rope_factor) && c.rope_factor >= 1))
      return "config: rope_scaling.factor must be >= 1, got " + std::to_string(c.rope_factor);
    if (!(std::isfinite(c.rope_low_freq_factor) && c.rope_low_freq_factor > 0))
      return "config: rope_scaling.low_freq_factor must be positive, got " + std::to_string(c.rope_low_freq_factor);
    if (!(std::isfinite(c.rope_high_freq_factor) && c.rope_high_freq_factor > c.rope_low_freq_factor))
      return "config: rope_scaling.high_freq_factor (" + std::to_string(c.rope_high_freq_factor) +
             ") must be greater than low_freq_factor (" + std::to_string(c.rope_low_freq_factor) + ")";
    if (c.rope_original_max_positions <= 0)
      return "config: rope_scaling.original_max_position_embeddings must be positive, got " +
             std::to_string(c.rope_original_max_positions);
  } else if (c.rope_type == RopeType::Yarn || c.rope_type == RopeType::Linear) {
    if (!(std::isfinite(c.rope_factor) && c.rope_factor >= 1))
      return "config: rope_scaling.factor must be >= 1, got " + std::to_string(c.rope_factor);
    if (c.rope_type == RopeType::Yarn) {
      if (c.rope_original_max_positions <= 0)
        return "config: rope_scaling.original_max_position_embeddings must be positive, got " +
               std::to_string(c.rope_original_max_positions);
      if (!(std::isfinite(c.rope_attention_factor) && c.rope_attention_factor > 0))
        return "config: rope_scaling.attention_factor must be positive, got " + std::to_string(c.rope_attention_factor);
      if (!(std::isfinite(c.rope_beta_fast) && std::isfinite(c.rope_beta_slow) && c.rope_beta_fast > 0 &&
            c.rope_beta_slow > 0))
        return "config: rope_scaling.beta_fast and beta_slow must be positive";
    }
  } else if (c.rope_type != RopeType::Default) {
    return "config: unknown rope type " + std::to_string(int(c.rope_type));
  }
  if (c.rope_type != RopeType::Yarn && c.rope_attention_factor != 1.f)
    return "config: an attention factor is only defined for yarn rope scaling";
  if (c.norm != NormType::Rms && c.norm != NormType::RmsOnePlus && c.norm != NormType::Layer)
    return "config: unknown norm type " + std::to_string(int(c.norm));
  if (c.act != Activation::Silu && c.act != Activation::GeluTanh)
    return "config: unknown activation " + std::to_string(int(c.act));
  if (c.parallel_block && c.post_norms) return "config: a parallel block with post-norms is not a known architecture";
  if (c.post_norms && c.norm == NormType::Layer) return "config: post-norms are RMS norms (Gemma 2), not LayerNorms";
  for (auto& [name, v] : {std::pair<const char*, float>{"embedding scale", c.embed_scale},
                          {"logit_scale", c.logit_scale}}) {
    if (!(std::isfinite(v) && v > 0)) return std::string("config: ") + name + " must be a positive number, got " + std::to_string(v);
  }
  for (auto& [name, v] : {std::pair<const char*, float>{"query_pre_attn_scalar scale", c.query_scale},
                          {"attn_logit_softcapping", c.attn_softcap},
                          {"final_logit_softcapping", c.final_softcap}}) {
    if (!(std::isfinite(v) && v >= 0)) return std::string("config: ") + name + " must be >= 0, got " + std::to_string(v);
  }
  if (c.sliding_window < 0) return "config: sliding_window must be >= 0, got " + std::to_string(c.sliding_window);
  if (c.sliding_period < 1) return "config: sliding period must be >= 1, got " + std::to_string(c.sliding_period);
  return "";
}

float ModelConfig::attn_scale() const {
  return query_scale > 0 ? query_scale : float(1.0 / std::sqrt(double(head_dim)));
}

static std::string shape_str(int64_t rows, int64_t cols, bool one_d) {
  return one_d ? "[" + std::to_string(rows) + "]" : "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

// "" or "<name>: ..." for a tensor expected to be [rows, cols] (cols == 0: 1-D [rows], stored with cols 1).
static std::string check_tensor(const std::string& name, const WeightRef& w, int64_t rows, int64_t cols) {
  const bool one_d = cols == 0;
  if (w.data == nullptr) return name + ": missing (expected " + shape_str(rows, cols, one_d) + ")";
  if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
    return name + ": unsupported dtype " + std::to_string(int(w.dtype));
  const int64_t want_cols = one_d ? 1 : cols;
  if (w.rows != rows || w.cols != want_cols)
    return name + ": expected " + shape_str(rows, cols, one_d) + ", got " +
           (w.cols == 1 ? shape_str(w.rows, w.cols, one_d) : shape_str(w.rows, w.cols, false));
  return "";
}

std::string validate_weights(const ModelConfig& c, const ModelWeights& w) {
  std::string e = validate_config(c);
  if (!e.empty()) return e;
  const int64_t H = c.hidden, I = c.intermediate, V = c.vocab;
  const int64_t qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  if ((e = check_tensor("embed", w.embed, V, H)) != "") return e;
  if ((e = check_tensor("final_norm", w.final_norm, H, 0)) != "") return e;
  // A tied model may leave lm_head empty: the Model then uses embed.
  if (!(c.tie_embeddings && w.lm_head.empty()) && (e = check_tensor("lm_head", w.lm_head, V, H)) != "") return e;
  if (int64_t(w.layers.size()) != c.n_layers)
    return "weights: " + std::to_string(w.layers.size()) + " layers given, config has " +
           std::to_string(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerWeights& L = w.layers[size_t(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
    struct Want {
      const char* name;
      const WeightRef* t;
      int64_t rows, cols;
    };
    const Want wants[] = {{"attn_norm", &L.attn_norm, H, 0}, {"wq", &L.wq, qd, H},         {"wk", &L.wk, kvd, H},
                          {"wv", &L.wv, kvd, H},            {"wo", &L.wo, H, qd},
                          {"w_gate", &L.w_gate, I, H},      {"w_up", &L.w_up, I, H},       {"w_down", &L.w_down, H, I}};
    for (const Want& x : wants)
      if ((e = check_tensor(p + x.name, *x.t, x.rows, x.cols)) != "") return e;
    // Family tensors are required when the config has the feature and ignored without it.
    if (!c.parallel_block && (e = check_tensor(p + "ffn_norm", L.ffn_norm, H, 0)) != "") return e;
    if (c.qk_norm) {
      if ((e = check_tensor(p + "q_norm", L.q_norm, c.head_dim, 0)) != "") return e;
      if ((e = check_tensor(p + "k_norm", L.k_norm, c.head_dim, 0)) != "") return e;
    }
    if (c.post_norms) {
      if ((e = check_tensor(p + "attn_post_norm", L.attn_post_norm, H, 0)) != "") return e;
      if ((e = check_tensor(p + "ffn_post_norm", L.ffn_post_norm, H, 0)) != "") return e;
    }
    // Biases are required with qkv_bias and ignored without it.
    if (c.qkv_bias) {
      const Want biases[] = {{"bq", &L.bq, qd, 0}, {"bk", &L.bk, kvd, 0}, {"bv", &L.bv, kvd, 0}};
      for (const Want& x : biases)
        if ((e = check_tensor(p + x.name, *x.t, x.rows, x.cols)) != "") return e;
    }
  }
  return "";
}

}  // namespace ln
