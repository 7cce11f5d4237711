// The FFN half of a decoder layer (SwiGLU):
//   x = rmsnorm(h) * ffn_norm;  g = x Wgate^T;  u = x Wup^T;  a = silu(g);  hh = a * u;  h += hh Wdown^T.
// The [tokens x intermediate] block between the up/gate and the down projections is where the per-neuron
// work of langneurons happens (statistics and interventions), so it is kept as one visible step:
// ffn_activation_rows, or ffn_activation_recorded when the sites gate / act / up / h are recorded.
// Interventions (model/intervention.h) are applied in both, at their site (gate, act, up, h), before that site is
// recorded; those at `down` to the projection's own output (edit_pass.h).
// Family variants: the activation is silu or Gemma's gelu_tanh (act_inplace); Cohere's parallel block reads the
// layer's normed input kept by the attention half (st.xn) instead of norming h again; Gemma 2 norms the down
// projection's output (post-feedforward norm) before the residual add.
#include <algorithm>

#include "kernels/ops.h"
#include "model/edit_pass.h"
#include "model/forward_state.h"
#include "model/site_pass.h"

namespace ln {
namespace detail {

// x = act(x) with the model's activation (sites gate -> act).
static void act_inplace(const ForwardState& st, float* x, int64_t n) {
  if (st.cfg->act == Activation::GeluTanh)
    gelu_tanh_inplace(x, n);
  else
    silu_inplace(x, n);
}

// Test-time rules of layer l: rule_values[t][k] = factor * statistic of token t's row at the rule's site, taken
// before any edit of the layer (a pass of its own, so both activation loops see the same values).
static void compute_rule_values(ForwardState& st, int l) {
  const Intervention& iv = *st.intervention;
  const int32_t n_rules = iv.n_rules(l), R = iv.max_rules_per_layer();
  const RowRule* rules = iv.layer_rules(l);
  const int64_t I = st.cfg->intermediate;
  st.pool->parallel_for((st.T + kRowBlock - 1) / kRowBlock, [&](int64_t blk, int thread) {
    float* row = st.rule_work.data() + int64_t(thread) * 2 * I;
    float* work = row + I;
    for (int64_t t = blk * kRowBlock; t < std::min(st.T, (blk + 1) * kRowBlock); ++t) {
      const float* g = st.g.data() + t * I;
      for (int32_t k = 0; k < n_rules; ++k) {
        const RowRule& r = rules[k];
        std::copy(g, g + I, row);
        if (r.site != Site::Gate) act_inplace(st, row, I);
        if (r.site == Site::H) mul_inplace(row, st.u.data() + t * I, I);
        st.rule_values[size_t(t * R + k)] = r.factor * row_statistic(row, I, r.stat, r.percentile, work);
      }
    }
  });
}

// Rows [r0, r1) of the neuron block, in place in g (and u): gate -> act, up -> h = act * up, with the edits of
// each site.
static void ffn_activation_rows(ForwardState& st, int l, int64_t r0, int64_t r1) {
  const int64_t I = st.cfg->intermediate;
  const EditRange eg = edit_range(st, l, Site::Gate, 0, I), ea = edit_range(st, l, Site::Act, 0, I),
                  eu = edit_range(st, l, Site::Up, 0, I), eh = edit_range(st, l, Site::H, 0, I);
  for (int64_t t = r0; t < r1; ++t) {
    float* g = st.g.data() + t * I;
    float* u = st.u.data() + t * I;
    if (eg.any()) apply_edits(eg.b, eg.e, g, 0, token_class(st, t), rule_values(st, t));
    act_inplace(st, g, I);
    if (ea.any()) apply_edits(ea.b, ea.e, g, 0, token_class(st, t), rule_values(st, t));
    if (eu.any()) apply_edits(eu.b, eu.e, u, 0, token_class(st, t), nullptr);
    mul_inplace(g, u, I);
    if (eh.any()) apply_edits(eh.b, eh.e, g, 0, token_class(st, t), rule_values(st, t));
  }
}

// The same computation with the statistics / capture of the neuron sites fused in, split over the threads by
// columns (site_pass.h): each task runs its columns through every token, recording gate before the
// activation, act after it, up, and h after the product, while the row segment is in cache. Each site is
// recorded after its edits.
static void ffn_activation_recorded(ForwardState& st, int l) {
  const int64_t I = st.cfg->intermediate;
  const int64_t cw = chunk_units(I, st.pool->size());
  st.pool->parallel_for((I + cw - 1) / cw, [&](int64_t task, int) {
    const int64_t c0 = task * cw, c1 = std::min(I, c0 + cw), n = c1 - c0;
    SiteChunk gate(st, Site::Gate, l, c0, c1), act(st, Site::Act, l, c0, c1), up(st, Site::Up, l, c0, c1),
        h(st, Site::H, l, c0, c1);
    const EditRange eg = edit_range(st, l, Site::Gate, c0, c1), ea = edit_range(st, l, Site::Act, c0, c1),
                    eu = edit_range(st, l, Site::Up, c0, c1), eh = edit_range(st, l, Site::H, c0, c1);
    for (size_t s = 0; s < st.seqs.size(); ++s) {
      const SeqSpan& sp = st.seqs[s];
      for (int64_t t = sp.row0; t < sp.row0 + sp.len; ++t) {
        float* g = st.g.data() + t * I + c0;
        float* u = st.u.data() + t * I + c0;
        if (eg.any()) apply_edits(eg.b, eg.e, g, c0, token_class(st, t), rule_values(st, t));
        if (gate.active()) gate.row(t, g);
        act_inplace(st, g, n);
        if (ea.any()) apply_edits(ea.b, ea.e, g, c0, token_class(st, t), rule_values(st, t));
        if (act.active()) act.row(t, g);
        if (eu.any()) apply_edits(eu.b, eu.e, u, c0, token_class(st, t), nullptr);
        if (up.active()) up.row(t, u);
        mul_inplace(g, u, n);
        if (eh.any()) apply_edits(eh.b, eh.e, g, c0, token_class(st, t), rule_values(st, t));
        if (h.active()) h.row(t, g);
      }
      for (SiteChunk* c : {&gate, &act, &up, &h}) c->end_sequence(int32_t(s));
    }
    for (SiteChunk* c : {&gate, &act, &up, &h}) c->finish();
  });
}

void ffn_forward(ForwardState& st, int l) {
  const ModelConfig& c = *st.cfg;
  const LayerWeights& lw = st.w->layers[size_t(l)];
  ThreadPool& pool = *st.pool;
  const int64_t T = st.T, H = c.hidden, I = c.intermediate;

  const float* xin = c.parallel_block ? st.xn.data() : st.x.data();
  if (!c.parallel_block) {
    const float* norm_w = st.vecs[size_t(l)].ffn_norm.data();
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
      norm_rows(c, r1 - r0, st.h.data() + r0 * H, H, norm_w, st.x.data() + r0 * H, H, H);
    });
  }
  gemm_xwt(T, xin, H, lw.w_gate, st.g.data(), I, st.compute, false, pool);
  gemm_xwt(T, xin, H, lw.w_up, st.u.data(), I, st.compute, false, pool);
  if (st.intervention && st.intervention->n_rules(l) > 0) compute_rule_values(st, l);
  if (recording(st, Site::Gate, l) || recording(st, Site::Act, l) || recording(st, Site::Up, l) ||
      recording(st, Site::H, l))
    ffn_activation_recorded(st, l);
  else
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { ffn_activation_rows(st, l, r0, r1); });
  if (!recording(st, Site::Down, l) && !editing(st, Site::Down, l) && !c.post_norms) {
    gemm_xwt(T, st.g.data(), I, lw.w_down, st.h.data(), H, st.compute, /*accumulate=*/true, pool);
    return;
  }
  // Site `down` (and Gemma 2's post-feedforward norm): the projection's own output is needed, so it goes to x (free
  // since the gate/up products), is edited, recorded, normed with the post-norm, and added to the residual stream.
  gemm_xwt(T, st.g.data(), I, lw.w_down, st.x.data(), H, st.compute, /*accumulate=*/false, pool);
  edit_block(st, Site::Down, l, st.x.data(), H);
  record_block(st, Site::Down, l, st.x.data(), H);
  const float* post_w = st.vecs[size_t(l)].ffn_post_norm.data();
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
    if (c.post_norms) norm_rows(c, r1 - r0, st.x.data() + r0 * H, H, post_w, st.x.data() + r0 * H, H, H);
    add_inplace(st.h.data() + r0 * H, st.x.data() + r0 * H, (r1 - r0) * H);
  });
}

}  // namespace detail
}  // namespace ln
