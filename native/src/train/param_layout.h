// The parameter table of a trainer, shared by the CPU trainer (train/trainer.h) and the CUDA trainer
// (cuda/cuda_trainer.cpp) so that one spec gives both the same Param list, the same arena offsets and the same
// initial master values (checkpoint values converted to float32, LoRA A from the seed, B = 0, the classification
// head from the seed).
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
// LlamaForSequenceClassification's score.weight, no bias) is one more dense parameter; with head_bias also its bias
// "score_bias" [C] (Mondal et al.'s head is a torch.nn.Linear, which has one).
// The master / grad / m / v arenas share one layout: a parameter's slice starts at Param::offset in all four.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

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
// Index in ParamLayout::params of a layer role (embed, final_norm, lm_head come first).
inline int layer_param_index(int layer, int role) { return 3 + layer * kLayerRoles + role; }

struct TrainableSpec {
  std::string role;  // "embed", "final_norm", "lm_head" (layer -1) or a layer role name
  int32_t layer = -1;
  ParamMode mode = ParamMode::Dense;
  std::vector<int32_t> index;  // Rows / Cols / Lora (masked B rows): strictly increasing, in range
  // Lora only (wq, wk, wv, wo, w_gate, w_up, w_down of a layer): rank r >= 1, alpha > 0, dropout in [0, 1).
  int32_t lora_r = 0;
  float lora_alpha = 0.f, lora_dropout = 0.f;
  // A's initial values: 0, PEFT's kaiming-uniform (uniform(-1/sqrt(K), 1/sqrt(K))); > 0, normal(0, std) (Mondal et
  // al.'s LoRALayer draws N(0, 0.01)).
  float lora_init_std = 0.f;
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
  // The head has a bias "score_bias" [num_labels] too (initialised to 0).
  bool head_bias = false;
  // Activation recomputation (the CUDA trainer only): the forward keeps only each layer's input, and the backward
  // runs each layer's forward again, from that input, just before its backward. The same gradients bit for bit
  // (the same kernels on the same inputs), one more forward of the layers a step, and activation memory of one
  // layer's instead of every layer's (Llama-3.1-8B at 4096 tokens, a 1% neurons mask: 2.6 GB instead of 15.4 GB).
  bool recompute = false;
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
  int lora = -1;                 // a frozen weight with an adapter: its index in ParamLayout::adapters
  bool trainable() const { return mode != ParamMode::Frozen; }
  bool learns() const { return trainable() || lora >= 0; }  // has a gradient of its own or through an adapter
};

// A LoRA adapter on params[base].
struct LoraAdapter {
  int base = -1, a = -1, b = -1;  // indices in params (A [r, K], B [N or n, r])
  int layer = 0, role = 0;
  int32_t r = 0;
  float scale = 0.f, dropout = 0.f;
  float init_std = 0.f;  // TrainableSpec::lora_init_std
};

struct BatchLoss {
  double sum = 0;     // sum of per-position cross-entropies
  int64_t count = 0;  // positions with a target
};

struct ParamLayout {
  std::vector<Param> params;  // embed, final_norm, lm_head, kLayerRoles per layer, LoRA A/B pairs, the head
  std::vector<LoraAdapter> adapters;
  int head = -1;           // params index of the classification head "score" (-1: none)
  int head_bias = -1;      // params index of its bias "score_bias" (-1: none)
  int lowest = 0;          // the lowest layer with a trainable parameter (-1: the embedding; n_layers: none)
  bool any_trainable = false;
  int64_t n_trainable = 0;  // floats in each arena

  // -1 if none (tied head: the embedding's index; "<role>.lora_A/B" of a layer: the adapter's matrices).
  int find(const ModelConfig& cfg, const std::string& role, int32_t layer) const;
};

// Validates the weights and the spec and lays the trainable values out. Throws std::invalid_argument ("trainer:
// ...") for a bad config / weights / spec (unknown role, a mode the tensor does not support, index out of range or
// not strictly increasing, a tensor given twice, bad LoRA settings, num_labels < 0).
ParamLayout build_param_layout(const ModelConfig& cfg, const ModelWeights& weights,
                               const std::vector<TrainableSpec>& spec, const TrainerOptions& options);

// The initial master values (n_trainable floats): checkpoint values converted to float32 (dense, selected rows /
// columns), LoRA A uniform(-1/sqrt(K), 1/sqrt(K)) (PEFT) or normal(0, lora_init_std) and B = 0, the head
// normal(0, 0.02), all from the seed.
void init_master_values(const ParamLayout& layout, uint64_t seed, float* master);

// AdamW (train/trainer.h AdamWConfig) for both trainers. check_adamw_config throws std::invalid_argument
// ("trainer: bad AdamW settings ...") unless lr >= 0, 0 <= betas < 1, eps > 0, weight_decay >= 0, clip >= 0.
// adamw_step_scalars gives the scalars of optimizer step t (1 for the first) from the gradient's global norm, as
// torch.optim.AdamW with clipping by global norm: clip_scale = clip / (norm + 1e-6) when clip > 0 and norm > clip,
// step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t) (double, rounded to float), decay = 1 - lr * wd;
// a non-finite norm throws ("the gradient is not finite") before anything changes. math::adamw_update applies them.
struct AdamWStep {
  float clip_scale, step_size, bc2_sqrt, decay;
};
void check_adamw_config(const AdamWConfig& c);
AdamWStep adamw_step_scalars(const AdamWConfig& c, double norm, int64_t t);

// Validates a packed training batch for either trainer (std::invalid_argument "trainer: ...", nothing touched:
// lengths >= 1 and within the model's context, summing to n_tokens, token ids in the vocabulary) and returns its
// longest sequence.
int32_t check_training_batch(const ModelConfig& cfg, const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs,
                             int64_t n_tokens);
// Validates the next-token targets of such a batch (non-null; each in the vocabulary, or -1 for none: the same
// std::invalid_argument) and returns how many there are.
int64_t count_training_targets(const ModelConfig& cfg, const int32_t* targets, int64_t n_tokens);
// The same for the class labels of a classification batch (one per sequence, each in [0, num_labels) or -1).
int64_t count_training_labels(const int32_t* labels, int32_t n_seqs, int64_t num_labels);
// Refuses (std::out_of_range "trainer: arena range ...") a range [offset, offset + n) of an arena of `size`
// trainable values that does not lie inside it: the check of both trainers' read / write.
void check_arena_range(int64_t offset, int64_t n, int64_t size);

}  // namespace train
}  // namespace ln
