// The CUDA trainer (train/training_runtime.h make_cuda_trainer): the CUDA runtime's model (cuda/cuda_model.h)
// trained in place.
//
// - Forward: CudaRuntime::forward_train, the runtime's own layer loop with a save hook that keeps, per layer at or
//   above the lowest trainable one, what the backward needs (LayerSave) in one activation arena sized once per
//   batch shape; then the final norm and the LM head in chunks of rows with the cross-entropy (never tokens x
//   vocab at once), or the classification head.
// - Backward: train_kernels.h and cuda::Gemm::run_dx / run_dw, layer by layer down to the lowest trainable layer,
//   following train/trainer.cpp backward_layers. Weight gradients of rows / cols parameters are computed for the
//   selected features only (the selected columns of dY, or of X gathered by the forward, then one GEMM into the
//   master-shaped gradient); dense and sparse ones alike with the GEMM dtype's operands (bf16 in the bf16 mode).
// - What the forward keeps for layer l's backward is what that backward reads given what trains (LayerNeeds): a
//   `neurons` mask keeps neither the q/k/v input nor the attention output, and of w_down's input only the masked
//   columns.
// - State: float32 master / grad / m / v arenas on the device for the trainable values only, laid out by
//   train/param_layout.h as on the CPU. After each step (and each write of the master arena) write_master
//   refreshes the device weights the forward reads (bf16 or float32, dense / rows / cols), so nothing outside the
//   mask is ever written.
// - LoRA / neuron-LoRA: the runtime's linear hook (cuda_model.h LinearHook) adds s dropout(X) A^T B^T (B masked:
//   scattered into its rows' output features) after each adapted product, with the CPU trainer's dropout masks;
//   the backward follows train/lora.cpp lora_backward.
// Every family the runtime runs is trained (docs/CUDA.md, "The families").
//
// This header declares the trainer for its two source files: cuda_trainer.cpp (set-up, the trainable state and
// AdamW, the forward and the loss heads) and cuda_trainer_backward.cpp (weight gradients, the layers' backward,
// LoRA's backward).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/oom.h"
#include "cuda/cuda_model.h"
#include "cuda/cuda_support.h"
#include "cuda/train_kernels.h"
#include "cuda/trainer_scale.h"
#include "train/lora.h"
#include "train/cls_head.h"
#include "train/param_layout.h"
#include "train/token_groups.h"
#include "train/training_runtime.h"

namespace ln {
namespace train {

class CudaTrainer final : public TrainingRuntime, public cuda_model::LinearHook {
 public:
  CudaTrainer(const ModelConfig& cfg, const ModelWeights& w, int device, Compute compute,
              const std::vector<TrainableSpec>& spec, const TrainerOptions& options);
  ~CudaTrainer() override;

  BatchLoss forward_backward(const int32_t* tokens, const int32_t* targets, const int32_t* seq_lens, int32_t n_seqs,
                             int64_t n_tokens, double denominator, bool backward, int64_t dropout_step,
                             int64_t dropout_micro) override;
  BatchLoss forward_backward_cls(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens,
                                 const int32_t* labels, double denominator, bool backward, float* logits,
                                 int64_t dropout_step, int64_t dropout_micro) override;
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
  int64_t activation_bytes() const override { return int64_t(acts_.bytes()); }
  TrainingMemory memory() const override;
  void clock_steps(bool on) override;
  std::vector<StepTime> step_times() const override;
  std::string device() const override { return "cuda:" + std::to_string(device_); }
  std::string describe() const override;
  void after_linear(int l, int role, const void* X, float* Y, int64_t ldy) override;  // LoRA forward

