// The CUDA runtime's model (cuda_runtime.cpp): the weights arena, the device KV cache and the layer loop, declared
// here so that the CUDA trainer (cuda_trainer.cpp) drives the same forward — the runtime's layers, with a save hook
// that keeps what the backward needs — instead of a second copy of the model. Internal to native/src/cuda.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/oom.h"
#include "cuda/cublaslt.h"
#include "cuda/device_buffer.h"
#include "cuda/phase_clock.h"
#include "cuda/plans.h"
#include "cuda/recording.h"
#include "cuda/runtime_kernels.h"
#include "cuda/site_kernels.h"
#include "model/intervention.h"
#include "runtime/cuda_runtime.h"
#include "runtime/request.h"

namespace ln {
namespace train {
class CudaTrainer;
}
namespace cuda_model {

using cuda::DeviceBuffer;
using cuda::Stream;

constexpr int64_t kLmChunkRows = 256;  // LM head rows per GEMM when logits are not all needed at once

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// ---- device KV cache -------------------------------------------------------------------------------------------

// Per layer: K for every (slot, position) row [n_slots * capacity][kv_width], then V the same; bf16 in the bf16
// mode (the values are bf16-rounded there, so this is exact), float32 in the f32 mode.
class CudaKvCache final : public KvCache {
 public:
  CudaKvCache(const ModelConfig& c, int32_t n_slots, int32_t capacity, bool bf16, int device, const void* owner,
              std::shared_ptr<std::atomic<int64_t>> live)
      : KvCache(c, n_slots, capacity), elem_(bf16 ? 2 : 4), device_(device), owner_(owner), live_(std::move(live)) {
    layer_bytes_ = size_t(n_slots) * size_t(capacity) * size_t(kv_width()) * elem_;
    bytes_ = 2 * layer_bytes_ * size_t(n_layers());
    cuda::set_device(device_);
    base_ = allocating("the KV cache for " + std::to_string(n_slots) + " sequence(s) x " + std::to_string(capacity) +
                           " tokens on cuda:" + std::to_string(device),
                       double(bytes_), [&] { return static_cast<char*>(cuda::device_alloc(bytes_)); },
                       "fewer sequences at once, or fewer tokens per sequence");
    *live_ += int64_t(bytes_);
  }
  ~CudaKvCache() override {
    try {
      cuda::set_device(device_);  // the cache's device, not whichever another model made current since
    } catch (...) {
    }
    cuda::device_free(base_);
    *live_ -= int64_t(bytes_);
  }
  int64_t bytes() const override { return int64_t(bytes_); }
  void* k(int l) const { return base_ + size_t(2 * l) * layer_bytes_; }
  void* v(int l) const { return base_ + size_t(2 * l + 1) * layer_bytes_; }
  const void* owner() const { return owner_; }

 private:
  void copy_positions(int32_t src, int32_t dst, int32_t len) override {
    cuda::set_device(device_);
    const size_t row = size_t(kv_width()) * elem_, slot = size_t(capacity()) * row;
    for (int l = 0; l < n_layers(); ++l)
      for (char* base : {static_cast<char*>(k(l)), static_cast<char*>(v(l))})
        cuda::copy_device(base + size_t(dst) * slot, base + size_t(src) * slot, size_t(len) * row, nullptr);
    cuda::synchronize(nullptr);
  }
  size_t elem_, layer_bytes_ = 0, bytes_ = 0;
  int device_;
  const void* owner_;
  std::shared_ptr<std::atomic<int64_t>> live_;
  char* base_ = nullptr;
};

// ---- weights -----------------------------------------------------------------------------------------------------

struct DevLayer {
  const void* wqkv = nullptr;  // [qd + 2 kvd][hidden]
  const void* wo = nullptr;    // [hidden][qd]
  const void* wgu = nullptr;   // [2 I][hidden]: gate rows, then up rows
  const void* wdown = nullptr; // [hidden][I]
  const float* attn_norm = nullptr;  // the norms' weights as they multiply: 1 + w for Gemma's (1 + w) RMSNorm
  const float* ffn_norm = nullptr;   // null with cohere's parallel block
  const float* bqkv = nullptr;  // qwen2: [qd + 2 kvd]
  const float* q_norm = nullptr;  // qwen3: [head_dim] each
  const float* k_norm = nullptr;
  const float* attn_post_norm = nullptr;  // gemma2: [hidden] each
  const float* ffn_post_norm = nullptr;
};

// What one layer of the training forward keeps for its backward (device pointers into the trainer's activation
// arena; "g" = the GEMM dtype: bf16 in the bf16 mode, float32 in the f32 mode; "a" = the attention's dtype: bf16
// when the attention runs on tensor cores (CudaRuntime::tensor_core_attention), else float32). Null members are not
// kept.
struct LayerSave {
  float* hin = nullptr;   // [T, H] the layer's input (the attention norm's x)
  void* x1 = nullptr;     // [T, H] g: the normed input of q/k/v
  void* q = nullptr;      // [T, qd] a: q after bias and RoPE, as attention read it
  void* k = nullptr;      // [T, kvd] a
  void* v = nullptr;      // [T, kvd] a
  void* att = nullptr;    // [T, qd] a: the attention output (attention_forward_lse without tensor cores)
  float* lse = nullptr;   // [T, n_heads] its log-sum-exp
  void* attg = nullptr;   // [T, qd] g: the attention output wo read (may be att itself: then nothing is copied twice)
  float* hmid = nullptr;  // [T, H] the residual after attention (the FFN norm's x)
  void* x2 = nullptr;     // [T, H] g: the normed input of gate/up
  void* gu = nullptr;     // [T, 2I] g: gate and up before the activation (bf16-rounded in the bf16 mode)
  void* act = nullptr;    // [T, I] g: silu(gate) * up, what w_down read
  float* qk_pre = nullptr;  // qwen3: q heads [T, qd], then k heads [T, kvd], before their norms (after bias and
                            // rounding): rows of head_dim, as the norms' backward takes them
  float* o_pre = nullptr;     // gemma2: [T, H] wo's output before the post-attention norm
  float* down_pre = nullptr;  // gemma2: [T, H] w_down's output before the post-feedforward norm
};

// The training forward's adapter hook: called right after the product of a linear layer of layer l (role: a
// train::LayerRole, kWq .. kWDown) with its input X ([T, K] in the GEMM dtype) and its output Y (float32, row
// stride ldy; for q/k/v before bias and RoPE, for wo / w_down the residual the product was added to), so that a
// LoRA adapter adds its output there.
struct LinearHook {
  virtual ~LinearHook() = default;
  virtual void after_linear(int l, int role, const void* X, float* Y, int64_t ldy) = 0;
};

class CudaRuntime final : public Runtime {
 public:
  CudaRuntime(const ModelConfig& c, const ModelWeights& w, int device, Compute compute);
  ~CudaRuntime() override;

