// The Llama-family decoder (llama, mistral, qwen2, qwen3, gemma2, cohere): weights referenced in place (memory-mapped by the caller),
// forward over a packed batch of variable-length sequences, optional KV cache for incremental decoding.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/gemm.h"
#include "model/next_token.h"
#include "model/sites.h"

namespace ln {

class ActivationStats;  // model/stats.h
class Intervention;     // model/intervention.h

// Default also serves transformers' "dynamic" scaling, which is the identity for positions within
// max_position_embeddings (the engine refuses positions beyond it). Linear divides every frequency by the factor.
enum class RopeType : int32_t { Default = 0, Llama3 = 1, Yarn = 2, Linear = 3 };
// Rms: w * (x / rms(x)). RmsOnePlus (Gemma): (1 + w) * (x / rms(x)). Layer (Cohere): w * (x - mean) / std(x), no bias.
enum class NormType : int32_t { Rms = 0, RmsOnePlus = 1, Layer = 2 };
// The gated FFN's activation: act(gate) * up. Both are > 0 exactly where gate > 0.
enum class Activation : int32_t { Silu = 0, GeluTanh = 1 };

struct ModelConfig {
  int32_t hidden = 0;        // hidden_size
  int32_t intermediate = 0;  // intermediate_size (I: FFN neurons per layer)
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;      // explicit head_dim, or hidden / n_heads
  int32_t vocab = 0;
  int32_t max_positions = 0;  // max_position_embeddings
  float rms_eps = 1e-5f;
  float rope_theta = 10000.f;
  RopeType rope_type = RopeType::Default;
  float rope_factor = 1.f, rope_low_freq_factor = 1.f, rope_high_freq_factor = 4.f;
  int32_t rope_original_max_positions = 8192;
  float rope_attention_factor = 1.f;             // yarn: cos and sin are multiplied by it
  float rope_beta_fast = 32.f, rope_beta_slow = 1.f;  // yarn
  bool tie_embeddings = false;
  bool qkv_bias = false;

  // Family features (all off: Llama).
  NormType norm = NormType::Rms;       // every norm of the model (rms_eps is its epsilon)
  Activation act = Activation::Silu;
  bool qk_norm = false;           // qwen3: RMSNorm over each head's q and k (weights [head_dim]) before RoPE
  bool parallel_block = false;    // cohere: h + attn(norm(h)) + ffn(norm(h)), one norm per layer (no ffn_norm)
  bool post_norms = false;        // gemma2: norms on the attention and FFN outputs before the residual add
  bool rope_interleaved = false;  // cohere: RoPE on pairs (2i, 2i+1) instead of (i, i + head_dim/2)
  float embed_scale = 1.f;        // gemma2: embeddings times sqrt(hidden)
  float query_scale = 0.f;        // attention scores times this (0: 1/sqrt(head_dim)); gemma2: query_pre_attn_scalar^-0.5
  float attn_softcap = 0.f;       // gemma2: scores -> cap tanh(scores / cap) before the mask (0: none)
  float final_softcap = 0.f;      // gemma2: logits -> cap tanh(logits / cap) (0: none)
  float logit_scale = 1.f;        // cohere: logits times this
  int32_t sliding_window = 0;     // > 0: a query sees its last sliding_window keys (itself included) ...
  int32_t sliding_period = 1;     // ... in layers l with l % sliding_period == 0 (1: every layer, 2: gemma2's even ones)

