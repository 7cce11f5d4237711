// The trainers' shared parameter table: see param_layout.h.
#include "train/param_layout.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/ops.h"
#include "train/lora.h"

namespace ln {
namespace train {

namespace {
const char* const kRoleNames[kLayerRoles] = {"attn_norm", "wq", "wk", "wv", "wo", "bq", "bk", "bv", "ffn_norm",
                                             "w_gate", "w_up", "w_down", "q_norm", "k_norm", "attn_post_norm",
                                             "ffn_post_norm"};
[[noreturn]] void fail(const std::string& m) { throw std::invalid_argument("trainer: " + m); }

bool lora_role(int r) { return r == kWq || r == kWk || r == kWv || r == kWo || r == kWGate || r == kWUp || r == kWDown; }

// Validates the Lora entries of the spec and appends, per adapter, the parameters A and B (no offsets yet: they are
// laid out after the checkpoint tensors), then the classification head.
void add_lora_params(const ModelConfig& cfg, const std::vector<TrainableSpec>& spec, const TrainerOptions& opt,
                     ParamLayout& L) {
  for (const TrainableSpec& s : spec) {
    const std::string where = s.role + (s.layer >= 0 ? " of layer " + std::to_string(s.layer) : std::string());
    if (s.mode != ParamMode::Lora) {
      if (s.lora_r != 0 || s.lora_alpha != 0.f || s.lora_dropout != 0.f || s.lora_init_std != 0.f)
        fail(where + ": r / alpha / dropout / init std are only meaningful with mode 'lora'");
      continue;
    }
    int role = -1;
    for (int r = 0; r < kLayerRoles; ++r)
      if (s.role == layer_role_name(r)) role = r;
    if (s.layer < 0 || role < 0 || !lora_role(role))
      fail(where + ": mode 'lora' is supported for wq, wk, wv, wo, w_gate, w_up, w_down of a layer");
    if (s.lora_r < 1) fail(where + ": LoRA rank r must be an integer >= 1, got " + std::to_string(s.lora_r));
    if (!(s.lora_alpha > 0) || !std::isfinite(s.lora_alpha)) fail(where + ": LoRA alpha must be a number > 0");
    if (!(s.lora_dropout >= 0 && s.lora_dropout < 1)) fail(where + ": LoRA dropout must be in [0, 1)");
    if (!(s.lora_init_std >= 0) || !std::isfinite(s.lora_init_std)) fail(where + ": LoRA init std must be a number >= 0 (0: PEFT's kaiming-uniform)");
    const int base = L.find(cfg, s.role, s.layer);
    const int64_t N = L.params[size_t(base)].stored.rows, K = L.params[size_t(base)].stored.cols;
    if (s.lora_r > std::min(N, K))
      fail(where + ": LoRA rank " + std::to_string(s.lora_r) + " exceeds the weight's smaller side " +
           std::to_string(std::min(N, K)));
    for (size_t k = 0; k < s.index.size(); ++k) {  // masked B: the output features that get an update
      if (s.index[k] < 0 || s.index[k] >= N)
        fail(where + ": LoRA row " + std::to_string(s.index[k]) + " outside [0, " + std::to_string(N) + ")");
      if (k > 0 && s.index[k] <= s.index[k - 1]) fail(where + ": LoRA rows must be strictly increasing");
    }
    LoraAdapter ad;
    ad.base = base;
    ad.layer = s.layer;
    ad.role = role;
    ad.r = s.lora_r;
    ad.scale = s.lora_alpha / float(s.lora_r);
    ad.dropout = s.lora_dropout;
    ad.init_std = s.lora_init_std;
    Param a, b;
    a.role = s.role + ".lora_A";
    b.role = s.role + ".lora_B";
    a.layer = b.layer = s.layer;
    a.mode = ParamMode::LoraA;
    b.mode = ParamMode::LoraB;
    a.mrows = s.lora_r;
    a.mcols = K;
    b.mrows = s.index.empty() ? N : int64_t(s.index.size());
    b.mcols = s.lora_r;
    b.index = s.index;
    ad.a = int(L.params.size());
    L.params.push_back(std::move(a));
    ad.b = int(L.params.size());
    L.params.push_back(std::move(b));
    L.params[size_t(base)].lora = int(L.adapters.size());  // (by index: the push_backs above may have moved params)
    L.adapters.push_back(ad);
  }
  if (opt.num_labels < 0) fail("num_labels must be >= 0");
  if (opt.num_labels > 0) {
    Param h;
    h.role = "score";
    h.layer = -1;
    h.mode = ParamMode::Dense;
    h.mrows = opt.num_labels;
    h.mcols = cfg.hidden;
    L.head = int(L.params.size());
    L.params.push_back(std::move(h));
    if (opt.head_bias) {
      Param b;
      b.role = "score_bias";
      b.layer = -1;
      b.mode = ParamMode::Dense;
      b.mrows = opt.num_labels;
      b.mcols = 1;
      L.head_bias = int(L.params.size());
      L.params.push_back(std::move(b));
    }
  } else if (opt.head_bias) {
    fail("head_bias needs a classification head (num_labels > 0)");
  }
}
}  // namespace

const char* layer_role_name(int r) { return r >= 0 && r < kLayerRoles ? kRoleNames[r] : "?"; }

int ParamLayout::find(const ModelConfig& cfg, const std::string& role, int32_t layer) const {
  if (layer < 0) {
    if (role == "embed") return 0;
    if (role == "final_norm") return 1;
    if (role == "lm_head") return cfg.tie_embeddings ? 0 : 2;
    if (role == "score") return head;
    if (role == "score_bias") return head_bias;
    return -1;
  }
  if (layer >= cfg.n_layers) return -1;
  for (int r = 0; r < kLayerRoles; ++r)
    if (role == kRoleNames[r]) return layer_param_index(layer, r);
  for (const LoraAdapter& ad : adapters) {  // "<role>.lora_A" / "<role>.lora_B"
    if (ad.layer != layer) continue;
    if (params[size_t(ad.a)].role == role) return ad.a;
    if (params[size_t(ad.b)].role == role) return ad.b;
  }
  return -1;
}

ParamLayout build_param_layout(const ModelConfig& cfg, const ModelWeights& w0, const std::vector<TrainableSpec>& spec,
                               const TrainerOptions& opt) {
  ModelWeights w = w0;
  if (cfg.tie_embeddings && w.lm_head.empty()) w.lm_head = w.embed;
  std::string bad = validate_weights(cfg, w);
  if (!bad.empty()) fail(bad);
  ParamLayout L;
  std::vector<Param>& params = L.params;

  // Parameter table, in arena order.
  auto add = [&](const char* role, int32_t layer, const WeightRef& ref) {
    Param p;
    p.role = role;
    p.layer = layer;
    p.stored = ref;
    params.push_back(std::move(p));
  };
  add("embed", -1, w.embed);
  add("final_norm", -1, w.final_norm);
  add("lm_head", -1, cfg.tie_embeddings ? WeightRef{} : w.lm_head);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const LayerWeights& LW = w.layers[size_t(l)];
    const WeightRef* refs[kLayerRoles] = {&LW.attn_norm, &LW.wq, &LW.wk, &LW.wv, &LW.wo, &LW.bq, &LW.bk, &LW.bv,
                                          &LW.ffn_norm, &LW.w_gate, &LW.w_up, &LW.w_down, &LW.q_norm, &LW.k_norm,
                                          &LW.attn_post_norm, &LW.ffn_post_norm};
    for (int r = 0; r < kLayerRoles; ++r) {
      bool present = true;
      if (r >= kBq && r <= kBv) present = cfg.qkv_bias;
      if (r == kQNorm || r == kKNorm) present = cfg.qk_norm;
      if (r == kAttnPostNorm || r == kFfnPostNorm) present = cfg.post_norms;
      if (r == kFfnNorm) present = !cfg.parallel_block;
      add(kRoleNames[r], l, present ? *refs[r] : WeightRef{});
    }
  }

