// Activation statistics accumulated inside the forward (model/stats.h) against a float64 recomputation from the
// engine's own captured activations, on the tiny random models of tiny_model.h; count mask, sequence means,
// packing, last_layer, the plain/AVX2 row kernels, and option / request validation.
#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "kernels/ops.h"
#include "kernels/stats_kernels.h"
#include "model/stats.h"
#include "ref_model.h"
#include "kernel_families.h"
#include "kernels/kernel_table.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace ln;
using namespace lntiny;

namespace {

const std::vector<Site> kAllSites = {Site::Act, Site::Gate, Site::H,  Site::Up,   Site::Q,
                                     Site::K,   Site::V,    Site::O,  Site::Down, Site::Resid};

struct Batch {
  std::vector<int32_t> tokens, lens;
  std::vector<uint8_t> mask;  // empty: all counted
};

// seqs packed in order; mask_seqs[s] false masks all of sequence s; the first token of every sequence (a
// stand-in for BOS) is never counted when skip_first.
Batch make_batch(const std::vector<std::vector<int32_t>>& seqs, bool skip_first,
                 const std::vector<bool>& counted_seqs = {}) {
  Batch b;
  for (size_t s = 0; s < seqs.size(); ++s) {
    b.tokens.insert(b.tokens.end(), seqs[s].begin(), seqs[s].end());
    b.lens.push_back(int32_t(seqs[s].size()));
    for (size_t i = 0; i < seqs[s].size(); ++i) {
      const bool seq_on = counted_seqs.empty() || counted_seqs[s];
      b.mask.push_back(seq_on && !(skip_first && i == 0));
    }
  }
  return b;
}

ForwardResult forward(Model& m, const Batch& b, ActivationStats* stats, int32_t last_layer = -1,
                      Site capture_site = Site::Act, int32_t capture_layer = -1, bool use_mask = true) {
  ForwardRequest r;
  r.tokens = b.tokens.data();
  r.n_tokens = int64_t(b.tokens.size());
  r.seq_lens = b.lens.data();
  r.n_seqs = int32_t(b.lens.size());
  r.logits = LogitsMode::None;
  r.stats = stats;
  r.count_mask = use_mask && stats ? b.mask.data() : nullptr;
  r.last_layer = last_layer;
  r.capture_site = capture_site;
  r.capture_layer = capture_layer;
  ForwardResult out;
  m.forward(r, out);
  return out;
}

StatsOptions full_options(const ModelConfig& c, int layers, uint32_t seed) {
  StatsOptions o;
  o.sites = kAllSites;
  o.n_layers = layers;
  o.hist_edges = {-2, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2};
  o.seq_means = true;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> U(-0.5f, 0.5f);
  for (Site s : {Site::Act, Site::Q, Site::Down}) {
    std::vector<float>& th = o.thresholds[int(s)];
    th.resize(size_t(layers * site_width(c, s)));
    for (float& x : th) x = U(rng);
  }
  return o;
}

bool same_counts(const ActivationStats& a, const ActivationStats& b) {
  if (a.tokens() != b.tokens() || a.sequences() != b.sequences()) return false;
  for (const SiteStats& x : a.sites()) {
    const SiteStats* y = b.find(x.site);
    if (!y || x.over_zero != y->over_zero || x.hist != y->hist || x.above != y->above) return false;
  }
  return true;
}

// max |a - b| / (|b| + 1) over the sums, sums of squares and sequence means of every site.
double sums_diff(const ActivationStats& a, const ActivationStats& b) {
  double worst = 0;
  auto cmp = [&](const auto& u, const auto& v) {
    if (u.size() != v.size()) worst = INFINITY;
    for (size_t i = 0; i < std::min(u.size(), v.size()); ++i)
      worst = std::max(worst, std::fabs(double(u[i]) - double(v[i])) / (std::fabs(double(v[i])) + 1));
  };
  for (const SiteStats& x : a.sites()) {
    const SiteStats* y = b.find(x.site);
    if (!y) return INFINITY;
    cmp(x.sum, y->sum);
    cmp(x.sum_sq, y->sum_sq);
    cmp(x.abs_sum, y->abs_sum);
    cmp(x.seq_means, y->seq_means);
  }
  return worst;
}

}  // namespace

