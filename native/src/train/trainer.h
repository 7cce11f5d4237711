// The training path of the decoder (llm.c style, separate from the inference runtime in native/src/model/):
// a forward that saves every activation the backward needs in one flat arena, a backward made of the per-layer
// pairs of train/layers.h, and AdamW over flat arenas of float32 master weights / gradients / moments that share
// one layout (a parameter's slice starts at the same offset in all four).
//
// Which parameters train is chosen per tensor:
//   Frozen: read from the checkpoint in its stored dtype (memory-mapped), no gradient, no optimizer state;
//   Dense:  a float32 master copy of the whole tensor;
//   Rows:   only rows `index` of W [N, K] (output features: e.g. neuron j of gate_proj / up_proj) get a master
//           copy [n, K]; the forward overwrites those output columns with X master^T;
//   Cols:   only columns `index` of W (input features: e.g. neuron j of down_proj) get a master copy [N, n]; the
//           forward is X_masked W^T + X[:, index] master^T (X_masked = X with those columns zeroed).
//   Lora:   W stays frozen in its stored dtype and gets a LoRA adapter (train/lora.h): Y = X W^T + s dropout(X) A^T B^T,
//           s = alpha / r; A [r, K] and B [N, r] are two more parameters (roles "<role>.lora_A" / "<role>.lora_B",
//           modes LoraA / LoraB) in the same arenas. With `index`, B is masked: only its rows `index` exist
//           (B_sel [n, r], the LoRA output scattered into those output features), so it is sparse by construction.
// With TrainerOptions::num_labels = C > 0 a classification head "score" [C, hidden] (Hugging Face
// LlamaForSequenceClassification's score.weight, no bias) is one more dense parameter: forward_backward_cls reads the
// final-normed hidden state of each sequence's last position (train/head.cpp).
// Weight gradients of Rows/Cols are computed for the selected rows/columns only (gather, one GEMM), never as a
// dense dW (unless TrainerOptions::dense_then_mask, the baseline that benchmarks/finetune measures). The backward
// stops below the lowest layer that holds a trainable parameter.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "train/layers.h"

namespace ln {
namespace train {

enum class ParamMode : int32_t { Frozen = 0, Dense = 1, Rows = 2, Cols = 3, Lora = 4, LoraA = 5, LoraB = 6 };

// Roles inside a layer, in arena order. A role the config does not have (biases without qkv_bias, q/k norms without
// qk_norm, post-norms without post_norms, ffn_norm with parallel_block) has no tensor and is never trainable.
enum LayerRole : int {
  kAttnNorm, kWq, kWk, kWv, kWo, kBq, kBk, kBv, kFfnNorm, kWGate, kWUp, kWDown,
  kQNorm, kKNorm, kAttnPostNorm, kFfnPostNorm, kLayerRoles
};
const char* layer_role_name(int r);  // "attn_norm", "wq", ... (the binding's role names)

struct TrainableSpec {
  std::string role;  // "embed", "final_norm", "lm_head" (layer -1) or a layer role name
  int32_t layer = -1;
  ParamMode mode = ParamMode::Dense;
  std::vector<int32_t> index;  // Rows / Cols / Lora (masked B rows): strictly increasing, in range
  // Lora only (wq, wk, wv, wo, w_gate, w_up, w_down of a layer): rank r >= 1, alpha > 0, dropout in [0, 1).
  int32_t lora_r = 0;
  float lora_alpha = 0.f, lora_dropout = 0.f;
};

struct AdamWConfig {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  float clip = 0.f;  // max global gradient norm (0: no clipping)
};

struct TrainerOptions {
  // Rows / Cols weights compute the full dense dW [N, K] (one GEMM over every output/input feature, into a scratch
  // buffer) and then keep only the selected rows / columns: what a reference implementation that masks a dense
  // gradient does. Same updates as the default (gather first, then a GEMM of the selected features only), slower;
  // only for measuring that difference. Optimizer state stays sparse in both.
  bool dense_then_mask = false;
  // Seed of the LoRA A initialisation, the LoRA dropout masks and the classification head's initialisation.
  uint64_t seed = 0;
  // Classes of a classification head "score" [num_labels, hidden] (0: none).
  int32_t num_labels = 0;
};

struct Param {
  std::string role;
  int32_t layer = -1;
  WeightRef stored;  // the checkpoint tensor (1-D: cols = 1); empty for an absent bias / tied head
  ParamMode mode = ParamMode::Frozen;
  std::vector<int32_t> index;
  int64_t offset = 0;  // in the master / grad / m / v arenas
  int64_t size = 0;    // trainable floats (0: frozen)
  int64_t mrows = 0, mcols = 0;  // shape of the master slice
  std::vector<float> vec;        // frozen 1-D tensors as float32 (norm weights, biases)
  int lora = -1;                 // a frozen weight with an adapter: its index in the trainer's adapter list
  bool trainable() const { return mode != ParamMode::Frozen; }
  bool learns() const { return trainable() || lora >= 0; }  // has a gradient of its own or through an adapter
};

struct BatchLoss {
  double sum = 0;     // sum of per-position cross-entropies
  int64_t count = 0;  // positions with a target
};

class Trainer {
 public:
  // Throws std::invalid_argument for a bad config / weights / spec (unknown role, a mode the tensor does not
  // support, index out of range or not strictly increasing, a tensor given twice), or threads < 1.
  Trainer(const ModelConfig& cfg, const ModelWeights& w, int threads, const std::vector<TrainableSpec>& spec,
          const TrainerOptions& options = {});