  // Modes from the spec.
  std::vector<bool> given(params.size(), false);
  for (const TrainableSpec& s : spec) {
    const int i = L.find(cfg, s.role, s.layer);
    const std::string where = s.role + (s.layer >= 0 ? " of layer " + std::to_string(s.layer) : std::string());
    if (i < 0) fail("unknown parameter '" + where + "'");
    if (s.role == "lm_head" && cfg.tie_embeddings) fail("lm_head is tied to embed in this model: train 'embed'");
    Param& p = params[size_t(i)];
    if (p.stored.empty()) fail(where + ": this model has no such tensor");
    if (given[size_t(i)]) fail(where + ": given twice");
    given[size_t(i)] = true;
    const bool is_1d = p.stored.cols == 1 && (s.role.find("norm") != std::string::npos || s.role[0] == 'b');
    const bool rows_ok = !is_1d && (s.role == "wq" || s.role == "wk" || s.role == "wv" || s.role == "w_gate" ||
                                    s.role == "w_up" || s.role == "lm_head");
    const bool cols_ok = !is_1d && s.role != "embed";
    if (s.mode == ParamMode::Lora) continue;  // validated (and its parameters added) by add_lora_params
    if (s.mode == ParamMode::Rows && !rows_ok) fail(where + ": mode 'rows' is supported for wq, wk, wv, w_gate, w_up, lm_head");
    if (s.mode == ParamMode::Cols && !cols_ok) fail(where + ": mode 'cols' is not supported for 1-D tensors or the embedding");
    if (s.mode != ParamMode::Frozen && s.mode != ParamMode::Dense && s.mode != ParamMode::Rows && s.mode != ParamMode::Cols)
      fail(where + ": unknown mode");
    p.mode = s.mode;
    if (s.mode == ParamMode::Rows || s.mode == ParamMode::Cols) {
      const int64_t limit = s.mode == ParamMode::Rows ? p.stored.rows : p.stored.cols;
      if (s.index.empty()) fail(where + ": empty index list (leave the tensor out to freeze it)");
      for (size_t k = 0; k < s.index.size(); ++k) {
        if (s.index[k] < 0 || s.index[k] >= limit)
          fail(where + ": index " + std::to_string(s.index[k]) + " outside [0, " + std::to_string(limit) + ")");
        if (k > 0 && s.index[k] <= s.index[k - 1]) fail(where + ": indices must be strictly increasing");
      }
      p.index = s.index;
    } else if (!s.index.empty()) {
      fail(where + ": indices are only meaningful with mode 'rows' or 'cols'");
    }
  }

