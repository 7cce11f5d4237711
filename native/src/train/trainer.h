// The training path of the decoder on the CPU (llm.c style, separate from the inference runtime in
// native/src/model/): a forward that saves every activation the backward needs in one flat arena, a backward made
// of the per-layer pairs of train/layers.h, and AdamW over flat arenas of float32 master weights / gradients / moments
// that share one layout (train/param_layout.h: which parameters train, per tensor, and how they are laid out; the
// CUDA trainer uses the same table). Behind the training seam train/training_runtime.h.
// Weight gradients of Rows/Cols are computed for the selected rows/columns only (gather, one GEMM), never as a
// dense dW (unless TrainerOptions::dense_then_mask, the baseline that benchmarks/finetune measures). The backward
// stops below the lowest layer that holds a trainable parameter. The classification head: train/head.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "train/layers.h"
#include "train/param_layout.h"
#include "train/training_runtime.h"

namespace ln {
namespace train {

class Trainer final : public TrainingRuntime {
 public:
  // Throws std::invalid_argument for a bad config / weights / spec (train/param_layout.h build_param_layout), or
  // threads < 1.
  Trainer(const ModelConfig& cfg, const ModelWeights& w, int threads, const std::vector<TrainableSpec>& spec,
          const TrainerOptions& options = {});

  // TrainingRuntime (see training_runtime.h for the contract of each).
  BatchLoss forward_backward(const int32_t* tokens, const int32_t* targets, const int32_t* seq_lens, int32_t n_seqs,
                             int64_t n_tokens, double denominator, bool backward, int64_t dropout_step = -1,
                             int64_t dropout_micro = -1) override;
  BatchLoss forward_backward_cls(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens,
                                 const int32_t* labels, double denominator, bool backward, float* logits,
                                 int64_t dropout_step = -1, int64_t dropout_micro = -1) override;
  void zero_grad() override;
  void reset_optimizer() override;
  double grad_norm() override;
  double step(const AdamWConfig& cfg) override;
  int64_t step_count() const override { return t_; }
  void set_step_count(int64_t t) override { t_ = t; }
  const ParamLayout& layout() const override { return lay_; }
  const ModelConfig& config() const override { return cfg_; }
  const TrainerOptions& options() const override { return opt_; }
  void read(Arena arena, int64_t offset, int64_t n, float* host) override;
  void write(Arena arena, int64_t offset, int64_t n, const float* host) override;
  void read_weight(int param, float* host) override;
  int64_t activation_bytes() const override { return int64_t(acts_.size() + work_.size()) * 4; }
  TrainingMemory memory() const override;
  std::string device() const override { return "cpu"; }
  std::string describe() const override;

  // The host arenas themselves (the CPU tests read and poke them in place).
  float* master() { return master_.data(); }
  float* grad() { return grad_.data(); }
  float* adam_m() { return m_.data(); }
  float* adam_v() { return v_.data(); }

 private:
  struct Adapter : LoraAdapter {  // lay_.adapters[i] and where its forward saves what the backward needs
    float* h = nullptr;  // acts_: T x r, s * dropout(X) A^T of the last forward (what dB needs)
  };
  struct LayerActs {  // offsets into acts_ (null: the config has no such step)
    float *hin, *r1, *x1, *q, *k, *v, *lse, *att, *hmid, *r2, *x2, *g, *u, *a;
    float *m1, *m2;                // LayerNorm: row means of the two norms
    float *qpre, *kpre, *rq, *rk;  // qk_norm: q and k before their norms, per-head rstd
    float *o, *ro, *d, *rd;        // post_norms: o_proj / down_proj outputs and the rstd of their norms
  };
  Param& P(int layer, int role) { return lay_.params[size_t(pi(layer, role))]; }
  static int pi(int layer, int role) { return layer_param_index(layer, role); }
  Param& embed() { return lay_.params[0]; }
  Param& final_norm() { return lay_.params[1]; }
  Param& head() { return cfg_.tie_embeddings ? lay_.params[0] : lay_.params[2]; }
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
  void lora_dropout(const Adapter& ad, int64_t M, const float* X, float* Xd, bool accumulate);
  void lora_forward(Adapter& ad, int64_t M, const float* X, float* Y);
  void lora_backward(Adapter& ad, int64_t M, const float* X, const float* dY, float* dX);
  // The forward through the final norm (xf_) and the backward from dxf_ down, shared by both losses.
  int32_t check_batch(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens);
  void forward_layers(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t T, int32_t max_len);
  void backward_layers(const int32_t* tokens, int64_t T);
  void set_dropout(bool backward, int64_t step, int64_t micro);

  float* arena(Arena a);

  ModelConfig cfg_;
  ThreadPool pool_;
  ParamLayout lay_;  // the parameter table (params: embed, final_norm, lm_head, then kLayerRoles per layer, ...)
  std::vector<float> master_, grad_, m_, v_;
  std::vector<Adapter> loras_;  // lay_.adapters with their saved activations
  int64_t t_ = 0;
  int64_t micro_ = 0;  // backward passes since zero_grad (the default micro-batch of the dropout masks)
  bool dropout_on_ = false;
  int64_t drop_step_ = 0, drop_micro_ = 0;
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
