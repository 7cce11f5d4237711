// The runtime's pick of the next token (LogitsMode::Greedy, model/next_token.h): the pick rules on hand-worked
// rows, the penalty lists, and the CPU engine's Greedy forward against the argmax of its own Last logits with the
// repetition penalty applied as src/generate/sampling.ts applies it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "model/model.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace ln;
using namespace lntiny;

namespace {

NextToken pick(std::vector<float> row, double penalty = 1.0, std::vector<int32_t> ids = {}) {
  return pick_next_token(row.data(), int64_t(row.size()), penalty, ids.data(), int64_t(ids.size()));
}

// Hugging Face's order: penalise each distinct id once (positive / p, else * p), then the first index of the max.
int32_t reference_pick(const float* logits, int64_t V, double penalty, const std::vector<int32_t>& ids) {
  std::vector<float> row(logits, logits + V);
  for (int32_t id : std::set<int32_t>(ids.begin(), ids.end()))
    row[size_t(id)] = float(row[size_t(id)] < 0 ? double(row[size_t(id)]) * penalty : double(row[size_t(id)]) / penalty);
  int32_t best = 0;
  for (int32_t j = 1; j < int32_t(V); ++j)
    if (row[size_t(j)] > row[size_t(best)]) best = j;
  return best;
}

struct Batch {
  std::vector<int32_t> toks, lens;
  void add(const std::vector<int32_t>& s) {
    toks.insert(toks.end(), s.begin(), s.end());
    lens.push_back(int32_t(s.size()));
  }
  ForwardRequest request(LogitsMode mode) const {
    ForwardRequest r;
    r.tokens = toks.data();
    r.n_tokens = int64_t(toks.size());
    r.seq_lens = lens.data();
    r.n_seqs = int32_t(lens.size());
    r.logits = mode;
    return r;
  }
};

}  // namespace

LN_TEST(next_token_pick_rules) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  NextToken t = pick({0.5f, 2.f, -1.f, 2.f});
  LN_CHECK(t.token == 1 && t.logit == 2.f && t.first_nonfinite == -1 && t.all_zero == 0);  // ties: lowest index
  t = pick({-0.f, 0.f, 0.f});
  LN_CHECK(t.token == 0 && t.all_zero == 1);  // -0 == +0: a tie
  t = pick({1.f, inf, nan, nan, 3.f});
  LN_CHECK(t.token == 2 && std::isnan(t.logit));  // a NaN is the largest (torch.argmax); the first of two
  LN_CHECK(t.first_nonfinite == 1 && t.nonfinite_value == inf);
  t = pick({1.f, -inf, 0.f});
  LN_CHECK(t.token == 0 && t.first_nonfinite == 1 && t.nonfinite_value == -inf && t.all_zero == 0);
  // The penalty: 3 / 2 = 1.5 < 2 (token 1 wins); -1 * 2 = -2; repeats count once.
  t = pick({3.f, 2.f, -1.f}, 2.0, {0, 2});
  LN_CHECK(t.token == 1 && t.logit == 2.f);
  t = pick({3.f, 1.f, -1.f}, 2.0, {0, 2});
  LN_CHECK(t.token == 0 && t.logit == 1.5f);
  std::vector<float> row = {1.f, -1.f};
  pick_next_token(row.data(), 2, 1.1, std::vector<int32_t>{0, 1}.data(), 2);
  LN_CHECK(row[0] == float(1.0 / 1.1) && row[1] == float(-1.0 * 1.1));  // in double, rounded once
}

LN_TEST(next_token_penalty_lists_without_repeats) {
  // Row 2 repeats row 0's ids: the scratch flags must be back to 0 after each row.
  const std::vector<int32_t> ids = {5, 3, 5, 9, 7, 7, 9, 3, 5, 3};
  const std::vector<int64_t> offsets = {0, 4, 4, 6, 10};
  std::vector<int32_t> out;
  std::vector<int64_t> off;
  std::vector<uint8_t> seen;
  plan_penalty_ids(4, 1.3, ids.data(), offsets.data(), 10, out, off, seen);
  LN_CHECK((out == std::vector<int32_t>{5, 3, 9, 7, 9, 3, 5}));  // first occurrences, in order
  LN_CHECK((off == std::vector<int64_t>{0, 3, 3, 4, 7}));
  LN_CHECK(seen.size() == 10 && std::all_of(seen.begin(), seen.end(), [](uint8_t f) { return f == 0; }));
  plan_penalty_ids(4, 1.3, ids.data(), offsets.data(), 10, out, off, seen);  // again, on the same scratch
  LN_CHECK((out == std::vector<int32_t>{5, 3, 9, 7, 9, 3, 5}));
  plan_penalty_ids(4, 1.0, ids.data(), offsets.data(), 10, out, off, seen);  // penalty 1: nothing to do
  LN_CHECK(out.empty() && (off == std::vector<int64_t>{0, 0, 0, 0, 0}));
}