  const ModelConfig& config() const { return cfg_; }
  const TrainerOptions& options() const { return opt_; }

  // Forward (and with `backward`, backward) over a packed batch: tokens of n_seqs sequences back to back, one
  // target per token (-1: no loss at that position). The loss is sum CE / denominator (denominator <= 0: this
  // batch's target count), and gradients of that loss ACCUMULATE into the grad arena (gradient accumulation:
  // pass the total target count of all micro-batches). Validates everything first (std::invalid_argument).
  BatchLoss forward_backward(const int32_t* tokens, const int32_t* targets, const int32_t* seq_lens, int32_t n_seqs,
                             int64_t n_tokens, double denominator, bool backward, int64_t dropout_step = -1,
                             int64_t dropout_micro = -1);
  // The same with the classification head: one label per sequence (-1: none), loss = sum CE(score(h_last), label) /
  // denominator, where h_last is the final-normed hidden state of the sequence's last token. Writes the class
  // logits [n_seqs, num_labels] to `logits` when it is not null (also for unlabelled sequences and without
  // `backward`). Throws std::invalid_argument without a head or for a bad label.
  BatchLoss forward_backward_cls(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens,
                                 const int32_t* labels, double denominator, bool backward, float* logits,
                                 int64_t dropout_step = -1, int64_t dropout_micro = -1);
  // LoRA dropout is active only in forwards with `backward` (never in validation). Its masks are a function of
  // (seed, step, micro-batch, layer, role, token row, feature): dropout_step / dropout_micro default to the
  // optimizer step count and the number of backward passes since zero_grad().

  void zero_grad();  // also restarts the micro-batch count of the dropout masks
  void reset_optimizer();  // Adam moments and the step count to zero (what re-creating the optimizer does)
  double grad_norm();  // global L2 norm of the grad arena
  // AdamW with bias correction and decoupled weight decay, after clipping the global grad norm to cfg.clip.
  // Returns the norm before clipping. Does not zero the gradients.
  double step(const AdamWConfig& cfg);
  int64_t step_count() const { return t_; }
  void set_step_count(int64_t t) { t_ = t; }

  int64_t n_trainable() const { return int64_t(master_.size()); }
  int n_params() const { return int(params_.size()); }
  const Param& param(int i) const { return params_[size_t(i)]; }
  int find(const std::string& role, int32_t layer) const;  // -1 if none (tied head: the embedding's index)
  float* master() { return master_.data(); }
  float* grad() { return grad_.data(); }
  float* adam_m() { return m_.data(); }
  float* adam_v() { return v_.data(); }
  int lowest_layer() const { return lowest_; }  // backward runs down to this layer (-1: to the embedding)
  int64_t activation_bytes() const { return int64_t(acts_.size() + work_.size()) * 4; }
  int32_t num_labels() const { return opt_.num_labels; }
  int n_adapters() const { return int(loras_.size()); }

