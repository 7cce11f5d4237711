#include "model/next_token.h"

#include <algorithm>

#include "kernels/math.h"

namespace ln {

void plan_penalty_ids(int32_t n_seqs, double penalty, const int32_t* ids, const int64_t* offsets, int64_t vocab,
                      std::vector<int32_t>& out_ids, std::vector<int64_t>& out_offsets, std::vector<uint8_t>& seen) {
  out_ids.clear();
  out_offsets.assign(size_t(n_seqs) + 1, 0);
  const bool any = penalty != 1.0 && ids && offsets;
  if (any && seen.size() < size_t(vocab)) seen.resize(size_t(vocab), 0);
  for (int32_t s = 0; s < n_seqs; ++s) {
    const size_t first = out_ids.size();
    if (any) {
      for (int64_t i = offsets[s]; i < offsets[s + 1]; ++i) {
        const int32_t id = ids[i];
        if (!seen[size_t(id)]) {
          seen[size_t(id)] = 1;
          out_ids.push_back(id);
        }
      }
      for (size_t i = first; i < out_ids.size(); ++i) seen[size_t(out_ids[i])] = 0;  // all 0 again for the next row
    }
    out_offsets[size_t(s) + 1] = int64_t(out_ids.size());
  }
}

NextToken pick_next_token(float* row, int64_t V, double penalty, const int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i) row[ids[i]] = math::repetition_penalty(row[ids[i]], penalty);
  NextToken t;
  int64_t best = 0;
  bool nonzero = false;
  for (int64_t j = 0; j < V; ++j) {
    const float x = row[j];
    if (t.first_nonfinite < 0 && !isfinite(x)) {
      t.first_nonfinite = int32_t(j);
      t.nonfinite_value = x;
    }
    nonzero = nonzero || x != 0.f;
    if (math::next_token_beats(x, j, row[best], best)) best = j;
  }
  t.token = int32_t(best);
  t.logit = row[best];
  t.all_zero = nonzero ? 0 : 1;
  return t;
}

}  // namespace ln