// Every site, every profiled layer, every option, against float64 statistics of the captured activations.
LN_TEST(stats_match_float64_recomputation_from_capture) {
  TinyOpts o;
  o.bias = true;  // q/k/v are recorded after the bias
  Tiny tm(o);
  const ModelConfig& c = tm.cfg;
  Model m(tm.cfg, tm.w, 2, Compute::F32);
  const int L = 2;  // of 3: the last layer is not profiled
  const StatsOptions opts = full_options(c, L, 3);
  ActivationStats stats(c, opts);
  const Batch b = make_batch({random_tokens(21, c.vocab, 1), random_tokens(9, c.vocab, 2), random_tokens(14, c.vocab, 3)},
                             true, {true, false, true});
  forward(m, b, &stats);
  const int64_t T = int64_t(b.tokens.size());
  int64_t counted = 0;
  for (uint8_t x : b.mask) counted += x;
  LN_CHECK(stats.tokens() == counted && counted == 20 + 13);
  LN_CHECK(stats.sequences() == 2);  // the fully masked sequence has no mean row

  const std::vector<double>& E = opts.hist_edges;
  const int64_t B = int64_t(E.size()) - 1;
  for (Site site : kAllSites) {
    const SiteStats& st = *stats.find(site);
    const int64_t W = site_width(c, site);
    LN_CHECK(st.width == W && int64_t(st.seq_means.size()) == 2 * L * W);
    int64_t bad_counts = 0;
    double worst_sum = 0, worst_mean = 0;
    for (int l = 0; l < L; ++l) {
      // The same recording set in the capture run (a throwaway stats object), so the same code path.
      ActivationStats shadow(c, opts);
      const std::vector<float> cap = forward(m, b, &shadow, -1, site, l).capture;
      LN_CHECK(int64_t(cap.size()) == T * W);
      for (int64_t j = 0; j < W; ++j) {
        int64_t over = 0, above = 0;
        std::vector<int64_t> hist(size_t(B), 0);
        double sum = 0, sq = 0, abs = 0;
        const int64_t u = l * W + j;
        for (int64_t t = 0; t < T; ++t) {
          if (!b.mask[size_t(t)]) continue;
          const double v = cap[size_t(t * W + j)];
          over += v > 0;
          sum += v;
          sq += v * v;
          abs += std::fabs(v);
          if (!st.thresholds.empty()) above += v > double(st.thresholds[size_t(u)]);
          int64_t bin = 0;
          while (bin + 1 < B && v >= E[size_t(bin + 1)]) ++bin;
          ++hist[size_t(bin)];
        }
        bad_counts += over != st.over_zero[size_t(u)];
        if (!st.above.empty()) bad_counts += above != st.above[size_t(u)];
        for (int64_t k = 0; k < B; ++k) bad_counts += hist[size_t(k)] != st.hist[size_t(u * B + k)];
        worst_sum = std::max({worst_sum, std::fabs(sum - st.sum[size_t(u)]) / (std::fabs(sum) + 1e-30),
                              std::fabs(sq - st.sum_sq[size_t(u)]) / (sq + 1e-30),
                              std::fabs(abs - st.abs_sum[size_t(u)]) / (abs + 1e-30)});
        // Sequence means: rows 0 and 1 are sequences 0 and 2.
        int64_t row = 0;
        for (int s : {0, 2}) {
          int64_t t0 = 0;
          for (int k = 0; k < s; ++k) t0 += b.lens[size_t(k)];
          double ms = 0;
          int64_t n = 0;
          for (int64_t t = t0; t < t0 + b.lens[size_t(s)]; ++t)
            if (b.mask[size_t(t)]) ms += cap[size_t(t * W + j)], ++n;
          const double got = st.seq_means[size_t((row * L + l) * W + j)];
          worst_mean = std::max(worst_mean, std::fabs(got - ms / double(n)) / (std::fabs(ms / double(n)) + 1e-3));
          ++row;
        }
      }
    }
    LN_CHECK_MSG(bad_counts == 0, "site %s: %lld counts differ", site_name(site), (long long)bad_counts);
    LN_CHECK_MSG(worst_sum < 1e-12, "site %s: sums differ by %g relative", site_name(site), worst_sum);
    LN_CHECK_MSG(worst_mean < 1e-6, "site %s: sequence means differ by %g", site_name(site), worst_mean);
    // Not vacuous: values on both sides of zero, and of the thresholds.
    int64_t oz = 0;
    for (int64_t x : st.over_zero) oz += x;
    LN_CHECK_MSG(oz > 0 && oz < counted * L * W, "site %s: over_zero total %lld", site_name(site), (long long)oz);
  }
  // The capture of the act site is silu(gate) of the gate capture: bit for bit with the engine's silu_inplace (the
  // active kernel's), and within silu's bound (4e-7 relative, kernels/ops.h) of the exact value.
  ActivationStats shadow(c, opts);
  const auto gate = forward(m, b, &shadow, -1, Site::Gate, 1).capture;
  const auto act = forward(m, b, &shadow, -1, Site::Act, 1).capture;
  std::vector<float> again(gate);
  silu_inplace(again.data(), int64_t(again.size()));
  double worst = 0, worst_exact = 0;
  for (size_t i = 0; i < gate.size(); ++i) {
    worst = std::max(worst, double(std::fabs(again[i] - act[i])));
    const double exact = double(gate[i]) / (1 + std::exp(-double(gate[i])));
    worst_exact = std::max(worst_exact, std::fabs(exact - double(act[i])) / (std::fabs(exact) + 1e-30));
  }
  LN_CHECK_MSG(worst == 0, "act != silu_inplace(gate): %g", worst);
  LN_CHECK_MSG(worst_exact < 4e-7, "act vs the exact silu of gate: %g relative", worst_exact);
}

