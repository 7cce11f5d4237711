// The FFN half of a decoder layer (SwiGLU):
//   x = rmsnorm(h) * ffn_norm;  g = x Wgate^T;  u = x Wup^T;  a = silu(g);  hh = a * u;  h += hh Wdown^T.
// The [tokens x intermediate] block between the up/gate and the down projections is where the per-neuron
// work of langneurons happens (statistics and interventions), so it is kept as one visible step:
// ffn_activation_rows.
#include "kernels/ops.h"
#include "model/forward_state.h"

namespace ln {
namespace detail {

// Rows [r0, r1) of the neuron block, in place in g: gate -> act -> h = act * up.
static void ffn_activation_rows(ForwardState& st, int l, int64_t r0, int64_t r1) {
  const int64_t I = st.cfg->intermediate;
  for (int64_t t = r0; t < r1; ++t) {
    float* g = st.g.data() + t * I;
    const float* u = st.u.data() + t * I;
    // HOOK (site `gate`): g holds the pre-activation x Wgate^T of token t: statistics read it here.
    silu_inplace(g, I);
    // HOOK (site `act`): g now holds a = silu(gate): statistics (count of a > 0, sum, sum of squares) and
    // interventions (zero / set / scale neuron j, i.e. g[j]) go here, before a is multiplied by up.
    mul_inplace(g, u, I);
    // HOOK (site `h`): g now holds hh = a * up, the input of the down projection: statistics and interventions
    // on hh go here.
  }
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
  for_row_blocks(pool, T, [&](int64_t r0, int64_t r1) { ffn_activation_rows(st, l, r0, r1); });
  gemm_xwt(T, st.g.data(), I, lw.w_down, st.h.data(), H, st.compute, /*accumulate=*/true, pool);
}

}  // namespace detail
}  // namespace ln
