// Model construction, request validation, the layer loop and the LM head. The two halves of a layer are in
// attention.cpp and ffn.cpp; shapes and config checks in validate.cpp.
//
// Concurrency: a Model owns its scratch buffers (grown to the largest batch seen, then reused), so forward() runs
// one request at a time; concurrent callers are serialised by a mutex. A KvCache must not be used by two models'
// forwards at once.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/oom.h"
#include "kernels/ops.h"
#include "model/forward_state.h"
#include "model/intervention.h"
#include "model/site_pass.h"
#include "runtime/request.h"

namespace ln {

using detail::ForwardState;

// ---------------------------------------------------------------- CpuKvCache

CpuKvCache::CpuKvCache(const ModelConfig& c, int32_t n_slots, int32_t capacity) : KvCache(c, n_slots, capacity) {
  slot_stride_ = int64_t(capacity) * kv_width();
  const double n = 2.0 * c.n_layers * n_slots * double(slot_stride_);
  allocating("the KV cache for " + std::to_string(n_slots) + " sequence(s) x " + std::to_string(capacity) + " tokens", n * sizeof(float),
             [&] { data_.assign(size_t(2 * int64_t(c.n_layers) * n_slots) * size_t(slot_stride_), 0.f); },
             "fewer sequences at once, or fewer tokens per sequence (a smaller --max-new-tokens)");
}

// Layout: for each layer, for each slot, K [capacity][n_kv_heads][head_dim] then V (same shape).
float* CpuKvCache::k(int32_t layer, int32_t slot) {
  return data_.data() + (int64_t(layer) * n_slots() + slot) * 2 * slot_stride_;
}
float* CpuKvCache::v(int32_t layer, int32_t slot) { return k(layer, slot) + slot_stride_; }

void CpuKvCache::copy_positions(int32_t src, int32_t dst, int32_t len) {
  // K and V of one (layer, slot) are [capacity][kv_heads][head_dim]: the prefix is contiguous.
  for (int32_t l = 0; l < n_layers(); ++l) {
    std::memcpy(k(l, dst), k(l, src), size_t(len * kv_width()) * sizeof(float));
    std::memcpy(v(l, dst), v(l, src), size_t(len * kv_width()) * sizeof(float));
  }
}

// ---------------------------------------------------------------- Model

struct Model::Impl : ForwardState {};

static int checked_threads(int n) {
  if (n < 1) throw std::invalid_argument("Model: n_threads must be >= 1, got " + std::to_string(n));
  return n;
}

std::vector<float> weight_f32(const WeightRef& w) {
  std::vector<float> v(size_t(w.rows * w.cols));
  convert_to_f32(w.data, w.dtype, 0, w.rows * w.cols, v.data());
  return v;
}

std::vector<float> norm_weight_f32(const ModelConfig& c, const WeightRef& w) {
  std::vector<float> v = weight_f32(w);
  if (c.norm == NormType::RmsOnePlus)
    for (float& x : v) x = 1.f + x;
  return v;
}

void norm_rows(const ModelConfig& c, int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
               int64_t n) {
  if (c.norm == NormType::Layer)
    layernorm_rows(M, x, ldx, w, y, ldy, n, c.rms_eps);
  else
    rmsnorm_rows(M, x, ldx, w, y, ldy, n, c.rms_eps);
}

Model::Model(const ModelConfig& config, const ModelWeights& weights, int n_threads, Compute compute)
    : cfg_(config), w_(weights), compute_(compute), pool_(checked_threads(n_threads)) {
  std::string e = validate_weights(cfg_, w_);  // includes validate_config
  if (!e.empty()) throw std::invalid_argument(e);
  if (compute != Compute::F32 && compute != Compute::BF16) throw std::invalid_argument("Model: unknown compute mode");
  if (cfg_.tie_embeddings && w_.lm_head.empty()) w_.lm_head = w_.embed;

  impl_ = std::make_shared<Impl>();
  ForwardState& st = *impl_;
  st.cfg = &cfg_;
  st.w = &w_;
  st.compute = compute_;
  st.pool = &pool_;
  for (const LayerWeights& L : w_.layers) {
    ForwardState::LayerVecs lv;
    lv.attn_norm = norm_weight_f32(cfg_, L.attn_norm);
    if (!cfg_.parallel_block) lv.ffn_norm = norm_weight_f32(cfg_, L.ffn_norm);
    if (cfg_.qk_norm) {  // Qwen3's q/k norms are plain RMSNorms
      lv.q_norm = weight_f32(L.q_norm);
      lv.k_norm = weight_f32(L.k_norm);
    }
    if (cfg_.post_norms) {
      lv.attn_post_norm = norm_weight_f32(cfg_, L.attn_post_norm);
      lv.ffn_post_norm = norm_weight_f32(cfg_, L.ffn_post_norm);
    }
    if (cfg_.qkv_bias) {
      lv.bq = weight_f32(L.bq);
      lv.bk = weight_f32(L.bk);
      lv.bv = weight_f32(L.bv);
    }
    st.vecs.push_back(std::move(lv));
  }
  st.final_norm = norm_weight_f32(cfg_, w_.final_norm);

  st.inv_freq = rope_inv_freq_f32(cfg_);
}

int64_t Model::scratch_bytes() const {
  const ForwardState& st = *impl_;
  int64_t n = 0;
  for (const auto* v : {&st.h, &st.x, &st.xn, &st.q, &st.att, &st.k, &st.v, &st.g, &st.u, &st.scores, &st.rows, &st.chunk,
                        &st.rope_cos, &st.rope_sin, &st.rule_values, &st.rule_work})
    n += int64_t(v->size());
  return n * int64_t(sizeof(float));
}

// Sequence spans, token positions, attention blocks, RoPE table and activation buffers for this request.
static void prepare(ForwardState& st, const ForwardRequest& r, int n_threads) {
  const ModelConfig& c = *st.cfg;
  st.T = r.n_tokens;
  st.cache = static_cast<CpuKvCache*>(r.cache);  // forward() checked its type
  plan_sequences(r, st.seqs, st.pos, st.max_ctx);
  st.blocks.clear();
  for (int32_t s = 0; s < r.n_seqs; ++s)
    for (int32_t q0 = 0; q0 < st.seqs[size_t(s)].len; q0 += detail::kAttnBlock)
      st.blocks.push_back({s, q0, std::min(st.seqs[size_t(s)].len, q0 + detail::kAttnBlock)});

  // RoPE rows for every position up to max_ctx, grown geometrically (capped at the model's context).
  const int half = c.head_dim / 2;
  if (st.rope_positions < st.max_ctx) {
    const int64_t n = std::min<int64_t>(c.max_positions, std::max<int64_t>(st.max_ctx, 2 * st.rope_positions));
    st.rope_cos.resize(size_t(n * half));
    st.rope_sin.resize(size_t(n * half));
    float* cs = st.rope_cos.data() + st.rope_positions * half;
    float* sn = st.rope_sin.data() + st.rope_positions * half;
    rope_tables(st.inv_freq.data(), half, st.rope_positions, n, cs, sn);
    if (c.rope_attention_factor != 1.f)  // yarn: transformers multiplies cos and sin (float32) by it
      for (int64_t i = 0; i < (n - st.rope_positions) * half; ++i) {
        cs[i] *= c.rope_attention_factor;
        sn[i] *= c.rope_attention_factor;
      }
    st.rope_positions = n;
  }

  const int64_t T = st.T, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  const double act_floats = double(T) * ((c.parallel_block ? 3 : 2) * c.hidden + 2 * qd + 2 * kvd + 2 * c.intermediate) +
                            double(n_threads) * st.max_ctx;
  allocating("the activation buffers for " + std::to_string(T) + " tokens", act_floats * sizeof(float), [&] {
    detail::ensure(st.h, T * c.hidden);
    detail::ensure(st.x, T * c.hidden);
    if (c.parallel_block) detail::ensure(st.xn, T * c.hidden);
    detail::ensure(st.q, T * qd);
    detail::ensure(st.att, T * qd);
    detail::ensure(st.k, T * kvd);
    detail::ensure(st.v, T * kvd);
    detail::ensure(st.g, T * c.intermediate);
    detail::ensure(st.u, T * c.intermediate);
    detail::ensure(st.scores, int64_t(n_threads) * st.max_ctx);
  }, "use fewer tokens per forward (a smaller --batch-tokens / --batch)");

  st.intervention = r.intervention;
  st.intervene_mask = r.intervention ? r.intervene_mask : nullptr;
  if (r.intervention && r.intervention->max_rules_per_layer() > 0) {
    detail::ensure(st.rule_values, T * r.intervention->max_rules_per_layer());
    detail::ensure(st.rule_work, int64_t(n_threads) * 2 * c.intermediate);  // a row and a sort buffer
  }
}

// Cohere's logit_scale and Gemma 2's final soft-capping on n rows of logits (in place).
static void finish_logits(ForwardState& st, float* logits, int64_t n) {
  const ModelConfig& c = *st.cfg;
  if (c.logit_scale == 1.f && c.final_softcap == 0.f) return;
  const int64_t V = c.vocab;
  detail::for_row_blocks(*st.pool, n, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * V; i < r1 * V; ++i) {
      float x = logits[i] * c.logit_scale;
      if (c.final_softcap > 0) x = math::softcap(x, c.final_softcap);
      logits[i] = x;
    }
  });
}

