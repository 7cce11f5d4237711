// Interventions (model/intervention.h) on the tiny random models of tiny_model.h: equivalence with edited
// down_proj weights (FFN sites) and with edited projection rows (up, q, k, v, o, down), both activation loops
// (plain and recorded), the KV cache, composition order, position classes, test-time row statistics, and
// validation.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "model/intervention.h"
#include "model/stats.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace ln;
using namespace lntiny;

namespace {

struct Run {
  std::vector<int32_t> tokens, lens;
  std::vector<uint8_t> classes;  // empty: no intervene_mask
};

Run make_run() {
  Run r;
  for (int s = 0; s < 3; ++s) {
    const auto t = random_tokens(5 + 4 * s, 64, uint32_t(11 + s));
    r.tokens.insert(r.tokens.end(), t.begin(), t.end());
    r.lens.push_back(int32_t(t.size()));
  }
  return r;
}

ForwardResult forward(Model& m, const Run& r, const Intervention* iv, ActivationStats* stats = nullptr,
                      Site capture_site = Site::Act, int32_t capture_layer = -1) {
  ForwardRequest q;
  q.tokens = r.tokens.data();
  q.n_tokens = int64_t(r.tokens.size());
  q.seq_lens = r.lens.data();
  q.n_seqs = int32_t(r.lens.size());
  q.logits = LogitsMode::All;
  q.intervention = iv;
  q.intervene_mask = r.classes.empty() ? nullptr : r.classes.data();
  q.stats = stats;
  q.capture_site = capture_site;
  q.capture_layer = capture_layer;
  ForwardResult out;
  m.forward(q, out);
  return out;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) w = std::max(w, double(std::fabs(a[i] - b[i])));
  return w;
}

// Multiplies column j of layer l's down_proj (F32 [hidden, intermediate]) by f, in place.
void scale_down_column(Tiny& t, int l, int j, float f) {
  const WeightRef& w = t.w.layers[size_t(l)].w_down;
  float* p = static_cast<float*>(const_cast<void*>(w.data));
  for (int64_t r = 0; r < w.rows; ++r) p[r * w.cols + j] *= f;
}

EditSpec edit(int layer, Site site, int neuron, InterveneOp op, float value, uint8_t when = 0xff, int rule = -1) {
  EditSpec e;
  e.layer = layer;
  e.site = site;
  e.neuron = neuron;
  e.op = op;
  e.value = value;
  e.when = when;
  e.rule = rule;
  return e;
}

// A stats object over the neuron sites: forces the recorded activation loop.
StatsOptions neuron_sites(int layers) {
  StatsOptions o;
  o.sites = {Site::Act, Site::Gate, Site::H, Site::Up};
  o.n_layers = layers;
  return o;
}

}  // namespace

// Zeroing neurons at act (or h) equals zeroing their down_proj columns; scaling h by 2 equals scaling the
// column by 2 (exact in float); in both activation loops.
LN_TEST(intervene_matches_edited_down_columns) {
  TinyOpts o;
  Tiny base(o);
  Model m(base.cfg, base.w, 2, Compute::F32);
  const Run r = make_run();
  const std::vector<float> plain = forward(m, r, nullptr).logits;
  for (Site site : {Site::Act, Site::H}) {
    for (float f : {0.f, 2.f}) {
      if (site == Site::Act && f != 0.f) continue;  // scaling act by f also scales h: same as the h case
      Tiny edited(o);
      for (int j : {3, 17, 79}) scale_down_column(edited, 1, j, f);
      Model me(edited.cfg, edited.w, 2, Compute::F32);
      const std::vector<float> want = forward(me, r, nullptr).logits;
      const InterveneOp op = f == 0.f ? InterveneOp::Set : InterveneOp::Scale;
      Intervention iv(base.cfg, {edit(1, site, 3, op, f), edit(1, site, 17, op, f), edit(1, site, 79, op, f)}, {});
      const double d = max_diff(forward(m, r, &iv).logits, want);
      ActivationStats stats(base.cfg, neuron_sites(base.cfg.n_layers));
      const double d_rec = max_diff(forward(m, r, &iv, &stats).logits, want);
      LN_CHECK_MSG(d < 1e-5 && d_rec < 1e-5, "site %s f=%g: plain %g, recorded %g", site_name(site), f, d, d_rec);
      LN_CHECK_MSG(max_diff(plain, want) > 1e-3, "the edit is too weak to test anything");
    }
  }
}

