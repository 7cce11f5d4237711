// The CPU-checkable parts of the CUDA runtime: its host plans (cuda/plans.h: attention rows and tiles, statistics
// chunks, sequence-means rows) and the math.h functions its site kernels share with the CPU engine
// (histogram_bin = site_pass.cpp's bin search, quantile_sorted = intervention.cpp's quantiles, apply_edit_op =
// intervention.h's apply_edits). These run on every machine; the kernels themselves are tested by
// native_gpu_tests on a GPU. Also which GPUs a build's code loads on (runtime/cuda_archs.h).
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cuda/plans.h"
#include "kernels/math.h"
#include "model/intervention.h"
#include "runtime/cuda_archs.h"
#include "test_util.h"

using namespace ln;

namespace {

std::vector<SequencePlan> packed(const std::vector<int32_t>& lens, const std::vector<int32_t>& pos0 = {},
                                 const std::vector<int32_t>& slots = {}) {
  std::vector<SequencePlan> s;
  int64_t row = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    s.push_back({row, lens[i], pos0.empty() ? 0 : pos0[i], slots.empty() ? -1 : slots[i]});
    row += lens[i];
  }
  return s;
}

}  // namespace

LN_TEST(cuda_plan_attention_rows_and_tiles) {
  for (bool cached : {false, true}) {
    const std::vector<int32_t> lens = {1, 63, 64, 65, 130};
    const auto seqs = cached ? packed(lens, {5, 0, 17, 1, 60}, {3, 0, 4, 1, 2}) : packed(lens);
    const int64_t cap = 300;
    std::vector<int64_t> kv_row, key_row0;
    std::vector<int32_t> n_keys;
    std::vector<cuda::AttnTile> tiles;
    cuda::plan_attention(seqs, cached ? cap : -1, kv_row, key_row0, n_keys, tiles);
    const int64_t T = 323;
    LN_CHECK(int64_t(kv_row.size()) == T && int64_t(n_keys.size()) == T);
    std::vector<int> covered(size_t(T), 0);
    for (const cuda::AttnTile& tile : tiles) {
      LN_CHECK(tile.n_rows >= 1 && tile.n_rows <= cuda::kFlashRows);
      for (int32_t i = 0; i < tile.n_rows; ++i) {
        const int64_t t = tile.q_row0 + i;
        ++covered[size_t(t)];
        LN_CHECK(key_row0[size_t(t)] == tile.key_row0);  // one sequence per tile
        LN_CHECK(n_keys[size_t(t)] == tile.nkeys0 + i);  // causal: one more key per row
      }
    }
    for (int c : covered) LN_CHECK(c == 1);
    for (const SequencePlan& s : seqs)
      for (int32_t i = 0; i < s.len; ++i) {
        const int64_t t = s.row0 + i;
        LN_CHECK(n_keys[size_t(t)] == s.pos0 + i + 1);
        LN_CHECK(key_row0[size_t(t)] == (cached ? s.slot * cap : s.row0));
        LN_CHECK(kv_row[size_t(t)] == (cached ? s.slot * cap + s.pos0 + i : t));
        // The row's own key is the last one it attends to.
        LN_CHECK(key_row0[size_t(t)] + n_keys[size_t(t)] - 1 == kv_row[size_t(t)]);
      }
  }
}

LN_TEST(cuda_plan_stats_chunks_and_sequence_rows) {
  const auto seqs = packed({1, 300, 128, 129, 5});
  std::vector<cuda::StatsChunk> chunks;
  cuda::plan_stats_chunks(seqs, 128, chunks);
  int64_t next = 0;
  for (const cuda::StatsChunk& c : chunks) {
    LN_CHECK(c.row0 == next);  // in row order, no gap, no overlap
    LN_CHECK(c.n >= 1 && c.n <= 128);
    const SequencePlan& s = seqs[size_t(c.seq)];
    LN_CHECK(c.row0 >= s.row0 && c.row0 + c.n <= s.row0 + s.len);  // inside one sequence
    next += c.n;
  }
  LN_CHECK(next == 563);
  LN_CHECK(chunks.size() == 1 + 3 + 1 + 2 + 1);

  std::vector<uint8_t> mask(563, 1);
  mask[0] = 0;                                               // sequence 0: nothing counted
  for (int64_t t = 1; t < 301; t += 2) mask[size_t(t)] = 0;  // sequence 1: half
  std::vector<int64_t> counted, row;
  LN_CHECK(cuda::plan_sequence_rows(seqs, mask.data(), counted, row) == 4);
  LN_CHECK(counted[0] == 0 && row[0] == -1);
  LN_CHECK(counted[1] == 150 && row[1] == 0);
  LN_CHECK(counted[2] == 128 && row[2] == 1 && row[4] == 3);
  LN_CHECK(cuda::plan_sequence_rows(seqs, nullptr, counted, row) == 5);
  LN_CHECK(counted[0] == 1 && row[0] == 0 && row[4] == 4);
}

