#include "runtime/request.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "model/intervention.h"
#include "model/site_pass.h"

namespace ln {

namespace {

// The repetition penalty of LogitsMode::Greedy (model/model.h): a positive finite factor, ids within the vocabulary.
void validate_penalty(const ModelConfig& c, const ForwardRequest& r) {
  using std::to_string;
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  const bool penalised = r.repetition_penalty != 1.0 || r.penalty_ids || r.penalty_offsets;
  if (!penalised) return;
  if (r.logits != LogitsMode::Greedy)
    fail("forward: a repetition penalty is applied only when the runtime picks the next token (logits mode Greedy)");
  if (!(r.repetition_penalty > 0.0) || !std::isfinite(r.repetition_penalty))
    fail("forward: repetition_penalty must be a finite number > 0, got " + to_string(r.repetition_penalty));
  if (!r.penalty_ids != !r.penalty_offsets) fail("forward: penalty_ids and penalty_offsets go together");
  if (!r.penalty_offsets) return;
  if (r.penalty_offsets[0] != 0) fail("forward: penalty_offsets[0] must be 0, got " + to_string(r.penalty_offsets[0]));
  // Every offset first, then the ids: penalty_offsets[n_seqs] is the length of penalty_ids, so only offsets known
  // not to decrease bound the reads (offsets {0, 5, 3} over 3 ids read ids[3] and ids[4] when checked as we went).
  for (int32_t s = 0; s < r.n_seqs; ++s)
    if (r.penalty_offsets[s + 1] < r.penalty_offsets[s])
      fail("forward: penalty_offsets must not decrease (sequence " + to_string(s) + ")");
  for (int32_t s = 0; s < r.n_seqs; ++s) {
    for (int64_t i = r.penalty_offsets[s]; i < r.penalty_offsets[s + 1]; ++i)
      if (r.penalty_ids[i] < 0 || r.penalty_ids[i] >= c.vocab)
        fail("forward: penalty id " + to_string(r.penalty_ids[i]) + " of sequence " + to_string(s) +
             " is outside the vocabulary [0, " + to_string(c.vocab) + ")");
  }
}

}  // namespace

void validate_forward_request(const ModelConfig& c, const ForwardRequest& r) {
  using std::to_string;
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  if (r.n_seqs < 1) fail("forward: n_seqs must be >= 1, got " + to_string(r.n_seqs));
  if (r.n_tokens < 1) fail("forward: n_tokens must be >= 1, got " + to_string(r.n_tokens));
  if (!r.tokens || !r.seq_lens) fail("forward: tokens and seq_lens are required");
  if (r.logits != LogitsMode::None && r.logits != LogitsMode::Last && r.logits != LogitsMode::All &&
      r.logits != LogitsMode::LastHidden && r.logits != LogitsMode::Greedy)
    fail("forward: unknown logits mode " + to_string(int(r.logits)));
  int64_t sum = 0;
  for (int32_t s = 0; s < r.n_seqs; ++s) {
    if (r.seq_lens[s] < 1) fail("forward: sequence " + to_string(s) + " has length " + to_string(r.seq_lens[s]) +
                                " (every sequence needs at least one token)");
    sum += r.seq_lens[s];
  }
  if (sum != r.n_tokens)
    fail("forward: seq_lens sum to " + to_string(sum) + " but n_tokens is " + to_string(r.n_tokens));
  for (int64_t t = 0; t < r.n_tokens; ++t)
    if (r.tokens[t] < 0 || r.tokens[t] >= c.vocab)
      fail("forward: token id " + to_string(r.tokens[t]) + " at index " + to_string(t) + " is outside the vocabulary [0, " +
           to_string(c.vocab) + ")");
  if (r.targets)
    for (int64_t t = 0; t < r.n_tokens; ++t)
      if (r.targets[t] < -1 || r.targets[t] >= c.vocab)
        fail("forward: target id " + to_string(r.targets[t]) + " at index " + to_string(t) +
             " is outside the vocabulary (use -1 to skip a position)");

  validate_penalty(c, r);

  if (r.count_mask && !r.stats) fail("forward: count_mask given without stats");
  if (r.intervene_mask && !r.intervention) fail("forward: intervene_mask given without an intervention");
  if (r.intervention && !r.intervention->fits(c))
    fail("forward: the intervention was made for a model of different shape");
  detail::validate_recording(c, r);

  KvCache* kc = r.cache;
  if (kc) {
    if (!r.cache_slots) fail("forward: cache_slots are required with a cache");
    if (!kc->fits(c)) fail("forward: the KV cache was made for a different model shape");
  }
  for (int32_t s = 0; s < r.n_seqs; ++s) {
    int64_t start = 0;
    if (kc) {
      const int32_t slot = r.cache_slots[s];
      if (slot < 0 || slot >= kc->n_slots())
        fail("forward: cache slot " + to_string(slot) + " (sequence " + to_string(s) + ") out of range [0, " +
             to_string(kc->n_slots()) + ")");
      for (int32_t s2 = 0; s2 < s; ++s2)
        if (r.cache_slots[s2] == slot)
          fail("forward: cache slot " + to_string(slot) + " is used by sequences " + to_string(s2) + " and " +
               to_string(s));
      start = kc->length(slot);
      if (start + r.seq_lens[s] > kc->capacity())
        fail("forward: cache slot " + to_string(slot) + " holds " + to_string(start) + " tokens; " +
             to_string(r.seq_lens[s]) + " more exceed its capacity of " + to_string(kc->capacity()));
    }
    if (start + r.seq_lens[s] > c.max_positions) {
      if (start == 0)
        fail("forward: prompt of " + to_string(r.seq_lens[s]) + " tokens exceeds the model's context of " +
             to_string(c.max_positions));
      fail("forward: sequence " + to_string(s) + " would reach position " + to_string(start + r.seq_lens[s] - 1) +
           " (" + to_string(start) + " cached + " + to_string(r.seq_lens[s]) +
           " new tokens), beyond the model's context of " + to_string(c.max_positions));
    }
  }
}

void plan_sequences(const ForwardRequest& r, std::vector<SequencePlan>& seqs, std::vector<int32_t>& pos,
                    int32_t& max_ctx) {
  seqs.clear();
  pos.resize(size_t(r.n_tokens));
  max_ctx = 0;
  int64_t row = 0;
  for (int32_t s = 0; s < r.n_seqs; ++s) {
    const int32_t len = r.seq_lens[s];
    const int32_t slot = r.cache ? r.cache_slots[s] : -1;
    const int32_t pos0 = r.cache ? r.cache->length(slot) : 0;
    seqs.push_back({row, len, pos0, slot});
    for (int32_t i = 0; i < len; ++i) pos[size_t(row + i)] = pos0 + i;
    if (pos0 + len > max_ctx) max_ctx = pos0 + len;
    row += len;
  }
}

}  // namespace ln