namespace {

// The weight whose row j makes unit j of `site` (the output units of a projection; up: up_proj's neuron j), and the
// bias of q / k / v when the model has one.
const WeightRef& site_weight(const LayerWeights& w, Site site) {
  switch (site) {
    case Site::Q: return w.wq;
    case Site::K: return w.wk;
    case Site::V: return w.wv;
    case Site::O: return w.wo;
    case Site::Down: return w.w_down;
    default: return w.w_up;
  }
}
const WeightRef* site_bias(const ModelConfig& c, const LayerWeights& w, Site site) {
  if (!c.qkv_bias) return nullptr;
  return site == Site::Q ? &w.bq : site == Site::K ? &w.bk : site == Site::V ? &w.bv : nullptr;
}

// Multiplies row j of layer l's weight for `site` (and its bias entry) by f, in place (F32 tensors).
void scale_site_row(Tiny& t, int l, Site site, int j, float f) {
  const LayerWeights& lw = t.w.layers[size_t(l)];
  const WeightRef& w = site_weight(lw, site);
  float* p = static_cast<float*>(const_cast<void*>(w.data));
  for (int64_t c = 0; c < w.cols; ++c) p[int64_t(j) * w.cols + c] *= f;
  if (const WeightRef* b = site_bias(t.cfg, lw, site)) static_cast<float*>(const_cast<void*>(b->data))[j] *= f;
}

StatsOptions every_site(int layers) {
  StatsOptions o;
  o.sites = {Site::Act, Site::Gate, Site::H, Site::Up, Site::Q, Site::K, Site::V, Site::O, Site::Down, Site::Resid};
  o.n_layers = layers;
  return o;
}

}  // namespace

// Zeroing (or doubling) unit j of a projection site equals zeroing (doubling) row j of that projection's weight and
// bias: the same float32 values reach the rest of the layer. q / k / v are edited before Qwen3's q/k norm and RoPE,
// o and down before Gemma 2's post-norms, up before the product with act. Plain and recorded paths, a Llama with
// q/k/v biases, Qwen3 and Gemma 2.
LN_TEST(intervene_projection_sites_match_edited_rows) {
  const Site sites[] = {Site::Up, Site::Q, Site::K, Site::V, Site::O, Site::Down};
  for (TinyOpts::Family family : {TinyOpts::Family::Llama, TinyOpts::Family::Qwen3, TinyOpts::Family::Gemma2}) {
    TinyOpts o;
    o.family = family;
    o.bias = family == TinyOpts::Family::Llama;
    Tiny base(o);
    Model m(base.cfg, base.w, 2, Compute::F32);
    const Run r = make_run();
    const std::vector<float> plain = forward(m, r, nullptr).logits;
    for (Site site : sites) {
      const int64_t W = site_width(base.cfg, site);
      const int units[3] = {1, int(W / 2), int(W - 1)};
      for (float f : {0.f, 2.f}) {
        Tiny edited(o);
        for (int j : units) scale_site_row(edited, 1, site, j, f);
        Model me(edited.cfg, edited.w, 2, Compute::F32);
        const std::vector<float> want = forward(me, r, nullptr).logits;
        const InterveneOp op = f == 0.f ? InterveneOp::Set : InterveneOp::Scale;
        std::vector<EditSpec> edits;
        for (int j : units) edits.push_back(edit(1, site, j, op, f));
        const Intervention iv(base.cfg, edits, {});
        const double d = max_diff(forward(m, r, &iv).logits, want);
        ActivationStats stats(base.cfg, every_site(base.cfg.n_layers));
        const double d_rec = max_diff(forward(m, r, &iv, &stats).logits, want);
        LN_CHECK_MSG(d < 1e-5 && d_rec < 1e-5, "family %d site %s f=%g: plain %g, recorded %g", int(family),
                     site_name(site), f, d, d_rec);
        LN_CHECK_MSG(max_diff(plain, want) > 1e-3, "site %s: the edit is too weak to test anything", site_name(site));
      }
    }
  }
}