  // The window of layer l (0: full causal attention).
  int32_t window_of(int l) const { return sliding_window > 0 && l % sliding_period == 0 ? sliding_window : 0; }
  float attn_scale() const;
};

// Returns "" when the config is usable, else a message naming the bad field.
std::string validate_config(const ModelConfig& c);

// RoPE inverse frequencies of the config (plain, Llama-3, YaRN or linear scaled), as float32 like transformers holds
// them. The YaRN attention factor is applied to the cos/sin tables, not here.
std::vector<float> rope_inv_freq_f32(const ModelConfig& c);

// A tensor as float32 (exact for BF16 / F16 / F32).
std::vector<float> weight_f32(const WeightRef& w);
// A norm weight as the model's norm multiplies it: 1 + w for Gemma's (1 + w) RMSNorm, w otherwise (not for Qwen3's
// q/k norms, which are plain RMSNorms: weight_f32). The CPU engine and the CUDA runtime upload these.
std::vector<float> norm_weight_f32(const ModelConfig& c, const WeightRef& w);
// The model's norm (RMSNorm, or Cohere's LayerNorm: ops.h) of M rows of n, eps = c.rms_eps.
void norm_rows(const ModelConfig& c, int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
               int64_t n);

struct LayerWeights {
  WeightRef attn_norm;            // [hidden]
  WeightRef wq, wk, wv, wo;       // [heads*hd, hidden], [kv*hd, hidden] x2, [hidden, heads*hd]
  WeightRef bq, bk, bv;           // qwen2 only: [heads*hd], [kv*hd] x2
  WeightRef q_norm, k_norm;       // qk_norm only: [head_dim] each
  WeightRef attn_post_norm;       // post_norms only: [hidden]
  WeightRef ffn_norm;             // [hidden]; absent with parallel_block
  WeightRef ffn_post_norm;        // post_norms only: [hidden]
  WeightRef w_gate, w_up;         // [I, hidden]
  WeightRef w_down;               // [hidden, I]
};

struct ModelWeights {
  WeightRef embed;       // [vocab, hidden]
  WeightRef final_norm;  // [hidden]
  WeightRef lm_head;     // [vocab, hidden]; equal to embed when tied
  std::vector<LayerWeights> layers;
};

// Returns "" when every tensor has the shape the config implies, else a message naming the tensor.
std::string validate_weights(const ModelConfig& c, const ModelWeights& w);

// LastHidden: no LM head; ForwardResult::logits holds the final-normed hidden state of each sequence's last token
// (n_seqs x hidden), the input of a classification head (LlamaForSequenceClassification's score layer).
// Greedy: no logits returned; the runtime picks each sequence's next token from its last row (ForwardResult::next),
// on the device where the model runs, so that a decode step moves n_seqs picks instead of n_seqs x vocab floats.
enum class LogitsMode : int32_t { None = 0, Last = 1, All = 2, LastHidden = 3, Greedy = 4 };


// A KV cache of `n_slots` independent sequences of up to `capacity` tokens each. The base class keeps the
// bookkeeping every runtime shares (slot lengths, validation); the storage belongs to the runtime that made it
// (CpuKvCache below; the CUDA runtime's lives on the device). A forward only accepts a cache of its own runtime.
class KvCache {
 public:
  virtual ~KvCache() = default;
  int32_t n_slots() const { return n_slots_; }
  int32_t capacity() const { return capacity_; }
  int32_t n_layers() const { return n_layers_; }
  int64_t kv_width() const { return kv_width_; }  // n_kv_heads * head_dim
  int32_t length(int32_t slot) const { return lengths_[size_t(slot)]; }
  // Whether a model with config c may use this cache (same layer count and K/V width).
  bool fits(const ModelConfig& c) const;
  // Truncate (e.g. reset to 0): throws std::invalid_argument unless 0 <= len <= length(slot). The forward is the
  // only thing that grows a slot.
  void set_length(int32_t slot, int32_t len);
  // Copy the first `len` positions of slot `src` into slot `dst` (every layer) and set dst's length to len: a
  // shared prompt is computed once and continued in several slots. Throws std::invalid_argument on bad slots or
  // len > length(src).
  void copy_prefix(int32_t src, int32_t dst, int32_t len);
  virtual int64_t bytes() const = 0;
  // Called by a runtime after its forward appended tokens to `slot` (len = the new length, <= capacity).
  void set_grown_length(int32_t slot, int32_t len) { lengths_[size_t(slot)] = len; }

 protected:
  // Throws std::invalid_argument for an invalid config, n_slots < 1 or capacity < 1.
  KvCache(const ModelConfig& c, int32_t n_slots, int32_t capacity);
  // Copies positions [0, len) of every layer from slot src to slot dst (arguments already validated).
  virtual void copy_positions(int32_t src, int32_t dst, int32_t len) = 0;

 private:
  int32_t n_layers_, n_slots_, capacity_;
  int64_t kv_width_;
  std::vector<int32_t> lengths_;
};

// The CPU runtime's cache: float32 K and V per (layer, slot), in host memory.
class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(const ModelConfig& c, int32_t n_slots, int32_t capacity);
  float* k(int32_t layer, int32_t slot);  // [capacity][n_kv_heads][head_dim]
  float* v(int32_t layer, int32_t slot);
  int64_t bytes() const override { return int64_t(data_.size()) * 4; }
  int64_t slot_stride() const { return slot_stride_; }  // floats of K (or V) per (layer, slot)

