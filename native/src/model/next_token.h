// The next token of a sequence picked by the runtime (LogitsMode::Greedy, model/model.h): the record each runtime
// returns, and the host reference of the pick that the CPU engine runs and the CUDA kernels are tested against.
// The per-element rules (the repetition penalty, which of two logits wins) are kernels/math.h's.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

namespace ln {

// One sequence's pick from its last logits row, and the checks the caller would otherwise run over that row: the
// first index of the largest logit (torch.argmax: ties to the lowest index, a NaN counts as the largest) after
// the repetition penalty; the row's first non-finite logit; whether every logit is exactly 0. Plain data, the same
// layout on the host and the device (the CUDA kernel writes an array of these).
struct NextToken {
  int32_t token = -1;
  float logit = 0.f;             // the picked token's logit (after the penalty)
  int32_t first_nonfinite = -1;  // index of the row's first NaN / +-Inf logit, -1 when all are finite
  float nonfinite_value = 0.f;   // its value
  int32_t all_zero = 0;          // 1 when every logit of the row is exactly 0 (the final norm's input overflowed)
};
static_assert(sizeof(NextToken) == 20 && std::is_trivially_copyable<NextToken>::value,
              "NextToken is copied between the device and the host as bytes");

// Each sequence's penalised ids without repeats, in the order of their first occurrence: ids[offsets[s] ..
// offsets[s + 1]) for sequence s (n_seqs + 1 offsets); every id in [0, vocab). Both cleared and refilled (capacity
// kept); empty lists when penalty == 1. `seen` is scratch of `vocab` flags, all 0 between calls: a repeat is found
// in O(1), so a step costs O(history), not a sort of it (a batch of 64 histories of 600 ids: 1 ms of sorting).
void plan_penalty_ids(int32_t n_seqs, double penalty, const int32_t* ids, const int64_t* offsets, int64_t vocab,
                      std::vector<int32_t>& out_ids, std::vector<int64_t>& out_offsets, std::vector<uint8_t>& seen);

// The pick from one row of V logits, penalising the n distinct ids first (in place: the row is scratch).
NextToken pick_next_token(float* row, int64_t V, double penalty, const int32_t* ids, int64_t n);

}  // namespace ln