// A projection site's statistics and capture record the value after its edits; the edits of one unit compose in
// order; position classes select the tokens.
LN_TEST(intervene_projection_sites_record_after_edits) {
  Tiny t{TinyOpts{}};
  Model m(t.cfg, t.w, 2, Compute::F32);
  const Run unclassed = make_run();
  Run r = unclassed;
  for (size_t i = 0; i < r.tokens.size(); ++i) r.classes.push_back(i % 3 == 0 ? 2 : 1);
  const int64_t n = int64_t(r.tokens.size());
  for (Site site : {Site::Up, Site::Q, Site::K, Site::V, Site::O, Site::Down}) {
    const int64_t W = site_width(t.cfg, site);
    const ForwardResult plain = forward(m, unclassed, nullptr, nullptr, site, 1);
    const Intervention iv(t.cfg, {edit(1, site, 3, InterveneOp::Set, 0.25f), edit(1, site, 3, InterveneOp::Scale, 2.f),
                                  edit(1, site, 5, InterveneOp::Add, 1.f, 2)}, {});
    ActivationStats stats(t.cfg, every_site(2));
    const ForwardResult got = forward(m, r, &iv, &stats, site, 1);
    int64_t wrong = 0, added = 0;
    double sum5 = 0;
    for (int64_t tok = 0; tok < n; ++tok)
      for (int64_t j = 0; j < W; ++j) {
        const float was = plain.capture[size_t(tok * W + j)], now = got.capture[size_t(tok * W + j)];
        if (j == 5) sum5 += double(now);
        if (j == 3) wrong += now != 0.5f;
        else if (j == 5 && r.classes[size_t(tok)] == 2) {
          wrong += now != was + 1.f;
          ++added;
        } else wrong += now != was;
      }
    LN_CHECK_MSG(wrong == 0 && added > 0, "site %s: %lld captured values wrong", site_name(site), (long long)wrong);
    const SiteStats& s = *stats.find(site);
    LN_CHECK_MSG(s.sum[size_t(W + 3)] == 0.5 * double(n) && s.over_zero[size_t(W + 3)] == n, "site %s: stats of unit 3",
                 site_name(site));
    LN_CHECK(std::fabs(s.sum[size_t(W + 5)] - sum5) < 1e-4);
  }
}

// Edited keys and values go into the KV cache: a prompt prefilled and continued token by token through the cache
// gives the logits of one forward over the whole sequence, with edits at k and v (and q, o). f32 and bf16.
LN_TEST(intervene_projection_sites_through_the_cache) {
  Tiny t{TinyOpts{}};
  const Intervention iv(t.cfg, {edit(0, Site::K, 2, InterveneOp::Set, 1.5f), edit(1, Site::V, 7, InterveneOp::Scale, -3.f),
                                edit(2, Site::Q, 11, InterveneOp::Add, 0.75f), edit(1, Site::O, 4, InterveneOp::Set, -2.f)},
                          {});
  const std::vector<int32_t> tokens = random_tokens(12, t.cfg.vocab, 9);
  for (Compute mode : {Compute::F32, Compute::BF16}) {
    Model m(t.cfg, t.w, 2, mode);
    Run whole;
    whole.tokens = tokens;
    whole.lens = {int32_t(tokens.size())};
    const std::vector<float> want = forward(m, whole, &iv).logits;
    LN_CHECK(max_diff(want, forward(m, whole, nullptr).logits) > 1e-3);  // the edits matter
    CpuKvCache cache(t.cfg, 1, 16);
    const int32_t slot = 0;
    const int64_t V = t.cfg.vocab;
    double worst = 0;
    for (size_t p = 0; p < tokens.size(); p += p < 5 ? 5 : 1) {  // 5 tokens of prompt, then one at a time
      const size_t len = p < 5 ? 5 : 1;
      ForwardRequest q;
      q.tokens = tokens.data() + p;
      q.n_tokens = int64_t(len);
      const int32_t lens[1] = {int32_t(len)};
      q.seq_lens = lens;
      q.n_seqs = 1;
      q.logits = LogitsMode::All;
      q.cache = &cache;
      q.cache_slots = &slot;
      q.intervention = &iv;
      ForwardResult out;
      m.forward(q, out);
      for (size_t i = 0; i < len; ++i)
        for (int64_t v = 0; v < V; ++v)
          worst = std::max(worst, double(std::fabs(out.logits[size_t(int64_t(i) * V + v)] -
                                                   want[size_t(int64_t(p + i) * V + v)])));
    }
    LN_CHECK_MSG(worst < (mode == Compute::F32 ? 1e-5 : 1e-3), "%s: cached vs whole %g",
                 mode == Compute::F32 ? "f32" : "bf16", worst);
  }
}