// 70 sequences (more than one 64-row LM-head chunk), each with a penalty list that holds its unpenalised pick
// (so that the penalty must move it), repeats and random ids; then one decode step through a KV cache.
LN_TEST(model_greedy_picks_equal_the_argmax_of_the_last_logits) {
  Tiny tm(TinyOpts{});
  Model m(tm.cfg, tm.w, 2, Compute::F32);
  const int64_t V = tm.cfg.vocab;
  Batch b;
  for (int s = 0; s < 70; ++s) b.add(random_tokens(1 + (s * 7) % 11, int(V), uint32_t(100 + s)));
  ForwardResult last;
  m.forward(b.request(LogitsMode::Last), last);
  const double penalty = 3.0;
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets = {0};
  std::vector<std::vector<int32_t>> per_seq(70);
  for (int s = 0; s < 70; ++s) {
    if (s % 5 != 4) {  // every fifth sequence has no list
      per_seq[size_t(s)] = random_tokens(6, int(V), uint32_t(300 + s));
      per_seq[size_t(s)].push_back(reference_pick(last.logits.data() + s * V, V, 1.0, {}));
      per_seq[size_t(s)].push_back(per_seq[size_t(s)][0]);  // a repeat
    }
    ids.insert(ids.end(), per_seq[size_t(s)].begin(), per_seq[size_t(s)].end());
    offsets.push_back(int64_t(ids.size()));
  }
  ForwardRequest r = b.request(LogitsMode::Greedy);
  r.repetition_penalty = penalty;
  r.penalty_ids = ids.data();
  r.penalty_offsets = offsets.data();
  ForwardResult got;
  m.forward(r, got);
  LN_CHECK(got.logits.empty() && got.next.size() == 70);
  int moved = 0;
  for (int s = 0; s < 70 && got.next.size() == 70; ++s) {
    const float* row = last.logits.data() + s * V;
    const int32_t want = reference_pick(row, V, penalty, per_seq[size_t(s)]);
    LN_CHECK_MSG(got.next[size_t(s)].token == want, "sequence %d: picked %d, want %d", s, got.next[size_t(s)].token, want);
    LN_CHECK(got.next[size_t(s)].first_nonfinite == -1 && got.next[size_t(s)].all_zero == 0);
    moved += want != reference_pick(row, V, 1.0, {});
  }
  LN_CHECK_MSG(moved >= 40, "the penalty moved only %d picks", moved);

  // Prefill two sequences into a cache, then one Greedy decode step = the argmax of a Last decode step.
  CpuKvCache cache(tm.cfg, 2, 32);
  const std::vector<int32_t> slots = {1, 0};
  Batch pre;
  pre.add(random_tokens(9, int(V), 7));
  pre.add(random_tokens(4, int(V), 8));
  ForwardRequest pr = pre.request(LogitsMode::Greedy);
  pr.cache = &cache;
  pr.cache_slots = slots.data();
  ForwardResult first;
  m.forward(pr, first);
  LN_CHECK(first.next.size() == 2);
  Batch step;
  for (const NextToken& t : first.next) step.add({t.token});
  ForwardRequest sr = step.request(LogitsMode::Last);
  sr.cache = &cache;
  sr.cache_slots = slots.data();
  ForwardResult step_last;
  m.forward(sr, step_last);
  for (int s = 0; s < 2; ++s) cache.set_length(slots[size_t(s)], cache.length(slots[size_t(s)]) - 1);
  sr.logits = LogitsMode::Greedy;
  ForwardResult step_pick;
  m.forward(sr, step_pick);
  for (int s = 0; s < 2 && step_pick.next.size() == 2; ++s)
    LN_CHECK(step_pick.next[size_t(s)].token == reference_pick(step_last.logits.data() + s * V, V, 1.0, {}));
}

LN_TEST(model_greedy_penalty_requests_validated) {
  Tiny tm(TinyOpts{});
  Model m(tm.cfg, tm.w, 1, Compute::F32);
  Batch b;
  b.add({1, 2, 3});
  b.add({4});
  std::vector<int32_t> ids = {1, 2, 3};
  std::vector<int64_t> offsets = {0, 2, 3};
  ForwardResult out;
  auto with = [&](LogitsMode mode, double p, const int32_t* i, const int64_t* o) {
    ForwardRequest r = b.request(mode);
    r.repetition_penalty = p;
    r.penalty_ids = i;
    r.penalty_offsets = o;
    m.forward(r, out);
  };
  expect_invalid([&] { with(LogitsMode::Last, 1.2, ids.data(), offsets.data()); }, "logits mode Greedy");
  expect_invalid([&] { with(LogitsMode::Greedy, 0.0, ids.data(), offsets.data()); }, "finite number > 0");
  expect_invalid([&] { with(LogitsMode::Greedy, NAN, ids.data(), offsets.data()); }, "finite number > 0");
  expect_invalid([&] { with(LogitsMode::Greedy, 1.2, ids.data(), nullptr); }, "go together");
  ids[2] = int32_t(tm.cfg.vocab);
  expect_invalid([&] { with(LogitsMode::Greedy, 1.2, ids.data(), offsets.data()); }, "penalty id 64 of sequence 1");
  ids[2] = 3;
  offsets = {0, 3, 2};
  expect_invalid([&] { with(LogitsMode::Greedy, 1.2, ids.data(), offsets.data()); }, "must not decrease");
  // Offsets past the end of the ids (penalty_offsets[n_seqs] = 3 is their length) are refused before any id is read:
  // the two values after the three ids are not ids (they were read, and named as out of the vocabulary).
  std::vector<int32_t> padded = {1, 2, 3, -7, -7};
  offsets = {0, 5, 3};
  expect_invalid([&] { with(LogitsMode::Greedy, 1.2, padded.data(), offsets.data()); }, "must not decrease");
  offsets = {1, 2, 3};
  expect_invalid([&] { with(LogitsMode::Greedy, 1.2, ids.data(), offsets.data()); }, "penalty_offsets[0] must be 0");
  offsets = {0, 2, 3};
  with(LogitsMode::Greedy, 1.2, ids.data(), offsets.data());
  LN_CHECK(out.next.size() == 2);
}
