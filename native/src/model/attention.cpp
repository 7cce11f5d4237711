// The attention half of a decoder layer:
//   x = rmsnorm(h) * attn_norm;  q, k, v = x Wq^T (+bq), x Wk^T (+bk), x Wv^T (+bv);  RoPE on q, k;
//   per sequence and head: softmax(q k^T / sqrt(head_dim)) over positions <= own position, times v;
//   h += concat(heads) Wo^T.
// Grouped-query attention: query head hq reads kv head hq / (n_heads / n_kv_heads).
// Family variants (ModelConfig): the norm type (RMS, Gemma's (1+w) RMS, Cohere's LayerNorm); Qwen3's per-head RMSNorm
// of q and k before RoPE; Cohere's interleaved RoPE; Gemma 2's query_pre_attn_scalar, score soft-capping and
// post-attention norm; sliding windows (a query at position p sees keys max(0, p - W + 1)..p; the cache keeps every
// position, attention reads the window); Cohere's parallel block keeps the normed input for the FFN (st.xn).
//
// Compute::BF16 rounds, beyond what gemm_xwt rounds inside the products: q, k, v after projection (+bias), and q,
// k again after RoPE, i.e. the bf16 tensors a bf16 GPU run holds at the attention inputs. The cache stores that
// rounded K/V. Norms, scores, softmax, the weighted sum of v and the residual stream stay float32, and so do the
// RoPE cos/sin tables and the rotation arithmetic (transformers casts cos/sin to bf16 and rotates in bf16; we
// round only the result).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/ops.h"
#include "model/edit_pass.h"
#include "model/forward_state.h"
#include "model/site_pass.h"

