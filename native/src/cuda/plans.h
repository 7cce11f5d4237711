// Host-side plans of a CUDA forward (plain C++, header-only so that native/tests checks them on the CPU):
// per-token attention arguments and tensor-core tiles, and the token chunks of the statistics kernels.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/runtime_kernels.h"
#include "cuda/site_kernels.h"
#include "runtime/request.h"

namespace ln {
namespace cuda {

// For every token t (batch row): kv_row[t], the row its K / V are written to (its own row t, or with a cache
// slot * capacity + position); key_row0[t] and n_keys[t], the first key row and the key count it attends to
// (causal: position + 1); and the attention tiles of at most kFlashRows rows of one sequence each.
// cache_capacity < 0: no cache.
inline void plan_attention(const std::vector<SequencePlan>& seqs, int64_t cache_capacity, std::vector<int64_t>& kv_row,
                           std::vector<int64_t>& key_row0, std::vector<int32_t>& n_keys, std::vector<AttnTile>& tiles) {
  int64_t T = 0;
  for (const SequencePlan& s : seqs) T = std::max<int64_t>(T, s.row0 + s.len);
  kv_row.resize(size_t(T));
  key_row0.resize(size_t(T));
  n_keys.resize(size_t(T));
  tiles.clear();
  for (const SequencePlan& s : seqs) {
    const bool cached = cache_capacity >= 0;
    const int64_t first_key = cached ? int64_t(s.slot) * cache_capacity : s.row0;
    for (int32_t i = 0; i < s.len; ++i) {
      const int64_t t = s.row0 + i;
      kv_row[size_t(t)] = cached ? first_key + s.pos0 + i : t;
      key_row0[size_t(t)] = first_key;
      n_keys[size_t(t)] = s.pos0 + i + 1;
    }
    for (int32_t q0 = 0; q0 < s.len; q0 += kFlashRows)
      tiles.push_back({s.row0 + q0, first_key, std::min(kFlashRows, s.len - q0), s.pos0 + q0 + 1});
  }
}

// The batch's rows cut into chunks of at most chunk_tokens rows, each inside one sequence, in row order.
inline void plan_stats_chunks(const std::vector<SequencePlan>& seqs, int32_t chunk_tokens, std::vector<StatsChunk>& out) {
  out.clear();
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int32_t i = 0; i < seqs[s].len; i += chunk_tokens)
      out.push_back({seqs[s].row0 + i, std::min(chunk_tokens, seqs[s].len - i), int32_t(s)});
}

// Per sequence: counted tokens (mask null: all) and its row among this forward's new sequence-means rows (-1 when
// nothing is counted), as site_pass.cpp's begin_recording. Returns the number of new rows.
inline int64_t plan_sequence_rows(const std::vector<SequencePlan>& seqs, const uint8_t* mask,
                                  std::vector<int64_t>& counted, std::vector<int64_t>& row) {
  counted.assign(seqs.size(), 0);
  row.assign(seqs.size(), -1);
  int64_t next = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    int64_t n = seqs[s].len;
    if (mask) {
      n = 0;
      for (int64_t t = seqs[s].row0; t < seqs[s].row0 + seqs[s].len; ++t) n += mask[t] != 0;
    }
    counted[s] = n;
    if (n > 0) row[s] = next++;
  }
  return next;
}

}  // namespace cuda
}  // namespace ln
