// Internal to the model runtime: the state a forward pass works in (Model::Impl), shared by model.cpp (request
// validation, orchestration, LM head), attention.cpp and ffn.cpp (one function per layer half).
//
// All activation buffers are row-major [tokens x width] float32 owned here, grown to the largest batch seen and
// then kept, so the layer loop allocates nothing. Because of that a Model runs one forward at a time (forward()
// takes `mu`).
#pragma once
#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "kernels/ops.h"
#include "model/model.h"
#include "runtime/request.h"

namespace ln {
namespace detail {

// One sequence of the packed batch (runtime/request.h): its rows, first position and cache slot.
using SeqSpan = SequencePlan;

// A block of query rows [q0, q1) (relative to the sequence) of sequence `seq`: attention runs as
// (block, head) tasks so that a single long prompt still spreads over the threads, and causal imbalance
// (late rows see more keys) is absorbed by the pool's dynamic scheduling.
struct AttnBlock {
  int32_t seq, q0, q1;
};

// What the current forward records at the sites (statistics, a capture), prepared by begin_recording
// (model/site_pass.h) before the layer loop so that the loop itself allocates nothing.
struct SiteRecording {
  ActivationStats* stats = nullptr;
  int32_t stats_layers = 0;          // stats->n_layers(), or 0 without stats
  const uint8_t* mask = nullptr;     // per token, nonzero = counted; null = all counted
  Site capture_site = Site::Act;
  int32_t capture_layer = -1;        // -1: no capture
  float* capture = nullptr;          // [T][width of capture_site]
  std::vector<int64_t> seq_counted;  // per sequence: its counted tokens
  std::vector<int64_t> seq_row;      // per sequence: its row in every site's seq_means, or -1 (nothing counted)
  bool any() const { return stats != nullptr || capture_layer >= 0; }
};

struct ForwardState {
  const ModelConfig* cfg = nullptr;
  const ModelWeights* w = nullptr;
  Compute compute = Compute::F32;
  ThreadPool* pool = nullptr;

  // 1-D tensors converted once to float32 (tiny; avoids dtype/alignment handling in the hot loop).
  struct LayerVecs {
    // Norm weights as the norm multiplies them: (1 + w) for RmsOnePlus.
    std::vector<float> attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm, attn_post_norm, ffn_post_norm;
  };
  std::vector<LayerVecs> vecs;
  std::vector<float> final_norm;

  // RoPE: float32 inv_freq and cos/sin tables for positions [0, rope_positions), grown on demand.
  std::vector<float> inv_freq, rope_cos, rope_sin;
  int64_t rope_positions = 0;

  // The current request.
  int64_t T = 0;             // tokens in the batch
  int32_t max_ctx = 0;       // longest key range of any sequence (cached + new)
  CpuKvCache* cache = nullptr;  // or null
  std::vector<SeqSpan> seqs;
  std::vector<int32_t> pos;  // position of each token
  std::vector<AttnBlock> blocks;
  std::vector<int64_t> lm_rows;  // rows of h that go through the LM head

  // Activations (see Model::scratch_bytes).
  std::vector<float> h;       // [T, hidden]  residual stream
  std::vector<float> x;       // [T, hidden]  normed input of the current sublayer
  std::vector<float> xn;      // [T, hidden]  parallel_block only: the layer's normed input, kept for the FFN
  std::vector<float> q, att;  // [T, n_heads*head_dim]  queries, attention output (heads concatenated)
  std::vector<float> k, v;    // [T, n_kv_heads*head_dim]
  std::vector<float> g, u;    // [T, intermediate]  gate (then activation, then a*u), up
  std::vector<float> scores;  // [n_threads, max_ctx]  attention probabilities of one query row
  std::vector<float> rows;    // [<= kLmChunk, hidden]  gathered rows for the LM head
  std::vector<float> chunk;   // [kLmChunk, vocab]  LM head output of one chunk (targets without full logits)
  std::vector<int32_t> penalty_ids;      // Greedy: each sequence's penalised ids, no repeats
  std::vector<int64_t> penalty_offsets;  // [n_seqs + 1]
  std::vector<uint8_t> penalty_seen;     // [vocab] scratch of plan_penalty_ids, all 0 between forwards

  SiteRecording rec;

  // The current request's intervention (model/intervention.h), or null; its per-token class bytes (or null);
  // the values of the current layer's test-time rules [T][max rules per layer] and per-thread scratch rows.
  const Intervention* intervention = nullptr;
  const uint8_t* intervene_mask = nullptr;
  std::vector<float> rule_values;
  std::vector<float> rule_work;  // [n_threads][2][intermediate]

  std::mutex mu;
};

constexpr int64_t kLmChunk = 64;   // LM head rows per chunk when logits are not all returned
constexpr int32_t kAttnBlock = 16; // query rows per attention task
constexpr int64_t kRowBlock = 16;  // rows per task of the row-wise ops

// Grow-only: buffers keep their size between requests.
inline void ensure(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}

// f(r0, r1) over row blocks [r0, r1) of [0, n), on the pool.
template <class F>
void for_row_blocks(ThreadPool& pool, int64_t n, F&& f) {
  const int64_t nb = (n + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(nb, [&](int64_t b, int) { f(b * kRowBlock, std::min(n, (b + 1) * kRowBlock)); });
}

// h += Attention(rmsnorm(h)) for layer `l` (appends the batch's K/V to the cache when there is one).
void attention_forward(ForwardState& st, int l);
// h += FFN(rmsnorm(h)) for layer `l`.
void ffn_forward(ForwardState& st, int l);

}  // namespace detail
}  // namespace ln