  add_lora_params(cfg, spec, opt, L);

  // Arena layout (float32 master copies of the stored dtype). LoRA matrices and the head (no checkpoint tensor,
  // shapes already set) come last.
  int64_t off = 0;
  L.lowest = cfg.n_layers;  // no trainable layer yet (stays so when only final_norm / lm_head / nothing trains)
  for (Param& p : params) {
    if (p.mode == ParamMode::LoraA || p.mode == ParamMode::LoraB ||
        (p.layer < 0 && (p.role == "score" || p.role == "score_bias"))) {
      p.offset = off;
      p.size = p.mrows * p.mcols;
      off += p.size;
      L.any_trainable = true;
      if (p.layer >= 0) L.lowest = std::min(L.lowest, int(p.layer));
      continue;
    }
    if (p.stored.empty()) continue;
    const int64_t R = p.stored.rows, C = p.stored.cols;
    if (p.mode == ParamMode::Frozen) {
      if (C == 1) {
        p.vec.resize(size_t(R));
        convert_to_f32(p.stored.data, p.stored.dtype, 0, R, p.vec.data());
      }
      continue;
    }
    p.mrows = p.mode == ParamMode::Rows ? int64_t(p.index.size()) : R;
    p.mcols = p.mode == ParamMode::Cols ? int64_t(p.index.size()) : C;
    p.offset = off;
    p.size = p.mrows * p.mcols;
    off += p.size;
    L.any_trainable = true;
    if (p.layer >= 0) L.lowest = std::min(L.lowest, int(p.layer));
    else if (p.role == "embed") L.lowest = -1;
  }
  L.n_trainable = off;
  return L;
}

void init_master_values(const ParamLayout& L, uint64_t seed, float* master) {
  for (const Param& p : L.params) {
    if (!p.trainable() || p.stored.empty()) continue;
    float* dst = master + p.offset;
    const int64_t C = p.stored.cols;
    if (p.mode == ParamMode::Dense) {
      convert_to_f32(p.stored.data, p.stored.dtype, 0, p.size, dst);
    } else if (p.mode == ParamMode::Rows) {
      for (size_t k = 0; k < p.index.size(); ++k)
        convert_to_f32(p.stored.data, p.stored.dtype, int64_t(p.index[k]) * C, C, dst + int64_t(k) * C);
    } else {
      const int64_t n = int64_t(p.index.size());
      for (int64_t r = 0; r < p.stored.rows; ++r)
        for (int64_t k = 0; k < n; ++k)
          dst[r * n + k] = load_as_f32(p.stored.data, p.stored.dtype, r * C + p.index[size_t(k)]);
    }
  }
  // Parameters without a checkpoint tensor: A uniform(-1/sqrt(K), 1/sqrt(K)) (PEFT) or normal(0, init_std), B = 0,
  // the head normal(0, 0.02) (transformers' initializer_range default for Llama / Mistral / Qwen2), its bias 0.
  for (const LoraAdapter& ad : L.adapters) {
    const Param& a = L.params[size_t(ad.a)];
    float* A = master + a.offset;
    for (int64_t i = 0; i < a.size; ++i)
      A[i] = ad.init_std > 0 ? lora_init_a_normal(seed, ad.layer, ad.role, i, ad.init_std) : lora_init_a(seed, ad.layer, ad.role, i, a.mcols);
    const Param& b = L.params[size_t(ad.b)];
    std::fill(master + b.offset, master + b.offset + b.size, 0.f);
  }
  if (L.head >= 0) {
    const Param& h = L.params[size_t(L.head)];
    const uint64_t key = rng_key(seed, kRngHeadInit, 0, 0, 0, 0);
    float* W = master + h.offset;
    for (int64_t i = 0; i < h.size; ++i) W[i] = seeded_normal(key, i, 0.02);
  }
  if (L.head_bias >= 0) {  // zeros, as transformers initialises a Linear's bias
    const Param& b = L.params[size_t(L.head_bias)];
    std::fill(master + b.offset, master + b.offset + b.size, 0.f);
  }
}

int32_t check_training_batch(const ModelConfig& cfg, const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs,
                             int64_t n_tokens) {
  using std::to_string;
  if (!tokens || !seq_lens) fail("tokens and seq_lens are required");
  if (n_seqs < 1 || n_tokens < 1) fail("the batch is empty");
  int64_t sum = 0;
  int32_t max_len = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    if (seq_lens[s] < 1) fail("sequence " + to_string(s) + " has length " + to_string(seq_lens[s]));
    if (seq_lens[s] > cfg.max_positions)
      fail("sequence " + to_string(s) + " of " + to_string(seq_lens[s]) + " tokens exceeds the model's context of " +
           to_string(cfg.max_positions));
    sum += seq_lens[s];
    max_len = std::max(max_len, seq_lens[s]);
  }
  if (sum != n_tokens) fail("seq_lens sum to " + to_string(sum) + " but there are " + to_string(n_tokens) + " tokens");
  for (int64_t t = 0; t < n_tokens; ++t)
    if (tokens[t] < 0 || tokens[t] >= cfg.vocab)
      fail("token id " + to_string(tokens[t]) + " at index " + to_string(t) + " is outside [0, " + to_string(cfg.vocab) + ")");
  return max_len;
}