// bf16 mode: attention reads v in bf16 (as a bf16 GPU run holds it), so an edited v is rounded like the rest: setting
// v to x gives the logits of setting it to bf16(x); q and k are rounded after RoPE, so for them x and bf16(x) differ.
LN_TEST(intervene_bf16_rounds_edited_v) {
  Tiny t{TinyOpts{}};
  Model m(t.cfg, t.w, 2, Compute::BF16);
  const Run r = make_run();
  const float x = 0.30078125f + 0.0009765625f;  // between two bf16 values (0.30078125 and 0.302734375)
  const float xr = round_bf16(x);
  LN_CHECK(xr != x);
  for (Site site : {Site::V, Site::Q}) {
    const Intervention exact(t.cfg, {edit(1, site, 5, InterveneOp::Set, x)}, {});
    const Intervention rounded(t.cfg, {edit(1, site, 5, InterveneOp::Set, xr)}, {});
    const bool same = forward(m, r, &exact).logits == forward(m, r, &rounded).logits;
    LN_CHECK_MSG(same == (site == Site::V), "site %s: x and bf16(x) give %s logits", site_name(site),
                 same ? "the same" : "different");
  }
}

// No edit changes nothing (bit for bit); setting a value to itself changes nothing.
LN_TEST(intervene_identity_edits_change_nothing) {
  Tiny t{TinyOpts{}};
  Model m(t.cfg, t.w, 2, Compute::F32);
  Run r;
  r.tokens = {5};
  r.lens = {1};
  ForwardResult plain = forward(m, r, nullptr, nullptr, Site::Act, 2);
  plain.logits = forward(m, r, nullptr).logits;  // the plain loop's (the capture runs the recorded one)
  Intervention empty(t.cfg, {}, {});
  LN_CHECK(forward(m, r, &empty).logits == plain.logits);
  std::vector<EditSpec> self;
  for (int j = 0; j < t.cfg.intermediate; j += 7) self.push_back(edit(2, Site::Act, j, InterveneOp::Set, plain.capture[size_t(j)]));
  Intervention same(t.cfg, self, {});
  LN_CHECK(forward(m, r, &same).logits == plain.logits);
  self[0].value += 0.5f;  // and a different value does change them
  Intervention other(t.cfg, self, {});
  LN_CHECK(forward(m, r, &other).logits != plain.logits);
}

