// The host half of the deterministic embedding backward (cuda/train_kernels.h embedding_backward): the batch's
// rows grouped by token, so that one GPU block per distinct token adds that token's rows in row order, without
// atomics, in the order the CPU's serial loop (train/layers.h embedding_backward) adds them.
// Plain C++17, header-only; reuses the vectors' capacity (no allocation once they have grown to the batch size).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace ln {
namespace train {

struct TokenGroups {
  std::vector<int64_t> order;        // row indices sorted by (token, row): stable by token
  std::vector<int32_t> group_token;  // the distinct tokens, ascending
  std::vector<int64_t> group_start;  // group g holds order[group_start[g] .. group_start[g + 1]); n_groups + 1 values
  int64_t n_groups() const { return int64_t(group_token.size()); }
};

// Groups the T rows of `tokens` by token into *out (its previous contents are replaced).
inline void plan_token_groups(const int32_t* tokens, int64_t T, TokenGroups* out) {
  out->order.resize(size_t(T));
  for (int64_t i = 0; i < T; ++i) out->order[size_t(i)] = i;
  // (token, row) is a total order, so an unstable sort gives the stable result and needs no buffer.
  std::sort(out->order.begin(), out->order.end(), [tokens](int64_t a, int64_t b) {
    return tokens[a] != tokens[b] ? tokens[a] < tokens[b] : a < b;
  });
  out->group_token.clear();
  out->group_start.clear();
  for (int64_t i = 0; i < T; ++i) {
    const int32_t tok = tokens[out->order[size_t(i)]];
    if (i == 0 || tok != out->group_token.back()) {
      out->group_token.push_back(tok);
      out->group_start.push_back(i);
    }
  }
  out->group_start.push_back(T);
}

}  // namespace train
}  // namespace ln