 private:
  struct Adapter {   // a LoRA adapter on params_[base]
    int base = -1, a = -1, b = -1;  // indices in params_ (A [r, K], B [N or n, r])
    int layer = 0, role = 0;
    int32_t r = 0;
    float scale = 0.f, dropout = 0.f;
    float* h = nullptr;  // acts_: T x r, s * dropout(X) A^T of the last forward (what dB needs)
  };
  struct LayerActs {  // offsets into acts_ (null: the config has no such step)
    float *hin, *r1, *x1, *q, *k, *v, *lse, *att, *hmid, *r2, *x2, *g, *u, *a;
    float *m1, *m2;                // LayerNorm: row means of the two norms
    float *qpre, *kpre, *rq, *rk;  // qk_norm: q and k before their norms, per-head rstd
    float *o, *ro, *d, *rd;        // post_norms: o_proj / down_proj outputs and the rstd of their norms
  };
  Param& P(int layer, int role) { return params_[size_t(pi(layer, role))]; }
  static int pi(int layer, int role) { return 3 + layer * kLayerRoles + role; }
  Param& embed() { return params_[0]; }
  Param& final_norm() { return params_[1]; }
  Param& head() { return cfg_.tie_embeddings ? params_[0] : params_[2]; }
  const float* vec_of(const Param& p) const { return p.trainable() ? master_.data() + p.offset : p.vec.data(); }
  // A model norm's weight as the norm multiplies it: (1 + w) for Gemma (refreshed by refresh_norms), else vec_of.
  const float* norm_w(int param) const;
  void refresh_norms();
  // y = norm(x) / its backward with the config's norm type (mean null for RMS norms).
  void norm_forward(int param, int64_t T, const float* x, float* y, float* mean, float* rstd);
  void norm_backward(int param, int64_t T, const float* x, const float* mean, const float* rstd, const float* dy,
                     float* dx, bool accumulate);
  AttnShape attn_shape(int layer) const;
  WeightRef master_ref(const Param& p) const;
  void ensure(int64_t T, int32_t max_len);
  void linear_forward(const Param& p, int64_t M, const float* X, float* Y, bool accumulate);
  void linear_backward(const Param& p, int64_t M, const float* X, float* dY, float* dX);
  void bias_backward(const Param& p, int64_t M, const float* dY);
  // train/lora.cpp
  void add_lora_params(const std::vector<TrainableSpec>& spec);
  void init_extra_params();
  void lora_dropout(const Adapter& ad, int64_t M, const float* X, float* Xd, bool accumulate);
  void lora_forward(Adapter& ad, int64_t M, const float* X, float* Y);
  void lora_backward(Adapter& ad, int64_t M, const float* X, const float* dY, float* dX);
  // The forward through the final norm (xf_) and the backward from dxf_ down, shared by both losses.
  int32_t check_batch(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens);
  void forward_layers(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t T, int32_t max_len);
  void backward_layers(const int32_t* tokens, int64_t T);
  void set_dropout(bool backward, int64_t step, int64_t micro);

  ModelConfig cfg_;
  ThreadPool pool_;
  std::vector<Param> params_;  // embed, final_norm, lm_head, then kLayerRoles per layer
  std::vector<float> master_, grad_, m_, v_;
  std::vector<Adapter> loras_;
  int head_ = -1;  // params_ index of the classification head
  int64_t t_ = 0;
  int64_t micro_ = 0;  // backward passes since zero_grad (the default micro-batch of the dropout masks)
  bool dropout_on_ = false;
  int64_t drop_step_ = 0, drop_micro_ = 0;
  int lowest_ = 0;
  bool any_trainable_ = false;
  TrainerOptions opt_;
  std::vector<float> dense_dw_;  // dense_then_mask: the full dW of one Rows / Cols weight
  std::vector<float> inv_freq_, cos_, sin_;
  std::vector<std::vector<float>> onep_;  // per parameter index: (1 + w) of Gemma's norms (empty otherwise)
  int64_t rope_positions_ = 0;

  // Activation arena (sized for cap_T_ tokens) and backward work buffers.
  int64_t cap_T_ = 0;
  int32_t cap_len_ = 0;
  std::vector<float> acts_, work_;
  std::vector<LayerActs> la_;
  float *hfin_ = nullptr, *rf_ = nullptr, *xf_ = nullptr;
  float *dh_, *dx_, *dtmp_, *dq_, *dk_, *dv_, *datt_, *dg_, *du_, *da_, *dxf_;
  float *sel_, *mask_, *gscratch_, *attn_scratch_, *chunk_, *xc_, *dxc_;
  float *lora_x_ = nullptr, *lora_dh_ = nullptr;  // LoRA: T x max K (dropped-out input / its gradient), T x max r
  float *mf_ = nullptr;                            // LayerNorm: row means of the final norm
  float *dqk_ = nullptr;                           // qk_norm: T x max(qd, kvd), gradient before the q/k norms
  float *dx1p_ = nullptr;                          // parallel_block: T x H, the FFN's share of d(x1)
  float *capped_ = nullptr;                        // final soft-capping: kLmChunk x V capped logits
  std::vector<float> cls_logits_;                  // n_seqs x num_labels of the last classification batch
  std::vector<double> row_loss_;
  std::vector<int32_t> pos_, lm_rows_, lm_targets_;
  std::vector<SeqSpan> seqs_;
};

}  // namespace train
}  // namespace ln
