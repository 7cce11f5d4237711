// Request validation and sequence planning shared by every runtime (runtime/runtime.h), so that a bad request
// gets the same message on every device and is refused before any state changes.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace ln {

// Throws std::invalid_argument for anything wrong with the request (ids, lengths, masks, the shapes of the
// stats / intervention / cache it carries, cache capacity, positions beyond the context); touches no state.
// The runtime itself checks that the cache is one of its own.
void validate_forward_request(const ModelConfig& c, const ForwardRequest& r);

// One sequence of the packed batch: its rows [row0, row0 + len), its first position (0, or the cache length it
// continues from) and its cache slot (-1 without a cache).
struct SequencePlan {
  int64_t row0;
  int32_t len;
  int32_t pos0;
  int32_t slot;
};

// The batch's sequences in order, each token's position, and the longest key range (cached + new) of any
// sequence. Call after validate_forward_request. `seqs` and `pos` are cleared and refilled (their capacity is
// kept, so a runtime that reuses them allocates nothing once warmed up).
void plan_sequences(const ForwardRequest& r, std::vector<SequencePlan>& seqs, std::vector<int32_t>& pos,
                    int32_t& max_ctx);

}  // namespace ln
