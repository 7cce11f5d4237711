// The attention half of a decoder layer:
//   x = rmsnorm(h) * attn_norm;  q, k, v = x Wq^T (+bq), x Wk^T (+bk), x Wv^T (+bv);  RoPE on q, k;
//   per sequence and head: softmax(q k^T / sqrt(head_dim)) over positions <= own position, times v;
//   h += concat(heads) Wo^T.
// Grouped-query attention: query head hq reads kv head hq / (n_heads / n_kv_heads).
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
#include "model/forward_state.h"
#include "model/site_pass.h"

namespace ln {
namespace detail {

// Bias, bf16 rounding (`pre`) and RoPE (`rope`) of the projected q, k, v rows [r0, r1). Run as one pass, or as
// two with the recording of the sites q, k, v between them.
static void qkv_post(ForwardState& st, int l, int64_t r0, int64_t r1, bool pre, bool rope) {
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
    const float* cs = st.rope_cos.data() + int64_t(st.pos[size_t(t)]) * (hd / 2);
    const float* sn = st.rope_sin.data() + int64_t(st.pos[size_t(t)]) * (hd / 2);
    rope_apply(q, c.n_heads, hd, cs, sn);
    rope_apply(k, c.n_kv_heads, hd, cs, sn);
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
    rmsnorm_rows(r1 - r0, st.h.data() + r0 * H, H, norm_w, st.x.data() + r0 * H, H, H, c.rms_eps);
  });

  gemm_xwt(T, st.x.data(), H, lw.wq, st.q.data(), qd, st.compute, false, pool);
  gemm_xwt(T, st.x.data(), H, lw.wk, st.k.data(), kvd, st.compute, false, pool);
  gemm_xwt(T, st.x.data(), H, lw.wv, st.v.data(), kvd, st.compute, false, pool);
  if (recording(st, Site::Q, l) || recording(st, Site::K, l) || recording(st, Site::V, l)) {
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { qkv_post(st, l, r0, r1, true, false); });
    record_block(st, Site::Q, l, st.q.data(), qd);
    record_block(st, Site::K, l, st.k.data(), kvd);
    record_block(st, Site::V, l, st.v.data(), kvd);
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { qkv_post(st, l, r0, r1, false, true); });
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
  const float scale = float(1.0 / std::sqrt(double(hd)));
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
    if (int64_t(rows) * nh >= kAttnMinTileVectors) {
      // Row i of the block sits at position pos0 + q0 + i and sees keys 0..own position (causal).
      float* scratch = pool.scratch(thread, ThreadPool::Scratch::Attention, attend_causal_scratch_floats(hd));
      attend_causal(q, qd, rows, nh, kb, vb, kvd, s.pos0 + b.q0, hd, scale, out, qd, scratch);
      return;
    }
    // Too few query vectors to fill a tile (decoding: one row): one row of one head at a time.
    float* p = st.scores.data() + int64_t(thread) * st.max_ctx;
    for (int32_t i = 0; i < rows; ++i)
      for (int g = 0; g < nh; ++g)
        attend_row(q + int64_t(i) * qd + int64_t(g) * hd, kb, vb, kvd, s.pos0 + b.q0 + i + 1, hd, scale, p,
                   out + int64_t(i) * qd + int64_t(g) * hd);
  });

  if (!recording(st, Site::O, l)) {
    gemm_xwt(T, st.att.data(), qd, lw.wo, st.h.data(), H, st.compute, /*accumulate=*/true, pool);
    return;
  }
  // Site `o`: the projection's own output goes to x (free since the q/k/v products), is recorded, then added to
  // the residual stream.
  gemm_xwt(T, st.att.data(), qd, lw.wo, st.x.data(), H, st.compute, /*accumulate=*/false, pool);
  record_block(st, Site::O, l, st.x.data(), H);
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
    add_inplace(st.h.data() + r0 * H, st.x.data() + r0 * H, (r1 - r0) * H);
  });
}

}  // namespace detail
}  // namespace ln
