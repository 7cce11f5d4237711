// The FFN half of a decoder layer (SwiGLU):
//   x = rmsnorm(h) * ffn_norm;  g = x Wgate^T;  u = x Wup^T;  a = silu(g);  hh = a * u;  h += hh Wdown^T.
// The [tokens x intermediate] block between the up/gate and the down projections is where the per-neuron
// work of langneurons happens (statistics and interventions), so it is kept as one visible step:
// ffn_activation_rows, or ffn_activation_recorded when the sites gate / act / up / h are recorded.
#include "kernels/ops.h"
#include "model/forward_state.h"
#include "model/site_pass.h"

namespace ln {
namespace detail {

// Rows [r0, r1) of the neuron block, in place in g: gate -> act -> h = act * up.
static void ffn_activation_rows(ForwardState& st, int l, int64_t r0, int64_t r1) {
  const int64_t I = st.cfg->intermediate;
  for (int64_t t = r0; t < r1; ++t) {
    float* g = st.g.data() + t * I;
    const float* u = st.u.data() + t * I;
    // HOOK (site `gate`): g holds the pre-activation x Wgate^T of token t.
    silu_inplace(g, I);
    // HOOK (site `act`): g now holds a = silu(gate): interventions (zero / set / scale neuron j, i.e. g[j]) go
    // here, before a is multiplied by up. (Statistics are recorded in ffn_activation_recorded.)
    mul_inplace(g, u, I);
    // HOOK (site `h`): g now holds hh = a * up, the input of the down projection.
  }
}

// The same computation with the statistics / capture of the neuron sites fused in, split over the threads by
// columns (site_pass.h): each task runs its columns through every token, recording gate before the
// activation, act after it, up, and h after the product, while the row segment is in cache.
static void ffn_activation_recorded(ForwardState& st, int l) {
  const int64_t I = st.cfg->intermediate;
  const int64_t cw = chunk_units(I, st.pool->size());
  st.pool->parallel_for((I + cw - 1) / cw, [&](int64_t task, int) {
    const int64_t c0 = task * cw, c1 = std::min(I, c0 + cw), n = c1 - c0;
    SiteChunk gate(st, Site::Gate, l, c0, c1), act(st, Site::Act, l, c0, c1), up(st, Site::Up, l, c0, c1),
        h(st, Site::H, l, c0, c1);
    for (size_t s = 0; s < st.seqs.size(); ++s) {
      const SeqSpan& sp = st.seqs[s];
      for (int64_t t = sp.row0; t < sp.row0 + sp.len; ++t) {
        float* g = st.g.data() + t * I + c0;
        const float* u = st.u.data() + t * I + c0;
        if (gate.active()) gate.row(t, g);
        silu_inplace(g, n);
        if (act.active()) act.row(t, g);
        if (up.active()) up.row(t, u);
        mul_inplace(g, u, n);
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

  const float* norm_w = st.vecs[size_t(l)].ffn_norm.data();
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
    rmsnorm_rows(r1 - r0, st.h.data() + r0 * H, H, norm_w, st.x.data() + r0 * H, H, H, c.rms_eps);
  });
  gemm_xwt(T, st.x.data(), H, lw.w_gate, st.g.data(), I, st.compute, false, pool);
  gemm_xwt(T, st.x.data(), H, lw.w_up, st.u.data(), I, st.compute, false, pool);
  if (recording(st, Site::Gate, l) || recording(st, Site::Act, l) || recording(st, Site::Up, l) ||
      recording(st, Site::H, l))
    ffn_activation_recorded(st, l);
  else
    for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { ffn_activation_rows(st, l, r0, r1); });
  if (!recording(st, Site::Down, l)) {
    gemm_xwt(T, st.g.data(), I, lw.w_down, st.h.data(), H, st.compute, /*accumulate=*/true, pool);
    return;
  }
  // Site `down`: the projection's own output is needed, so it goes to x (free since the gate/up products) and
  // is added to the residual stream after recording.
  gemm_xwt(T, st.g.data(), I, lw.w_down, st.x.data(), H, st.compute, /*accumulate=*/false, pool);
  record_block(st, Site::Down, l, st.x.data(), H);
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) {
    add_inplace(st.h.data() + r0 * H, st.x.data() + r0 * H, (r1 - r0) * H);
  });
}

}  // namespace detail
}  // namespace ln