 private:
  void copy_positions(int32_t src, int32_t dst, int32_t len) override;
  int64_t slot_stride_;  // floats per (layer, slot) for K (same for V)
  std::vector<float> data_;
};

struct ForwardRequest {
  const int32_t* tokens = nullptr;  // all sequences' tokens, concatenated
  int64_t n_tokens = 0;
  const int32_t* seq_lens = nullptr;  // n_seqs lengths summing to n_tokens
  int32_t n_seqs = 0;
  // With a cache: sequence s continues cache slot cache_slots[s] at position cache->length(slot), and its new
  // K/V are appended (the slot's length grows by seq_lens[s]). Without: every sequence starts at position 0.
  KvCache* cache = nullptr;
  const int32_t* cache_slots = nullptr;
  LogitsMode logits = LogitsMode::Last;
  // Optional next-token targets, one per token (-1: ignored). For each target position t, target_logprobs[t]
  // receives log softmax(logits_t)[targets[t]] without the full logits having to be returned.
  const int32_t* targets = nullptr;
  // Greedy only: Hugging Face's RepetitionPenaltyLogitsProcessor before the pick. The logits of the ids
  // penalty_ids[penalty_offsets[s] .. penalty_offsets[s + 1]) of sequence s (n_seqs + 1 offsets; repeats count once)
  // become logit / p when positive and logit * p otherwise. 1 (or no ids): no penalty.
  double repetition_penalty = 1.0;
  const int32_t* penalty_ids = nullptr;
  const int64_t* penalty_offsets = nullptr;

  // Profiling (model/stats.h). With `stats`, every site it profiles is accumulated at its layers; only tokens
  // whose count_mask entry is nonzero are counted (null: all; n_tokens entries: BOS and padding are fed
  // but not counted). The stats object must have been made for this model's shapes.
  ActivationStats* stats = nullptr;
  const uint8_t* count_mask = nullptr;
  // -1: every layer. Otherwise stop after layer last_layer: no later layers (profiling, with logits None). Logits
  // and targets then come from the final norm and the LM head applied to the residual stream after that layer:
  // the logit lens (nostalgebraist 2020). A cache is refused (the later layers' keys and values would be missing).
  int32_t last_layer = -1;
  // capture_layer >= 0: copy the [n_tokens x width] values of capture_site at that layer into
  // ForwardResult::capture (every token, whatever the mask), for tests and debugging.
  Site capture_site = Site::Act;
  int32_t capture_layer = -1;

  // Interventions on FFN neurons (model/intervention.h), applied inside the FFN activation loop; the statistics
  // and capture of an intervened site record the value after the intervention. intervene_mask: null (every edit
  // at every token) or n_tokens position-class bytes, an edit applying where (class & edit.when) != 0. The
  // intervention must have been made for this model's shapes.
  const Intervention* intervention = nullptr;
  const uint8_t* intervene_mask = nullptr;
};

struct ForwardResult {
  std::vector<float> logits;           // Last: n_seqs x vocab; All: n_tokens x vocab; LastHidden: n_seqs x hidden; None: empty
  std::vector<float> target_logprobs;  // n_tokens when targets were given (0 where ignored)
  std::vector<float> capture;          // n_tokens x site width when a capture was asked for, else empty
  std::vector<NextToken> next;         // Greedy: one per sequence, else empty
};

class Model {
 public:
  // Throws std::invalid_argument when validate_weights (which includes validate_config) reports a problem, or
  // n_threads < 1. With tie_embeddings, an empty lm_head means embed. The weights are referenced, not copied.
  Model(const ModelConfig& config, const ModelWeights& weights, int n_threads, Compute compute);
  const ModelConfig& config() const { return cfg_; }
  Compute compute() const { return compute_; }
  int n_threads() const { return pool_.size(); }

  // Validates the request (token ids in range, lengths, cache capacity and positions within
  // max_positions) and throws std::invalid_argument with a clear message before touching any state.
  // One forward runs at a time per Model (it works in the model's scratch buffers); concurrent calls are
  // serialised by an internal mutex.
  void forward(const ForwardRequest& req, ForwardResult& out);

  // Bytes of scratch memory held for a batch of n_tokens (activations), for memory reporting.
  int64_t scratch_bytes() const;
  // Bytes of the kernels' scratch (packing panels, attention tiles) held by the model's thread pool.
  int64_t kernel_scratch_bytes() const { return pool_.scratch_bytes(); }

 private:
  struct Impl;
  ModelConfig cfg_;
  ModelWeights w_;
  Compute compute_;
  ThreadPool pool_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ln