// Final norm of rows `idx` of h gathered into st.rows, then logits = rows lm_head^T into `out` (n x vocab).
static void lm_head_rows(ForwardState& st, const int64_t* idx, int64_t n, float* out) {
  const ModelConfig& c = *st.cfg;
  const int64_t H = c.hidden;
  detail::ensure(st.rows, n * H);
  for (int64_t i = 0; i < n; ++i)
    norm_rows(c, 1, st.h.data() + idx[i] * H, H, st.final_norm.data(), st.rows.data() + i * H, H, H);
  gemm_xwt(n, st.rows.data(), H, st.w->lm_head, out, c.vocab, st.compute, false, *st.pool);
  finish_logits(st, out, n);
}

// target_logprobs[t] = logits[t][target] - logsumexp(logits[t]) for rows with a target, from n logit rows.
static void target_logprobs(ThreadPool& pool, const float* logits, int64_t vocab, const int64_t* rows, int64_t n,
                            const int32_t* targets, float* out) {
  pool.parallel_for(n, [&](int64_t i, int) {
    const float* l = logits + i * vocab;
    out[rows[i]] = target_logprob(l, vocab, targets[rows[i]]);
  });
}

void Model::forward(const ForwardRequest& req, ForwardResult& out) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  validate_forward_request(cfg_, req);
  if (req.cache && !dynamic_cast<CpuKvCache*>(req.cache))
    throw std::invalid_argument("forward: the KV cache was made by another runtime (device)");
  ForwardState& st = *impl_;
  prepare(st, req, pool_.size());
  detail::begin_recording(st, req, out);
  const int64_t T = st.T, H = cfg_.hidden, V = cfg_.vocab;

  // Gemma's embedding scale is a tensor of the activations' dtype in transformers: rounded to bf16 in a bf16 run.
  const float escale = compute_ == Compute::BF16 ? round_bf16(cfg_.embed_scale) : cfg_.embed_scale;
  detail::for_row_blocks(pool_, T, [&](int64_t r0, int64_t r1) {
    embed_rows(w_.embed, req.tokens + r0, r1 - r0, st.h.data() + r0 * H, H);
    if (escale != 1.f)
      for (int64_t i = r0 * H; i < r1 * H; ++i) st.h[size_t(i)] *= escale;
  });
  const int n_run = req.last_layer < 0 ? cfg_.n_layers : req.last_layer + 1;
  for (int l = 0; l < n_run; ++l) {
    detail::attention_forward(st, l);
    detail::ffn_forward(st, l);
    // Site `resid`: the stream itself after the layer, recorded (per-unit sums, sequence means) in place.
    detail::record_block(st, Site::Resid, l, st.h.data(), H);
  }
  detail::end_recording(st);
  st.intervention = nullptr;  // no dangling pointers into the request
  st.intervene_mask = nullptr;
  if (req.cache)
    for (const detail::SeqSpan& s : st.seqs) req.cache->set_grown_length(s.slot, s.pos0 + s.len);

  // LM head. All: every row, returned. Last: the last row of each sequence. Targets without All: the rows that
  // have a target, kLmChunk at a time, so no n_tokens x vocab buffer exists. None: no final norm, no LM head.
  out.logits.clear();
  out.target_logprobs.clear();
  out.next.clear();
  std::vector<int64_t>& idx = st.lm_rows;
  idx.clear();
  if (req.logits == LogitsMode::All) {
    // One product over all rows (x is free at this point).
    allocating("the logits of " + std::to_string(T) + " tokens x " + std::to_string(V) + " vocabulary entries",
               double(T) * double(V) * sizeof(float), [&] { out.logits.resize(size_t(T * V)); },
               "use fewer tokens per forward");
    const float* fw = st.final_norm.data();
    detail::for_row_blocks(pool_, T, [&](int64_t r0, int64_t r1) {
      norm_rows(cfg_, r1 - r0, st.h.data() + r0 * H, H, fw, st.x.data() + r0 * H, H, H);
    });
    gemm_xwt(T, st.x.data(), H, w_.lm_head, out.logits.data(), V, compute_, false, pool_);
    finish_logits(st, out.logits.data(), T);
  } else if (req.logits == LogitsMode::Last) {
    out.logits.resize(size_t(int64_t(req.n_seqs) * V));
    for (const detail::SeqSpan& s : st.seqs) idx.push_back(s.row0 + s.len - 1);
    for (int64_t i0 = 0; i0 < req.n_seqs; i0 += detail::kLmChunk)
      lm_head_rows(st, idx.data() + i0, std::min<int64_t>(detail::kLmChunk, req.n_seqs - i0),
                   out.logits.data() + i0 * V);
  } else if (req.logits == LogitsMode::Greedy) {
    // Each sequence's next token from its last row, kLmChunk rows at a time: no n_seqs x vocab result (as CUDA).
    out.next.resize(size_t(req.n_seqs));
    for (const detail::SeqSpan& s : st.seqs) idx.push_back(s.row0 + s.len - 1);
    plan_penalty_ids(req.n_seqs, req.repetition_penalty, req.penalty_ids, req.penalty_offsets, V, st.penalty_ids,
                     st.penalty_offsets, st.penalty_seen);
    detail::ensure(st.chunk, detail::kLmChunk * V);
    for (int64_t i0 = 0; i0 < req.n_seqs; i0 += detail::kLmChunk) {
      const int64_t m = std::min<int64_t>(detail::kLmChunk, req.n_seqs - i0);
      lm_head_rows(st, idx.data() + i0, m, st.chunk.data());
      pool_.parallel_for(m, [&](int64_t i, int) {
        const size_t s = size_t(i0 + i);
        const int64_t p0 = st.penalty_offsets[s];
        out.next[s] = pick_next_token(st.chunk.data() + i * V, V, req.repetition_penalty, st.penalty_ids.data() + p0,
                                      st.penalty_offsets[s + 1] - p0);
      });
    }
  } else if (req.logits == LogitsMode::LastHidden) {
    out.logits.resize(size_t(int64_t(req.n_seqs) * H));
    for (size_t i = 0; i < st.seqs.size(); ++i)
      norm_rows(cfg_, 1, st.h.data() + (st.seqs[i].row0 + st.seqs[i].len - 1) * H, H, st.final_norm.data(),
                        out.logits.data() + int64_t(i) * H, H, H);  // the family's final norm, as the LM head's
  }
  if (!req.targets) return;

  out.target_logprobs.assign(size_t(T), 0.f);
  idx.clear();
  for (int64_t t = 0; t < T; ++t)
    if (req.targets[t] >= 0) idx.push_back(t);
  const int64_t n = int64_t(idx.size());
  if (req.logits == LogitsMode::All) {
    // The full logits are there: read them.
    pool_.parallel_for(n, [&](int64_t i, int) {
      const int64_t t = idx[size_t(i)];
      const float* l = out.logits.data() + t * V;
      out.target_logprobs[size_t(t)] = target_logprob(l, V, req.targets[t]);
    });
    return;
  }
  detail::ensure(st.chunk, detail::kLmChunk * V);
  for (int64_t i0 = 0; i0 < n; i0 += detail::kLmChunk) {
    const int64_t m = std::min(detail::kLmChunk, n - i0);
    lm_head_rows(st, idx.data() + i0, m, st.chunk.data());
    target_logprobs(pool_, st.chunk.data(), V, idx.data() + i0, m, req.targets, out.target_logprobs.data());
  }
}

std::vector<float> rope_inv_freq_f32(const ModelConfig& c) {
  RopeScaling rs;
  rs.llama3 = c.rope_type == RopeType::Llama3;
  rs.yarn = c.rope_type == RopeType::Yarn;
  rs.linear = c.rope_type == RopeType::Linear;
  rs.beta_fast = c.rope_beta_fast;
  rs.beta_slow = c.rope_beta_slow;
  rs.factor = c.rope_factor;
  rs.low_freq_factor = c.rope_low_freq_factor;
  rs.high_freq_factor = c.rope_high_freq_factor;
  rs.original_max_positions = c.rope_original_max_positions;
  std::vector<double> inv(size_t(c.head_dim / 2));
  rope_inv_freq(c.head_dim, c.rope_theta, rs, inv.data());
  return std::vector<float>(inv.begin(), inv.end());  // float32, as transformers holds it
}

}  // namespace ln