  DeviceKind device() const override { return DeviceKind::Cuda; }
  const ModelConfig& config() const override { return cfg_; }
  Compute compute() const override { return compute_; }
  std::string describe() const override { return describe_; }
  void forward(const ForwardRequest& req, ForwardResult& out) override;
  std::shared_ptr<KvCache> make_cache(int32_t n_slots, int32_t capacity) override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::make_shared<CudaKvCache>(cfg_, n_slots, capacity, bf16_, device_, this, live_cache_);
  }
  MemoryReport memory() const override;
  // Marks each step of the following forwards on `clock` (null: off, the default): bench_gpu's breakdown.
  void set_phase_clock(cuda::PhaseClock* clock) {
    std::lock_guard<std::mutex> lock(mu_);
    clock_ = clock;
  }

 private:
  friend class ::ln::train::CudaTrainer;
  // The training forward: the embedding and every layer of req (no statistics, interventions or cache), layer l
  // keeping what saves[l] asks for (saves may be shorter than the layer count: the layers past it keep nothing);
  // leaves the last hidden state (before the final norm) in h_. Validates like forward.
  void forward_train(const ForwardRequest& req, const std::vector<LayerSave>& saves, LinearHook* hook);
  // Layer l of the training forward again (activation recomputation), with the plan of the last forward_train
  // (the same batch): h_ holds the layer's input; the layer keeps what saves[l] asks for, with the adapter hook.
  // The same kernels on the same inputs: the same values as the first time.
  void recompute_layer(int l, const std::vector<LayerSave>& saves, LinearHook* hook);
  // Layers l0 .. l1 - 1 with the save hook and the adapter hook (both unset after, also when one throws).
  void train_layers(int l0, int l1, const std::vector<LayerSave>& saves, LinearHook* hook);
  // The attention of layer l in float32 from the saved q / k / v, with its log-sum-exp (the training forward's
  // save hook; attention_forward_lse of train_kernels.h).
  void save_attention(const LayerSave& s, int l);
  // Whether attention runs on tensor cores (flash_attention_bf16: the bf16 mode on sm_80+, a head_dim it takes):
  // then the training forward keeps bf16 q / k / v and output for the tensor-core backward (attention_backward_tc,
  // the same head sizes), else float32 ones.
  bool tensor_core_attention() const;
  const std::vector<LayerSave>* saves_ = nullptr;  // set during forward_train only
  LinearHook* hook_ = nullptr;                      // likewise
  void upload(const ModelWeights& w);
  void put(char* dst, const WeightRef& src, DType target);  // one tensor into the arena, converted
  void gemm(int64_t M, int64_t N, int64_t K, const void* X, int64_t ldx, const void* W, float* Y, int64_t ldy,
            bool accumulate) {
    gemm_->run(M, N, K, X, ldx, W, K, wdt_, Y, ldy, accumulate, stream_);
  }
  void prepare(const ForwardRequest& r, CudaKvCache* cache);
  void layer(int l, CudaKvCache* cache);
  // The step since the previous mark was `done` (a no-op without a clock).
  void phase(cuda::PhaseClock::Phase done) {
    if (clock_) clock_->mark(done, stream_);
  }
  cuda::PhaseClock* clock_ = nullptr;
  // The model's norm (RMSNorm or Cohere's LayerNorm) of M rows of x (rows: as norm_rows_ex) into y.
  void norm(int64_t M, const float* x, const int64_t* rows, const float* w, void* y, bool y_bf16);
  // Whether the current intervention edits `site` at layer l; its edits of a projection site (q, k, v, o, down)
  // applied to that projection's output x ([T_ rows], row stride ld), in place.
  bool editing(Site site, int l) const;
  void edit_projection(Site site, int l, float* x, int64_t ld);
  // A projection's own output x ([T, H], its statistics recorded) onto the residual stream h: Gemma 2's post-norm
  // first when post_w is given.
  void add_to_residual(const float* post_w);
  // Gemma's embedding scale as the forward multiplies by it: a tensor of the activations' dtype in transformers,
  // so rounded to bf16 in the bf16 mode (1 for the other families).
  float embed_scale() const { return bf16_ ? round_bf16(cfg_.embed_scale) : cfg_.embed_scale; }
  // LogitsMode::Greedy's pick of each row on the device (row i's penalised ids: ids[offsets[i] .. offsets[i+1])).
  struct Pick {
    NextToken* out = nullptr;
    double penalty = 1.0;
    const int32_t* ids = nullptr;
    const int64_t* offsets = nullptr;
  };
  void lm_head(const int64_t* idx_dev, int64_t n, float* logits_host, const int32_t* targets_dev, float* lp_dev,
               const Pick* pick = nullptr);