// Recording changes nothing in the forward's output (act/gate/up/h are fused into the same arithmetic; o and
// down are computed then added, which may round differently, so they are compared with a tolerance).
LN_TEST(stats_do_not_change_logits) {
  Tiny tm(TinyOpts{});
  Model m(tm.cfg, tm.w, 2, Compute::F32);
  const Batch b = make_batch({random_tokens(30, tm.cfg.vocab, 9)}, false);
  auto logits = [&](std::vector<Site> sites) {
    ForwardRequest r;
    r.tokens = b.tokens.data();
    r.n_tokens = int64_t(b.tokens.size());
    r.seq_lens = b.lens.data();
    r.n_seqs = 1;
    r.logits = LogitsMode::All;
    StatsOptions o;
    o.sites = sites.empty() ? std::vector<Site>{Site::Act} : sites;
    o.n_layers = tm.cfg.n_layers;
    ActivationStats st(tm.cfg, o);
    r.stats = sites.empty() ? nullptr : &st;
    ForwardResult out;
    m.forward(r, out);
    return out.logits;
  };
  const auto plain = logits({});
  LN_CHECK(logits({Site::Act, Site::Gate, Site::H, Site::Up, Site::Q, Site::K, Site::V}) == plain);
  LN_CHECK(logits({Site::Resid}) == plain);  // the residual stream is read in place, never written
  const auto od = logits({Site::O, Site::Down});
  double worst = 0;
  for (size_t i = 0; i < plain.size(); ++i) worst = std::max(worst, double(std::fabs(od[i] - plain[i])));
  LN_CHECK_MSG(worst < 1e-4, "o/down recording moved logits by %g", worst);
}