LN_TEST(math_histogram_bin_matches_site_pass_search) {
  const std::vector<double> edges = {-2, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2};
  const int64_t B = int64_t(edges.size()) - 1;
  std::vector<float> xs = {-5.f, -2.f, -1.f, 0.f, 2.f, 3.f, -0.0f, NAN, INFINITY, -INFINITY, 1e-30f, -1e-30f};
  for (double e : edges) {
    xs.push_back(float(e));
    xs.push_back(std::nextafter(float(e), 10.f));
    xs.push_back(std::nextafter(float(e), -10.f));
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.f, 1.5f);
  for (int i = 0; i < 2000; ++i) xs.push_back(N(rng));
  for (float x : xs) {
    // site_pass.cpp add_to_histogram
    const int64_t above_or_at = std::upper_bound(edges.data(), edges.data() + B + 1, double(x)) - edges.data();
    const int64_t want = std::min(B - 1, std::max<int64_t>(0, above_or_at - 1));
    LN_CHECK_MSG(math::histogram_bin(double(x), edges.data(), B) == want, "x = %g", double(x));
  }
}

LN_TEST(math_quantile_sorted_matches_row_statistic) {
  std::mt19937 rng(4);
  std::normal_distribution<float> N(0.f, 1.f);
  for (int64_t n : {int64_t(1), int64_t(2), int64_t(7), int64_t(100), int64_t(1001)}) {
    std::vector<float> x(static_cast<size_t>(n)), work(static_cast<size_t>(n));
    for (float& v : x) v = N(rng);
    std::vector<float> s = x;
    std::sort(s.begin(), s.end());
    LN_CHECK(math::quantile_sorted(s.data(), n, 0.5) == row_statistic(x.data(), n, RowStat::Median, 50.f, work.data()));
    for (float p : {0.f, 12.5f, 90.f, 100.f})
      LN_CHECK(math::quantile_sorted(s.data(), n, double(p) / 100.0) ==
               row_statistic(x.data(), n, RowStat::Percentile, p, work.data()));
    LN_CHECK(math::quantile_sorted(s.data(), n, 0.75) - math::quantile_sorted(s.data(), n, 0.25) ==
             row_statistic(x.data(), n, RowStat::Iqr, 50.f, work.data()));
    // MAD: the median of |x - median|, sorted again.
    const float med = math::quantile_sorted(s.data(), n, 0.5);
    std::vector<float> d(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) d[size_t(i)] = std::fabs(x[size_t(i)] - med);
    std::sort(d.begin(), d.end());
    LN_CHECK(math::quantile_sorted(d.data(), n, 0.5) == row_statistic(x.data(), n, RowStat::Mad, 50.f, work.data()));
  }
}

LN_TEST(math_apply_edit_op_matches_apply_edits) {
  for (int op = 0; op < kInterveneOpCount; ++op)
    for (float y : {-1.5f, 0.f, 2.25f})
      for (float v : {-0.5f, 0.f, 3.f}) {
        Edit e{0, InterveneOp(op), uint8_t(0xff), int16_t(-1), v};
        float x = y;
        apply_edits(&e, &e + 1, &x, 0, 0xff, nullptr);
        LN_CHECK(math::apply_edit_op(uint8_t(op), y, v) == x);
      }
}

// Which GPUs a build's code loads on (runtime/cuda_archs.h), by CUDA's compatibility rules: machine code within its
// major version from its minor up, PTX on every newer capability, `a` code on its GPU alone.
LN_TEST(cuda_arch_problem_follows_the_compatibility_rules) {
  struct Case { const char* archs; int major, minor; bool runs; };
  const Case cases[] = {
      {"80;90", 8, 0, true},  {"80;90", 8, 6, true},  {"80;90", 8, 9, true},    // RTX 3090, 4090 run sm_80 code
      {"80;90", 9, 0, true},  {"80;90", 10, 0, true}, {"80;90", 12, 0, true},   // Blackwell: PTX compute_90
      {"80;90", 7, 5, false}, {"80;90", 7, 0, false}, {"80,90", 7, 5, false},   // T4, V100
      {"80-real;90-real", 10, 0, false}, {"80-real;90-real", 8, 6, true},        // no PTX: nothing for 10.0
      {"86-real", 8, 0, false}, {"86-real", 8, 9, true},                         // machine code needs minor >= 6
      {"90-virtual", 8, 9, false}, {"90-virtual", 12, 0, true},
      {"90a-real", 9, 0, true}, {"90a", 10, 0, false}, {"90a-virtual", 9, 0, true},
      {"100f-real", 10, 3, true}, {"100f", 12, 0, false}, {"100-real", 10, 3, true},
      {"75;80;90", 7, 5, true}, {" 80 ; 90 ", 7, 5, false},
      {"all", 3, 0, true}, {"native", 7, 5, true}, {"80;all-major", 7, 5, true}, {"", 7, 5, true},  // cannot tell
  };
  for (const Case& c : cases) {
    const std::string why = cuda_arch_problem(c.archs, c.major, c.minor);
    LN_CHECK_MSG(why.empty() == c.runs, "archs '%s' on %d.%d: '%s'\n", c.archs, c.major, c.minor, why.c_str());
  }
  const std::string why = cuda_arch_problem("80;90", 7, 5);
  LN_CHECK_MSG(why == "compute capability 7.5, and this build's GPU code is for LN_CUDA_ARCHITECTURES=\"80;90\" only "
                      "(its kernels cannot load there); rebuild for this GPU with LN_CUDA_ARCHITECTURES=\"75;80;90\" "
                      "npm rebuild langneurons (the CUDA toolkit must target sm_75)",
               "%s\n", why.c_str());
}
