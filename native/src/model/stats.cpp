// ActivationStats: option checks, storage and reset. The accumulation itself runs inside the forward
// (model/site_pass.cpp).
#include "model/stats.h"

#include "core/oom.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ln {

int64_t site_width(const ModelConfig& c, Site s) {
  switch (s) {
    case Site::Act:
    case Site::Gate:
    case Site::H:
    case Site::Up:
      return c.intermediate;
    case Site::Q:
      return int64_t(c.n_heads) * c.head_dim;
    case Site::K:
    case Site::V:
      return int64_t(c.n_kv_heads) * c.head_dim;
    case Site::O:
    case Site::Down:
    case Site::Resid:
      return c.hidden;
  }
  return 0;
}

ActivationStats::ActivationStats(const ModelConfig& c, const StatsOptions& o) : cfg_(c) {
  using std::to_string;
  auto fail = [](const std::string& m) { throw std::invalid_argument("stats: " + m); };
  const std::string bad = validate_config(c);
  if (!bad.empty()) fail(bad);
  if (o.n_layers < 1 || o.n_layers > c.n_layers)
    fail("layers must be in [1, " + to_string(c.n_layers) + "] (the model's layers), got " + to_string(o.n_layers));
  if (o.sites.empty()) fail("no sites requested");
  if (!o.hist_edges.empty()) {
    if (o.hist_edges.size() < 2)
      fail("histogram edges need at least 2 values (one bin), got " + to_string(o.hist_edges.size()));
    for (size_t i = 0; i < o.hist_edges.size(); ++i) {
      if (!std::isfinite(o.hist_edges[i])) fail("histogram edge " + to_string(i) + " is not finite");
      if (i > 0 && !(o.hist_edges[i] > o.hist_edges[i - 1]))
        fail("histogram edges must be strictly ascending (edge " + to_string(i) + " is not above edge " +
             to_string(i - 1) + ")");
    }
  }
  bool seen[kSiteCount] = {};
  for (Site s : o.sites) {
    if (int(s) < 0 || int(s) >= kSiteCount) fail("unknown site " + to_string(int(s)));
    if (seen[int(s)]) fail(std::string("site '") + site_name(s) + "' requested twice");
    seen[int(s)] = true;
  }
  for (int i = 0; i < kSiteCount; ++i)
    if (!o.thresholds[i].empty() && !seen[i])
      fail(std::string("thresholds given for site '") + site_name(Site(i)) + "', which is not profiled");

  n_layers_ = o.n_layers;
  edges_ = o.hist_edges;
  seq_means_ = o.seq_means;
  const int64_t B = hist_bins();
  double bytes = 0;  // what the arrays below take in all, for the message when they do not fit
  for (Site s : o.sites)
    bytes += double(n_layers_) * site_width(c, s) *
             (4 * 8 + (o.thresholds[int(s)].empty() ? 0 : 8 + 4) + double(B) * sizeof(int64_t));
  allocating("the statistics arrays (" + std::to_string(o.sites.size()) + " site(s) x " + std::to_string(n_layers_) +
             " layers" + (B > 0 ? " x " + std::to_string(B) + " histogram bins" : "") + ")", bytes, [&] {
  for (Site s : o.sites) {
    SiteStats st;
    st.site = s;
    st.width = site_width(c, s);
    const size_t n = size_t(int64_t(n_layers_) * st.width);
    const std::vector<float>& th = o.thresholds[int(s)];
    if (!th.empty()) {
      if (th.size() != n)
        fail(std::string("thresholds of site '") + site_name(s) + "' must have layers x width = " +
             to_string(n_layers_) + " x " + to_string(st.width) + " = " + to_string(n) + " values, got " +
             to_string(th.size()));
      st.thresholds = th;
      st.above.assign(n, 0);
    }
    st.over_zero.assign(n, 0);
    st.sum.assign(n, 0.0);
    st.sum_sq.assign(n, 0.0);
    st.abs_sum.assign(n, 0.0);
    if (B > 0) st.hist.assign(n * size_t(B), 0);
    sites_.push_back(std::move(st));
  }
  }, "fewer --sites, fewer --layers or fewer histogram bins");
}

const SiteStats* ActivationStats::find(Site s) const {
  for (const SiteStats& st : sites_)
    if (st.site == s) return &st;
  return nullptr;
}

SiteStats* ActivationStats::find(Site s) {
  for (SiteStats& st : sites_)
    if (st.site == s) return &st;
  return nullptr;
}

bool ActivationStats::fits(const ModelConfig& c) const {
  if (c.n_layers < n_layers_) return false;
  for (const SiteStats& st : sites_)
    if (site_width(c, st.site) != st.width) return false;
  return true;
}

void ActivationStats::reset() {
  tokens_ = sequences_ = 0;
  for (SiteStats& st : sites_) {
    std::fill(st.over_zero.begin(), st.over_zero.end(), 0);
    std::fill(st.sum.begin(), st.sum.end(), 0.0);
    std::fill(st.sum_sq.begin(), st.sum_sq.end(), 0.0);
    std::fill(st.abs_sum.begin(), st.abs_sum.end(), 0.0);
    std::fill(st.hist.begin(), st.hist.end(), 0);
    std::fill(st.above.begin(), st.above.end(), 0);
    st.seq_means.clear();
  }
}

void ActivationStats::clear_seq_means() {
  for (SiteStats& st : sites_) st.seq_means.clear();
}

}  // namespace ln