// A sequence alone, packed between masked ones, and two batches accumulated vs one: same counts.
LN_TEST(stats_alone_packed_and_sharded_agree) {
  Tiny tm(TinyOpts{});
  const ModelConfig& c = tm.cfg;
  Model m(tm.cfg, tm.w, 2, Compute::F32);
  const StatsOptions opts = full_options(c, c.n_layers, 5);
  const auto a = random_tokens(17, c.vocab, 1), x = random_tokens(6, c.vocab, 2), y = random_tokens(25, c.vocab, 3);

  ActivationStats alone(c, opts), packed(c, opts);
  forward(m, make_batch({a}, true), &alone);
  forward(m, make_batch({x, a, y}, true, {false, true, false}), &packed);
  LN_CHECK(alone.tokens() == 16 && packed.tokens() == 16 && packed.sequences() == 1);
  LN_CHECK(same_counts(alone, packed));
  LN_CHECK_MSG(sums_diff(packed, alone) < 1e-5, "alone vs packed sums: %g", sums_diff(packed, alone));

  ActivationStats one(c, opts), two(c, opts);
  forward(m, make_batch({a, x, y}, true), &one);
  forward(m, make_batch({a, x}, true), &two);
  forward(m, make_batch({y}, true), &two);
  LN_CHECK(one.tokens() == 45 && one.sequences() == 3);
  LN_CHECK(same_counts(one, two));
  LN_CHECK_MSG(sums_diff(two, one) < 1e-5, "one vs two forwards: %g", sums_diff(two, one));
  // Sequence means are appended in order, and reset / clear_seq_means do what they say.
  LN_CHECK(two.find(Site::Act)->seq_means.size() == size_t(3 * c.n_layers * c.intermediate));
  two.clear_seq_means();
  LN_CHECK(two.find(Site::Act)->seq_means.empty() && two.tokens() == 45);
  two.reset();
  LN_CHECK(two.tokens() == 0 && two.sequences() == 0);
  for (const SiteStats& s : two.sites())
    LN_CHECK(std::all_of(s.over_zero.begin(), s.over_zero.end(), [](int64_t v) { return v == 0; }) &&
             std::all_of(s.sum.begin(), s.sum.end(), [](double v) { return v == 0; }));
  // Without a mask every token counts.
  ActivationStats all(c, opts);
  forward(m, make_batch({a, x}, true), &all, -1, Site::Act, -1, /*use_mask=*/false);
  LN_CHECK(all.tokens() == 23 && all.sequences() == 2);
}

LN_TEST(stats_last_layer_stops_early_with_identical_stats) {
  TinyOpts o;
  o.layers = 4;
  Tiny tm(o);
  const ModelConfig& c = tm.cfg;
  Model m(tm.cfg, tm.w, 2, Compute::F32);
  const StatsOptions opts = full_options(c, 2, 7);
  const Batch b = make_batch({random_tokens(19, c.vocab, 4), random_tokens(8, c.vocab, 5)}, true);
  ActivationStats full(c, opts), early(c, opts);
  forward(m, b, &full);
  forward(m, b, &early, 1);
  LN_CHECK(same_counts(full, early));
  LN_CHECK(sums_diff(early, full) == 0);
  // The capture of a later layer is refused with last_layer; so are a cache and deeper stats. (Logits and targets are
  // the logit lens: test_model.cpp.)
  expect_invalid([&] { forward(m, b, nullptr, 1, Site::Act, 2); }, "capture layer must be in [0, 2)");
  expect_invalid([&] { forward(m, b, &full, 0); }, "stops after layer 0");
  expect_invalid([&] { forward(m, b, nullptr, 4); }, "last_layer must be -1 (all) or in [0, 4)");
  ForwardRequest r;
  r.tokens = b.tokens.data();
  r.n_tokens = int64_t(b.tokens.size());
  r.seq_lens = b.lens.data();
  r.n_seqs = 2;
  r.last_layer = 2;
  r.logits = LogitsMode::None;
  ForwardResult out;
  CpuKvCache cache(c, 2, 64);
  std::vector<int32_t> slots{0, 1};
  r.cache = &cache;
  r.cache_slots = slots.data();
  expect_invalid([&] { m.forward(r, out); }, "no cache with last_layer");
  LN_CHECK(cache.length(0) == 0);
}