int64_t count_training_targets(const ModelConfig& cfg, const int32_t* targets, int64_t n_tokens) {
  using std::to_string;
  int64_t count = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (targets[t] < -1 || targets[t] >= cfg.vocab)
      fail("target " + to_string(targets[t]) + " at index " + to_string(t) + " is outside the vocabulary (-1: none)");
    if (targets[t] >= 0) ++count;
  }
  return count;
}

int64_t count_training_labels(const int32_t* labels, int32_t n_seqs, int64_t num_labels) {
  using std::to_string;
  int64_t count = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    if (labels[s] < -1 || labels[s] >= num_labels)
      fail("label " + to_string(labels[s]) + " of sequence " + to_string(s) + " is outside [0, " +
           to_string(num_labels) + ") (-1: none)");
    count += labels[s] >= 0;
  }
  return count;
}

void check_arena_range(int64_t offset, int64_t n, int64_t size) {
  if (offset < 0 || n < 0 || offset > size || n > size - offset)
    throw std::out_of_range("trainer: arena range [" + std::to_string(offset) + ", +" + std::to_string(n) +
                            ") outside the " + std::to_string(size) + " trainable values");
}

void check_adamw_config(const AdamWConfig& c) {
  if (!(c.lr >= 0) || !(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1) || !(c.eps > 0) ||
      !(c.weight_decay >= 0) || !(c.clip >= 0))
    fail("bad AdamW settings (need lr >= 0, 0 <= betas < 1, eps > 0, weight_decay >= 0, clip >= 0)");
}

AdamWStep adamw_step_scalars(const AdamWConfig& c, double norm, int64_t t) {
  if (!std::isfinite(norm)) fail(std::string("the gradient is not finite (norm ") + (std::isnan(norm) ? "NaN" : "Infinity") + ")");
  AdamWStep s;
  s.clip_scale = c.clip > 0 && norm > c.clip ? float(c.clip / (norm + 1e-6)) : 1.f;
  const double bc1 = 1 - std::pow(double(c.beta1), double(t)), bc2 = 1 - std::pow(double(c.beta2), double(t));
  s.step_size = float(c.lr / bc1);
  s.bc2_sqrt = float(std::sqrt(bc2));
  s.decay = 1.f - c.lr * c.weight_decay;
  return s;
}

}  // namespace train
}  // namespace ln