 private:
  [[noreturn]] static void fail(const std::string& m) { throw std::invalid_argument("trainer: " + m); }
  static constexpr int64_t kLmChunk = 256;  // LM-head rows per chunk (bounds the chunk x vocab logits buffer)
  struct DevWeight {  // where the forward reads a parameter's tensor
    void* w = nullptr;
    DType dtype = DType::F32;
    void* tied_copy = nullptr;  // the LM head's own copy of a tied embedding (another dtype), refreshed with it
    float add = 0.f;  // the forward reads add + w: 1 for Gemma's norms, whose (1 + w) the runtime holds
  };
  // The norm of the model (RMSNorm or Cohere's LayerNorm) backward, as train/trainer.cpp norm_backward (the
  // gradient of 1 + w is that of w).
  void norm_backward(int64_t T, const float* x, const float* w, const float* dy, float* dx, bool accumulate,
                     float* dw);
  Param& P(int layer, int role) { return lay_.params[size_t(layer_param_index(layer, role))]; }
  float* arena_ptr(Arena a) const;
  float* grad_of(const Param& p) const { return p.trainable() ? grad_.as<float>() + p.offset : nullptr; }
  const int32_t* index_of(int param) const { return index_.as<int32_t>() + index_off_[size_t(param)]; }
  void refresh_weight(int param);
  int32_t check_batch(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens);
  void ensure(int64_t T);
  void forward(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t T);
  // What layer l's backward reads, given what trains (also what the forward keeps for it, and with recompute what the
  // layer's recomputed forward writes): the attention half's backward at all, and each kept tensor.
  struct LayerNeeds {
    bool attn = false;  // the attention half's backward runs (a gradient is needed below it or in it)
    bool dx1 = false;   // d(the attention's normed input): the attention norm's backward
    bool dx2 = false;   // d(the FFN's normed input)
    bool hin = false, x1 = false, attg = false, hmid = false, x2 = false, act = false;  // LayerSave's members
  };
  LayerNeeds needs(int l) const;
  // LayerSave's members, and which of them a layer with needs n keeps: one definition for the activation plan
  // (ensure) and for the mask of the recomputed layer (layer_saves). Offsets into acts_ (kNoSave: not kept).
  enum SaveMember {
    kHin, kX1, kQ, kK, kV, kAtt, kLse, kAttg, kHmid, kX2, kGu, kAct, kQkPre, kOPre, kDownPre, kMembers
  };
  using SaveMembers = std::array<bool, kMembers>;
  using SaveOffsets = std::array<size_t, kMembers>;
  static constexpr size_t kNoSave = ~size_t(0);
  SaveMembers kept_members(const LayerNeeds& n) const;
  cuda_model::LayerSave save_at(const SaveOffsets& o) const;  // the members' pointers (null where not kept)
  // The forward gathers the selected input columns of a layer's Cols weight (after_linear) instead of keeping its
  // whole input (dense_then_mask reads the whole input; the LM head's input is kept whole anyway).
  bool gathers_input(const Param& p) const {
    return p.mode == ParamMode::Cols && p.layer >= 0 && !opt_.dense_then_mask;
  }
  // Row stride of the selected features of a sparse gradient's operands: n padded to 16 bytes of bf16 (cuBLASLt's
  // tensor-core algorithms need 16-byte aligned rows).
  static int64_t sel_ld(int64_t n) { return (n + 7) / 8 * 8; }
  // The forward's linear hook: the trainer when it has adapters or gathers an input, else none.
  cuda_model::LinearHook* linear_hook() { return lay_.adapters.empty() && !any_gather_ ? nullptr : this; }
  // dY (T x N floats, row stride lddy) in the GEMM dtype: g_ scratch (bf16 mode) or dY itself.
  const void* to_gemm(const float* dY, int64_t M, int64_t N, int64_t lddy, void* scratch);
  // X (M x K, the GEMM dtype, row stride ldx) as float32: itself (f32 mode) or conv_ scratch.
  const float* to_f32(const void* X, int64_t M, int64_t K);
  // grad(p) += the weight gradient of Y = X W^T for p's mode (dense / rows / cols; nothing when frozen). dYg: dY in
  // the GEMM dtype (to_gemm keeps dY's row stride); Xg: the whole input as kept (null where only its selected
  // columns were: gathers_input).
  void weight_grad(int param, int64_t M, const void* dYg, int64_t lddyg, const void* Xg, int64_t ldx);
  void backward_layers(const int32_t* tokens, int64_t T);
  // What layer l's backward reads: kept by the forward, or with recompute made now, by the layer's forward run again
  // from its kept input into the one shared set.
  const cuda_model::LayerSave& layer_saves(int l);
  // The work since the previous mark was `done` (clock_steps; a no-op without a clock).
  void tick(cuda::PhaseClock::Phase done) {
    if (clock_) clock_->mark(done, s_);
  }
  // The adapter on layer l's role, if any (-1).
  int adapter_at(int l, int role) const { return lay_.params[size_t(layer_param_index(l, role))].lora; }
  // LoRA backward (train/lora.cpp): G = dY (its rows' columns for a masked B), X the forward's input (GEMM dtype):
  //   dB += G^T H,  dH = s G B,  dA += dH^T Xd,  dX += dropout'(dH A)   (dX null: not needed).
  void lora_backward(int adapter, const float* dY, int64_t lddy, const void* Xg, float* dX, int64_t lddx);
  void set_dropout(bool on, int64_t step, int64_t micro) {
    dropout_on_ = on;
    drop_step_ = step >= 0 ? step : t_;
    drop_micro_ = micro >= 0 ? micro : micro_;
  }
  uint64_t dropout_key(const LoraAdapter& ad) const {
    return lora_dropout_key(opt_.seed, drop_step_, drop_micro_, ad.layer, ad.role);
  }

