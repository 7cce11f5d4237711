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

enum class ParamMode : int32_t { Frozen = 0, Dense = 1, Rows = 2, Cols = 3 };

// Roles inside a layer, in arena order.
enum LayerRole : int { kAttnNorm, kWq, kWk, kWv, kWo, kBq, kBk, kBv, kFfnNorm, kWGate, kWUp, kWDown, kLayerRoles };
const char* layer_role_name(int r);  // "attn_norm", "wq", ... (the binding's role names)

struct TrainableSpec {
  std::string role;  // "embed", "final_norm", "lm_head" (layer -1) or a layer role name
  int32_t layer = -1;
  ParamMode mode = ParamMode::Dense;
  std::vector<int32_t> index;  // Rows / Cols: strictly increasing, in range
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
  bool trainable() const { return mode != ParamMode::Frozen; }
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
                             int64_t n_tokens, double denominator, bool backward);

  void zero_grad();
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

 private:
  struct LayerActs {  // offsets into acts_
    float *hin, *r1, *x1, *q, *k, *v, *lse, *att, *hmid, *r2, *x2, *g, *u, *a;
  };
  Param& P(int layer, int role) { return params_[size_t(3 + layer * kLayerRoles + role)]; }
  Param& embed() { return params_[0]; }
  Param& final_norm() { return params_[1]; }
  Param& head() { return cfg_.tie_embeddings ? params_[0] : params_[2]; }
  const float* vec_of(const Param& p) const { return p.trainable() ? master_.data() + p.offset : p.vec.data(); }
  WeightRef master_ref(const Param& p) const;
  void ensure(int64_t T, int32_t max_len);
  void linear_forward(const Param& p, int64_t M, const float* X, float* Y, bool accumulate);
  void linear_backward(const Param& p, int64_t M, const float* X, float* dY, float* dX);
  void bias_backward(const Param& p, int64_t M, const float* dY);

  ModelConfig cfg_;
  ThreadPool pool_;
  std::vector<Param> params_;  // embed, final_norm, lm_head, then kLayerRoles per layer
  std::vector<float> master_, grad_, m_, v_;
  int64_t t_ = 0;
  int lowest_ = 0;
  bool any_trainable_ = false;
  TrainerOptions opt_;
  std::vector<float> dense_dw_;  // dense_then_mask: the full dW of one Rows / Cols weight
  std::vector<float> inv_freq_, cos_, sin_;
  int64_t rope_positions_ = 0;

  // Activation arena (sized for cap_T_ tokens) and backward work buffers.
  int64_t cap_T_ = 0;
  int32_t cap_len_ = 0;
  std::vector<float> acts_, work_;
  std::vector<LayerActs> la_;
  float *hfin_ = nullptr, *rf_ = nullptr, *xf_ = nullptr;
  float *dh_, *dx_, *dtmp_, *dq_, *dk_, *dv_, *datt_, *dg_, *du_, *da_, *dxf_;
  float *sel_, *mask_, *gscratch_, *attn_scratch_, *chunk_, *xc_, *dxc_;
  std::vector<double> row_loss_;
  std::vector<int32_t> pos_, lm_rows_, lm_targets_;
  std::vector<SeqSpan> seqs_;
};

}  // namespace train
}  // namespace ln