// Edits of one neuron apply in the order given; the capture of the site shows the value after the edits.
LN_TEST(intervene_composes_in_order_and_records_after) {
  Tiny t{TinyOpts{}};
  Model m(t.cfg, t.w, 2, Compute::F32);
  const Run r = make_run();
  Intervention set_then_scale(t.cfg, {edit(0, Site::Act, 9, InterveneOp::Set, 1.5f), edit(0, Site::Act, 9, InterveneOp::Scale, 2.f),
                                      edit(0, Site::Act, 4, InterveneOp::Add, 1.f)}, {});
  Intervention scale_then_set(t.cfg, {edit(0, Site::Act, 9, InterveneOp::Scale, 2.f), edit(0, Site::Act, 9, InterveneOp::Set, 1.5f)}, {});
  const ForwardResult plain = forward(m, r, nullptr, nullptr, Site::Act, 0);
  const ForwardResult a = forward(m, r, &set_then_scale, nullptr, Site::Act, 0);
  const ForwardResult b = forward(m, r, &scale_then_set, nullptr, Site::Act, 0);
  const int64_t I = t.cfg.intermediate;
  bool ok = true;
  for (size_t tok = 0; tok < r.tokens.size(); ++tok) {
    ok &= a.capture[tok * I + 9] == 3.f && b.capture[tok * I + 9] == 1.5f;
    ok &= a.capture[tok * I + 4] == plain.capture[tok * I + 4] + 1.f;
    ok &= a.capture[tok * I + 5] == plain.capture[tok * I + 5];
  }
  LN_CHECK(ok);
  // The recorded loop gives the same statistics as the capture says: the sum of act 9 at layer 0 is 3 per token.
  ActivationStats stats(t.cfg, neuron_sites(1));
  forward(m, r, &set_then_scale, &stats);
  LN_CHECK(stats.find(Site::Act)->sum[9] == 3.0 * double(r.tokens.size()));
  // Gate edits act before the activation function: act = silu(value).
  Intervention gate(t.cfg, {edit(0, Site::Gate, 2, InterveneOp::Set, 1.f)}, {});
  const ForwardResult g = forward(m, r, &gate, nullptr, Site::Act, 0);
  LN_CHECK(std::fabs(g.capture[2] - 1.f / (1.f + std::exp(-1.f))) < 1e-6f);
}

// Position classes: an edit for class 1 leaves class-2 tokens untouched and vice versa (layer 0, where the
// FFN runs after every token's attention, so other tokens' edits cannot reach a token's act).
LN_TEST(intervene_position_classes) {
  Tiny t{TinyOpts{}};
  Model m(t.cfg, t.w, 2, Compute::F32);
  Run r = make_run();
  const std::vector<float> plain = forward(m, r, nullptr, nullptr, Site::Act, 0).capture;
  for (size_t i = 0; i < r.tokens.size(); ++i) r.classes.push_back(i % 3 == 0 ? 2 : 1);
  const int64_t I = t.cfg.intermediate;
  for (uint8_t when : {uint8_t(1), uint8_t(2)}) {
    Intervention iv(t.cfg, {edit(0, Site::Act, 6, InterveneOp::Set, 7.f, when)}, {});
    const std::vector<float> cap = forward(m, r, &iv, nullptr, Site::Act, 0).capture;
    int64_t wrong = 0;
    for (size_t tok = 0; tok < r.tokens.size(); ++tok)
      for (int64_t j = 0; j < I; ++j) {
        const bool edited = j == 6 && r.classes[tok] == when;
        wrong += cap[tok * I + j] != (edited ? 7.f : plain[tok * I + j]);
      }
    LN_CHECK_MSG(wrong == 0, "when=%d: %lld values wrong", int(when), (long long)wrong);
  }
}

// Test-time rules: the value is factor * statistic of the token's row before the edits, in both loops.
LN_TEST(intervene_test_time_statistics) {
  Tiny t{TinyOpts{}};
  Model m(t.cfg, t.w, 2, Compute::F32);
  const Run r = make_run();
  const int64_t I = t.cfg.intermediate;
  const std::vector<float> before = forward(m, r, nullptr, nullptr, Site::H, 1).capture;
  for (int st = 0; st < kRowStatCount; ++st) {
    RowRule rule;
    rule.layer = 1;
    rule.site = Site::H;
    rule.stat = RowStat(st);
    rule.factor = 2.f;
    rule.percentile = 90.f;
    Intervention iv(t.cfg, {edit(1, Site::H, 0, InterveneOp::Set, 0, 0xff, 0), edit(1, Site::H, 1, InterveneOp::Add, 0, 0xff, 0)},
                    {rule});
    ActivationStats stats(t.cfg, neuron_sites(2));
    const std::vector<float> plain_logits = forward(m, r, &iv).logits;
    const ForwardResult rec = forward(m, r, &iv, &stats, Site::H, 1);
    const std::vector<float>& cap = rec.capture;
    double worst = max_diff(plain_logits, rec.logits);  // the plain loop applies the same values
    for (size_t tok = 0; tok < r.tokens.size(); ++tok) {
      std::vector<double> x(before.begin() + int64_t(tok) * I, before.begin() + int64_t(tok + 1) * I);
      std::vector<double> s = x;
      std::sort(s.begin(), s.end());
      auto q = [&](const std::vector<double>& v, double p) {
        const double pos = p * double(v.size() - 1);
        const size_t lo = size_t(pos);
        return lo + 1 < v.size() ? v[lo] + (pos - double(lo)) * (v[lo + 1] - v[lo]) : v[lo];
      };
      double mean = 0, var = 0;
      for (double v : x) mean += v / double(I);
      for (double v : x) var += (v - mean) * (v - mean) / double(I);
      std::vector<double> dev;
      for (double v : x) dev.push_back(std::fabs(v - q(s, 0.5)));
      std::sort(dev.begin(), dev.end());
      const double want[kRowStatCount] = {mean, std::sqrt(var), q(s, 0.5), s.back(), q(s, 0.75) - q(s, 0.25), q(dev, 0.5), q(s, 0.9)};
      const double v = 2 * want[st];
      worst = std::max({worst, std::fabs(cap[tok * I] - v), std::fabs(cap[tok * I + 1] - (before[tok * I + 1] + v))});
    }
    LN_CHECK_MSG(worst < 1e-5, "statistic %d: off by %g", st, worst);
  }
}