  ModelConfig cfg_;
  Compute compute_;
  bool bf16_;
  DType wdt_;  // dtype of matrices and GEMM inputs on the device
  int device_;
  cuda::DeviceInfo info_;
  std::string describe_;
  Stream stream_ = nullptr;
  std::unique_ptr<cuda::Gemm> gemm_;
  mutable std::mutex mu_;
  std::shared_ptr<std::atomic<int64_t>> live_cache_ = std::make_shared<std::atomic<int64_t>>(0);

  // Weights.
  DeviceBuffer arena_;
  std::vector<DevLayer> layers_;
  const void* embed_ = nullptr;
  DType embed_dtype_ = DType::BF16;
  const void* lm_head_ = nullptr;
  const float* final_norm_ = nullptr;
  DeviceBuffer inv_freq_;
  DeviceBuffer staging_;  // conversion of tensors at upload (released after)

  // The current request (host plans, uploaded in one copy to plan_dev_).
  int64_t T_ = 0;
  int32_t max_ctx_ = 0;
  std::vector<SequencePlan> seqs_;
  std::vector<int32_t> pos_;
  std::vector<int64_t> kv_row_, key_row0_, seq_counted_, seq_row_, lm_idx_;
  std::vector<int32_t> n_keys_, lm_targets_;
  std::vector<int64_t> target_rows_;
  std::vector<float> lp_host_;
  std::vector<int32_t> penalty_ids_;      // Greedy: plan_penalty_ids
  std::vector<uint8_t> penalty_seen_;     // its scratch: [vocab] flags, all 0 between forwards
  std::vector<int64_t> penalty_offsets_;
  std::vector<float> final_norm_host_, last_row_host_;
  std::vector<cuda::AttnTile> tiles_;
  std::vector<cuda::StatsChunk> chunks_;
  std::vector<unsigned char> plan_host_;
  DeviceBuffer plan_dev_;
  struct PlanPtrs {
    const int32_t* tokens = nullptr;
    const int32_t* pos = nullptr;
    const int64_t* kv_row = nullptr;
    const int64_t* key_row0 = nullptr;
    const int32_t* n_keys = nullptr;
    const cuda::AttnTile* tiles = nullptr;
    const cuda::StatsChunk* chunks = nullptr;
    const uint8_t* count_mask = nullptr;
    const uint8_t* cls = nullptr;
    const int64_t* seq_row = nullptr;
    const int64_t* seq_counted = nullptr;
    const cuda::DevEdit* edits = nullptr;
  } plan_;
  const Intervention* iv_ = nullptr;
  int64_t counted_tokens_ = 0, counted_seqs_ = 0, new_rows_ = 0;

  // Activations and scratch (grow-only).
  // xn_: Cohere's parallel block, the layer's normed input kept for the FFN.
  DeviceBuffer h_, x_, gin_, xn_, qkv_, qa_, ka_, va_, gu_, rule_values_, rope_cos_, rope_sin_, logits_, lp_, lm_plan_,
      picks_;
  int64_t rope_positions_ = 0;
  cuda::DeviceRecording rec_;
};

}  // namespace cuda_model
}  // namespace ln