  ModelConfig cfg_;
  TrainerOptions opt_;
  ParamLayout lay_;
  int device_;
  Compute compute_;
  std::unique_ptr<cuda_model::CudaRuntime> rt_;
  bool bf16_;
  DType gdt_;     // GEMM operand dtype
  size_t ge_;     // its bytes
  cuda::Stream s_ = nullptr;
  std::unique_ptr<cuda::PhaseClock> clock_;  // clock_steps(true), shared with rt_'s forward

  cuda::DeviceBuffer master_, grad_, m_, v_, index_;
  std::vector<int64_t> index_off_;
  std::vector<DevWeight> dev_w_;
  int64_t t_ = 0, micro_ = 0;
  bool dropout_on_ = false;
  int64_t drop_step_ = 0, drop_micro_ = 0, cur_T_ = 0;

  // Activations (sized once per batch shape, grow-only) and backward work buffers.
  int64_t cap_T_ = 0;
  cuda::DeviceBuffer acts_, work_, plan_;
  std::vector<cuda_model::LayerSave> saves_;  // per layer (with recompute: the input only)
  std::vector<void*> x_sel_;  // per param: [T, sel_ld(n)] its input's selected columns (gathers_input), GEMM dtype
  bool any_gather_ = false;
  SaveOffsets shared_offsets_{};                     // recompute: the one full set (no input)
  cuda_model::LayerSave recomputed_;                 // recompute: the shared set as layer l keeps it, and its input
  std::vector<cuda_model::LayerSave> recompute_saves_;  // recompute: all empty but the layer being recomputed
  float* xf_ = nullptr;   // [T, H] final-normed states, float32
  void* xfg_ = nullptr;   // the same in the GEMM dtype
  float* dpost_ = nullptr;    // gemma2: [T, H] d(a projection's output) through its post-norm
  float* capped_ = nullptr;   // gemma2: [kLmChunk, V] the soft-capped logits of a chunk (their gradient needs them)
  float *dh_ = nullptr, *dx_ = nullptr, *datt_ = nullptr, *dqkv_ = nullptr, *da_ = nullptr, *dgu_ = nullptr,
        *dxf_ = nullptr, *chunk_ = nullptr, *sel_ = nullptr, *sel2_ = nullptr, *conv_ = nullptr, *dw_sel_ = nullptr,
        *dense_dw_ = nullptr, *partials_ = nullptr, *d_rows_ = nullptr;
  void *g_ = nullptr, *chunk_g_ = nullptr;
  std::vector<float*> lora_h_;  // per adapter: [T, r] s * dropout(X) A^T of the last forward (what dB needs)
  float *lora_x_ = nullptr, *lora_dh_ = nullptr;  // [T, max K] dropped-out input / its gradient, [T, max r]
  double *row_loss_ = nullptr, *sq_partials_ = nullptr, *sq_out_ = nullptr;
  int32_t* targets_dev_ = nullptr;
  int64_t* seq_row0_ = nullptr;
  int32_t* seq_len_ = nullptr;
  int64_t* order_ = nullptr;
  int32_t* group_token_ = nullptr;
  int64_t* group_start_ = nullptr;
  std::vector<int64_t> seq_row0_host_;
  std::vector<int32_t> seq_len_host_;
  std::vector<double> row_loss_host_;
  std::vector<float> host_w_, host_g_, host_x_, cls_logits_;
  TokenGroups groups_;
};

}  // namespace train
}  // namespace ln