// The row kernels: every family's (the kernel table's entry) gives the plain version's counts and float64 sums,
// bit for bit, tails included (lengths around the 8- and 16-unit steps).
LN_TEST(stats_row_kernels_of_every_family_agree_with_plain) {
  for (CpuKernel fam : kernel_families_to_test()) {
  if (fam == CpuKernel::Plain) continue;
  const auto accumulate_fam = kernel_table(fam).accumulate_row;
  std::mt19937 rng(11);
  std::normal_distribution<float> N(0.f, 1.f);
  for (int64_t n : {1, 7, 8, 13, 16, 17, 33, 64, 203}) {
    std::vector<float> th(static_cast<size_t>(n));
    for (float& x : th) x = N(rng) * 0.5f;
    struct Acc {
      std::vector<int32_t> oz, ab;
      std::vector<double> s, q, as, ss;
    } p, v;
    for (Acc* a : {&p, &v}) {
      a->oz.assign(size_t(n), 0);
      a->ab.assign(size_t(n), 0);
      a->s.assign(size_t(n), 0);
      a->q.assign(size_t(n), 0);
      a->as.assign(size_t(n), 0);
      a->ss.assign(size_t(n), 0);
    }
    auto accs = [&](Acc& a, bool with_options) {
      RowAccumulators r;
      r.over_zero = a.oz.data();
      r.sum = a.s.data();
      r.sum_sq = a.q.data();
      r.abs_sum = a.as.data();
      if (with_options) {
        r.thresholds = th.data();
        r.above = a.ab.data();
        r.seq_sum = a.ss.data();
      }
      return r;
    };
    std::vector<float> row(static_cast<size_t>(n));
    for (int t = 0; t < 50; ++t) {
      for (float& x : row) x = N(rng) * (t % 3 == 0 ? 1e3f : 1.f);
      if (t == 7) std::fill(row.begin(), row.end(), 0.f);  // exactly zero is not > 0
      const bool opt = t % 2 == 0;
      accumulate_row_plain(row.data(), n, accs(p, opt));
      accumulate_fam(row.data(), n, accs(v, opt));
    }
    LN_CHECK_MSG(p.oz == v.oz && p.ab == v.ab, "%s n=%lld: counts differ", kernel_name(fam), (long long)n);
    LN_CHECK_MSG(p.s == v.s && p.q == v.q && p.as == v.as && p.ss == v.ss, "%s n=%lld: sums differ", kernel_name(fam),
                 (long long)n);
    int64_t total = 0;
    for (int32_t x : p.oz) total += x;
    LN_CHECK(total > 0 && total < 49 * n);
  }
  }
}

// Site resid is the residual stream after each layer: at the last layer, normed by the final norm, it is the
// float64 reference's final hidden state (ref_model.h); its width is hidden.
LN_TEST(stats_resid_is_the_residual_stream) {
  TinyOpts o;
  o.bias = true;
  Tiny tm(o);
  const ModelConfig& c = tm.cfg;
  Model m(c, tm.w, 2, Compute::F32);
  lnref::RefModel ref(c, tm.w);
  const auto toks = random_tokens(17, c.vocab, 5);
  const Batch b = make_batch({toks}, false);
  LN_CHECK(site_width(c, Site::Resid) == c.hidden);
  const auto cap = forward(m, b, nullptr, -1, Site::Resid, c.n_layers - 1).capture;
  const auto want = ref.final_states(toks);
  const int64_t H = c.hidden;
  LN_CHECK(cap.size() == want.size());
  double num = 0, den = 0;
  for (size_t t = 0; t < toks.size(); ++t) {
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += double(cap[t * H + i]) * cap[t * H + i];
    const double r = 1.0 / std::sqrt(ss / double(H) + double(c.rms_eps));
    for (int64_t i = 0; i < H; ++i) {
      const double got = double(cap[t * H + i]) * r * ref.final_norm[size_t(i)], w = want[t * H + i];
      num += (got - w) * (got - w);
      den += w * w;
    }
  }
  LN_CHECK_MSG(std::sqrt(num / den) < 1e-4, "resid (final-normed) vs float64 final states: %g relative", std::sqrt(num / den));
  // Earlier layers differ from the last (not a copy of one buffer).
  const auto first = forward(m, b, nullptr, -1, Site::Resid, 0).capture;
  double diff = 0;
  for (size_t i = 0; i < first.size(); ++i) diff += std::fabs(first[i] - cap[i]);
  LN_CHECK(diff > 1e-3);
}