namespace ln {
namespace detail {

// Bias, bf16 rounding (`pre`) and RoPE (`rope`) of the projected q, k, v rows [r0, r1). Run as one pass, or as
// two with the edits and the recording of the sites q, k, v between them; `round_v` (bf16, v edited) rounds the
// edited v again in the second pass, as the bf16 tensor attention reads holds it.
static void qkv_post(ForwardState& st, int l, int64_t r0, int64_t r1, bool pre, bool rope, bool round_v = false) {
  const ModelConfig& c = *st.cfg;
  const int hd = c.head_dim;
  const int64_t qd = int64_t(c.n_heads) * hd, kvd = int64_t(c.n_kv_heads) * hd;
  const bool bf16 = st.compute == Compute::BF16;
  const auto& lv = st.vecs[size_t(l)];
  for (int64_t t = r0; t < r1; ++t) {
    float* q = st.q.data() + t * qd;
    float* k = st.k.data() + t * kvd;
    float* v = st.v.data() + t * kvd;
    if (pre && c.qkv_bias) {
      add_inplace(q, lv.bq.data(), qd);
      add_inplace(k, lv.bk.data(), kvd);
      add_inplace(v, lv.bv.data(), kvd);
    }
    if (pre && bf16) {
      round_bf16_inplace(q, qd);
      round_bf16_inplace(k, kvd);
      round_bf16_inplace(v, kvd);
    }
    if (!rope) continue;
    if (round_v) round_bf16_inplace(v, kvd);
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head, before RoPE
      rmsnorm_rows(c.n_heads, q, hd, lv.q_norm.data(), q, hd, hd, c.rms_eps);
      rmsnorm_rows(c.n_kv_heads, k, hd, lv.k_norm.data(), k, hd, hd, c.rms_eps);
    }
    const float* cs = st.rope_cos.data() + int64_t(st.pos[size_t(t)]) * (hd / 2);
    const float* sn = st.rope_sin.data() + int64_t(st.pos[size_t(t)]) * (hd / 2);
    if (c.rope_interleaved) {
      rope_apply_interleaved(q, c.n_heads, hd, cs, sn);
      rope_apply_interleaved(k, c.n_kv_heads, hd, cs, sn);
    } else {
      rope_apply(q, c.n_heads, hd, cs, sn);
      rope_apply(k, c.n_kv_heads, hd, cs, sn);
    }
    if (bf16) {
      round_bf16_inplace(q, qd);
      round_bf16_inplace(k, kvd);
    }
  }
}

void attention_forward(ForwardState& st, int l) {
  const ModelConfig& c = *st.cfg;
  const LayerWeights& lw = st.w->layers[size_t(l)];
  ThreadPool& pool = *st.pool;
  const int64_t T = st.T, H = c.hidden;
  const int hd = c.head_dim;
  const int64_t qd = int64_t(c.n_heads) * hd, kvd = int64_t(c.n_kv_heads) * hd;

  const float* norm_w = st.vecs[size_t(l)].attn_norm.data();
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
    norm_rows(c, r1 - r0, st.h.data() + r0 * H, H, norm_w, st.x.data() + r0 * H, H, H);
  });
  if (c.parallel_block) std::memcpy(st.xn.data(), st.x.data(), size_t(T * H) * sizeof(float));

  gemm_xwt(T, st.x.data(), H, lw.wq, st.q.data(), qd, st.compute, false, pool);
  gemm_xwt(T, st.x.data(), H, lw.wk, st.k.data(), kvd, st.compute, false, pool);
  gemm_xwt(T, st.x.data(), H, lw.wv, st.v.data(), kvd, st.compute, false, pool);
  if (recording(st, Site::Q, l) || recording(st, Site::K, l) || recording(st, Site::V, l) ||
      editing(st, Site::Q, l) || editing(st, Site::K, l) || editing(st, Site::V, l)) {
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { qkv_post(st, l, r0, r1, true, false); });
    edit_block(st, Site::Q, l, st.q.data(), qd);
    edit_block(st, Site::K, l, st.k.data(), kvd);
    edit_block(st, Site::V, l, st.v.data(), kvd);
    record_block(st, Site::Q, l, st.q.data(), qd);
    record_block(st, Site::K, l, st.k.data(), kvd);
    record_block(st, Site::V, l, st.v.data(), kvd);
    const bool round_v = st.compute == Compute::BF16 && editing(st, Site::V, l);
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { qkv_post(st, l, r0, r1, false, true, round_v); });
  } else {
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { qkv_post(st, l, r0, r1, true, true); });
  }

  // With a cache, the sequence's keys are its cached positions followed by the new ones: append, then read
  // everything from the cache. Without one, the keys are the sequence's own rows of k/v.
  if (st.cache) {
    for (const SeqSpan& s : st.seqs) {
      std::memcpy(st.cache->k(l, s.slot) + int64_t(s.pos0) * kvd, st.k.data() + s.row0 * kvd,
                  size_t(s.len) * size_t(kvd) * sizeof(float));
      std::memcpy(st.cache->v(l, s.slot) + int64_t(s.pos0) * kvd, st.v.data() + s.row0 * kvd,
                  size_t(s.len) * size_t(kvd) * sizeof(float));
    }
  }

  // Tasks are (block of query rows, KV head, chunk of the query heads that share it). A whole GQA group per task
  // lets the tile kernel use every key and value it loads for all heads of the group and several rows at once;
  // the group is split (halves, quarters...) only when that leaves fewer than two tasks per thread (decoding one
  // sequence with few KV heads). Causal imbalance (late rows see more keys) is absorbed by the pool's dynamic
  // scheduling.
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = c.attn_scale();
  const int32_t window = c.window_of(l);
  const float cap = c.attn_softcap;
  const int64_t n_blocks = int64_t(st.blocks.size());
  int per_task = group;
  while (per_task > 1 && n_blocks * c.n_kv_heads * ((group + per_task - 1) / per_task) < 2 * int64_t(pool.size()))
    per_task = (per_task + 1) / 2;
  const int chunks = (group + per_task - 1) / per_task;
  pool.parallel_for(n_blocks * c.n_kv_heads * chunks, [&](int64_t task, int thread) {
    const int chunk = int(task % chunks);
    const int kvh = int(task / chunks % c.n_kv_heads);
    const AttnBlock& b = st.blocks[size_t(task / chunks / c.n_kv_heads)];
    const SeqSpan& s = st.seqs[size_t(b.seq)];
    const float *kb, *vb;
    if (st.cache) {
      kb = st.cache->k(l, s.slot);
      vb = st.cache->v(l, s.slot);
    } else {
      kb = st.k.data() + s.row0 * kvd;
      vb = st.v.data() + s.row0 * kvd;
    }
    kb += int64_t(kvh) * hd;
    vb += int64_t(kvh) * hd;
    const int h0 = kvh * group + chunk * per_task, nh = std::min(per_task, group - chunk * per_task);
    const int32_t rows = b.q1 - b.q0;
    const int64_t t0 = s.row0 + b.q0;  // first row of the block in the batch
    const float* q = st.q.data() + t0 * qd + int64_t(h0) * hd;
    float* out = st.att.data() + t0 * qd + int64_t(h0) * hd;
    // The tile kernel computes plain causal attention from key 0: usable unless the scores are capped or a row of
    // the block has keys outside its window.
    const bool plain_causal = cap == 0.f && (window == 0 || s.pos0 + b.q1 <= window);
    if (plain_causal && int64_t(rows) * nh >= kAttnMinTileVectors) {
      // Row i of the block sits at position pos0 + q0 + i and sees keys 0..own position (causal).
      float* scratch = pool.scratch(thread, ThreadPool::Scratch::Attention, attend_causal_scratch_floats(hd));
      attend_causal(q, qd, rows, nh, kb, vb, kvd, s.pos0 + b.q0, hd, scale, out, qd, scratch);
      return;
    }
    // Too few query vectors to fill a tile (decoding: one row): one row of one head at a time.
    float* p = st.scores.data() + int64_t(thread) * st.max_ctx;
    // Also the path of capped scores and of windows: row i at position p sees keys first..p.
    for (int32_t i = 0; i < rows; ++i) {
      const int32_t p_i = s.pos0 + b.q0 + i;
      const int32_t first = window > 0 ? std::max(0, p_i - window + 1) : 0;
      for (int g = 0; g < nh; ++g) {
        const float* qi = q + int64_t(i) * qd + int64_t(g) * hd;
        float* oi = out + int64_t(i) * qd + int64_t(g) * hd;
        if (cap > 0)
          attend_row_capped(qi, kb + int64_t(first) * kvd, vb + int64_t(first) * kvd, kvd, p_i - first + 1, hd,
                            scale, cap, p, oi);
        else
          attend_row(qi, kb + int64_t(first) * kvd, vb + int64_t(first) * kvd, kvd, p_i - first + 1, hd, scale, p,
                     oi);
      }
    }
  });

  if (!recording(st, Site::O, l) && !editing(st, Site::O, l) && !c.post_norms) {
    gemm_xwt(T, st.att.data(), qd, lw.wo, st.h.data(), H, st.compute, /*accumulate=*/true, pool);
    return;
  }
  // Site `o` (and Gemma 2's post-attention norm): the projection's own output goes to x (free since the q/k/v
  // products), is edited, recorded, normed with the post-norm, then added to the residual stream.
  gemm_xwt(T, st.att.data(), qd, lw.wo, st.x.data(), H, st.compute, /*accumulate=*/false, pool);
  edit_block(st, Site::O, l, st.x.data(), H);
  record_block(st, Site::O, l, st.x.data(), H);
  const float* post_w = st.vecs[size_t(l)].attn_post_norm.data();
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
    if (c.post_norms) norm_rows(c, r1 - r0, st.x.data() + r0 * H, H, post_w, st.x.data() + r0 * H, H, H);
    add_inplace(st.h.data() + r0 * H, st.x.data() + r0 * H, (r1 - r0) * H);
  });
}

}  // namespace detail
}  // namespace ln
