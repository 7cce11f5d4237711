// Applying an intervention's edits during the CPU forward (internal to the model runtime; model/intervention.h
// has the semantics). The FFN loop (ffn.cpp) applies the neuron sites' edits inside its own pass over the
// [tokens x intermediate] block; edit_block is the pass over a finished projection output (q, k, v, o, down).
#pragma once
#include <algorithm>
#include <cstdint>

#include "model/forward_state.h"
#include "model/intervention.h"

namespace ln {
namespace detail {

// The edits of the current intervention at (layer l, site) on units [c0, c1): empty without one.
struct EditRange {
  const Edit* b = nullptr;
  const Edit* e = nullptr;
  bool any() const { return b != e; }
};

inline EditRange edit_range(const ForwardState& st, int l, Site site, int64_t c0, int64_t c1) {
  const Intervention* iv = st.intervention;
  if (!iv || !iv->any(l, site)) return {};
  auto below = [](const Edit& x, int64_t n) { return x.neuron < n; };
  const Edit* b = std::lower_bound(iv->begin(l, site), iv->end(l, site), c0, below);
  return {b, std::lower_bound(b, iv->end(l, site), c1, below)};
}

// True when the current intervention edits `site` at layer l.
inline bool editing(const ForwardState& st, Site site, int l) {
  return st.intervention && st.intervention->any(l, site);
}

// Position class of token t (every class without a mask).
inline uint8_t token_class(const ForwardState& st, int64_t t) {
  return st.intervene_mask ? st.intervene_mask[t] : uint8_t(0xff);
}

// Token t's test-time rule values at the current layer (null when the intervention has no rules).
inline const float* rule_values(const ForwardState& st, int64_t t) {
  const int32_t R = st.intervention ? st.intervention->max_rules_per_layer() : 0;
  return R > 0 ? st.rule_values.data() + t * R : nullptr;
}

// Applies the edits of `site` at layer l to the [T x width] block (row stride ld), row by row in parallel.
// For the projection sites, which have no test-time rules.
void edit_block(ForwardState& st, Site site, int l, float* block, int64_t ld);

}  // namespace detail
}  // namespace ln