LN_TEST(stats_capture_without_stats) {
  Tiny tm(TinyOpts{});
  Model m(tm.cfg, tm.w, 1, Compute::F32);
  const Batch b = make_batch({random_tokens(10, tm.cfg.vocab, 8)}, false);
  const auto q = forward(m, b, nullptr, -1, Site::Q, 0).capture;
  LN_CHECK(q.size() == size_t(10 * tm.cfg.n_heads * tm.cfg.head_dim));
  const auto d = forward(m, b, nullptr, -1, Site::Down, 2).capture;
  LN_CHECK(d.size() == size_t(10 * tm.cfg.hidden));
  LN_CHECK(std::any_of(d.begin(), d.end(), [](float x) { return x != 0.f; }));
  LN_CHECK(forward(m, b, nullptr).capture.empty());
  expect_invalid([&] { forward(m, b, nullptr, -1, Site::Act, 3); }, "capture layer must be in [0, 3)");
  expect_invalid([&] { forward(m, b, nullptr, -1, Site(42), 0); }, "unknown capture site");
}

LN_TEST(stats_reject_bad_options_and_requests) {
  Tiny tm(TinyOpts{});
  const ModelConfig& c = tm.cfg;
  auto make = [&](auto mutate) {
    StatsOptions o;
    o.sites = {Site::Act};
    o.n_layers = 2;
    mutate(o);
    ActivationStats s(c, o);
  };
  expect_invalid([&] { make([](StatsOptions& o) { o.sites.clear(); }); }, "no sites");
  expect_invalid([&] { make([](StatsOptions& o) { o.sites = {Site::Act, Site::Q, Site::Act}; }); }, "'act' requested twice");
  expect_invalid([&] { make([](StatsOptions& o) { o.sites = {Site(kSiteCount)}; }); }, "unknown site 10");  // kSiteCount
  expect_invalid([&] { make([](StatsOptions& o) { o.n_layers = 0; }); }, "layers must be in [1, 3]");
  expect_invalid([&] { make([](StatsOptions& o) { o.n_layers = 4; }); }, "layers must be in [1, 3]");
  expect_invalid([&] { make([](StatsOptions& o) { o.hist_edges = {1}; }); }, "at least 2");
  expect_invalid([&] { make([](StatsOptions& o) { o.hist_edges = {0, 1, 1}; }); }, "strictly ascending (edge 2");
  expect_invalid([&] { make([](StatsOptions& o) { o.hist_edges = {0, NAN}; }); }, "not finite");
  expect_invalid([&] { make([](StatsOptions& o) { o.thresholds[int(Site::Act)].assign(159, 0.f); }); },
                 "2 x 80 = 160 values, got 159");
  expect_invalid([&] { make([](StatsOptions& o) { o.thresholds[int(Site::Q)].assign(96, 0.f); }); },
                 "'q', which is not profiled");

  // A stats object of another model shape; a mask without stats.
  TinyOpts wide;
  wide.inter = 96;
  Tiny other(wide);
  StatsOptions o;
  o.sites = {Site::Act};
  o.n_layers = 1;
  ActivationStats foreign(other.cfg, o);
  Model m(c, tm.w, 1, Compute::F32);
  const Batch b = make_batch({random_tokens(5, c.vocab, 1)}, false);
  expect_invalid([&] { forward(m, b, &foreign); }, "different shape");
  ForwardRequest r;
  r.tokens = b.tokens.data();
  r.n_tokens = 5;
  r.seq_lens = b.lens.data();
  r.n_seqs = 1;
  r.count_mask = b.mask.data();
  ForwardResult out;
  expect_invalid([&] { m.forward(r, out); }, "count_mask given without stats");
  LN_CHECK(foreign.tokens() == 0);
}