LN_TEST(intervene_rejects_bad_input) {
  Tiny t{TinyOpts{}};
  const ModelConfig& c = t.cfg;
  RowRule rule;
  rule.layer = 1;
  expect_invalid([&] { Intervention(c, {edit(3, Site::Act, 0, InterveneOp::Set, 0)}, {}); }, "layer 3 outside");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Act, 80, InterveneOp::Set, 0)}, {}); }, "unit 80 outside [0, 80) of site act");
  // The projection sites' own widths: q heads * head_dim = 48, k / v kv_heads * head_dim = 16, o / down hidden = 48.
  expect_invalid([&] { Intervention(c, {edit(0, Site::Q, 48, InterveneOp::Set, 0)}, {}); }, "unit 48 outside [0, 48) of site q");
  expect_invalid([&] { Intervention(c, {edit(0, Site::V, 16, InterveneOp::Set, 0)}, {}); }, "unit 16 outside [0, 16) of site v");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Down, 48, InterveneOp::Set, 0)}, {}); }, "of site down");
  Intervention(c, {edit(0, Site::Up, 79, InterveneOp::Set, 0), edit(2, Site::K, 15, InterveneOp::Set, 0)}, {});  // in range
  expect_invalid([&] { Intervention(c, {edit(0, Site::Resid, 0, InterveneOp::Set, 0)}, {}); },
                 "site must be one of act, gate, h, up, q, k, v, o, down");
  RowRule at_q;
  at_q.site = Site::Q;
  expect_invalid([&] { Intervention(c, {}, {at_q}); }, "a test-time rule's site must be act, gate or h");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Act, 0, InterveneOp(7), 0)}, {}); }, "unknown op");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Act, 0, InterveneOp::Set, NAN)}, {}); }, "finite");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Act, 0, InterveneOp::Set, 0, 0)}, {}); }, "no position class");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Act, 0, InterveneOp::Set, 0, 0xff, 1)}, {rule}); }, "does not exist");
  expect_invalid([&] { Intervention(c, {edit(0, Site::Act, 0, InterveneOp::Set, 0, 0xff, 0)}, {rule}); }, "another layer");
  rule.percentile = 101;
  rule.stat = RowStat::Percentile;
  expect_invalid([&] { Intervention(c, {}, {rule}); }, "percentile");
  // A forward refuses an intervention of another shape, and a mask without an intervention.
  TinyOpts wide;
  wide.inter = 96;
  Tiny other(wide);
  Intervention foreign(other.cfg, {}, {});
  Model m(c, t.w, 1, Compute::F32);
  Run r = make_run();
  expect_invalid([&] { forward(m, r, &foreign); }, "different shape");
  TinyOpts more_kv;  // same intermediate size, other k / v widths
  more_kv.kv = 3;
  Intervention foreign_kv(Tiny(more_kv).cfg, {}, {});
  expect_invalid([&] { forward(m, r, &foreign_kv); }, "different shape");
  r.classes.assign(r.tokens.size(), 1);
  expect_invalid([&] { forward(m, r, nullptr); }, "without an intervention");
}
