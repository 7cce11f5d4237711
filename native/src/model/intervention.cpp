// Building and validating the resolved intervention (model/intervention.h) and the test-time row statistics.
#include "model/intervention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <tuple>

#include "model/stats.h"

namespace ln {

Intervention::Intervention(const ModelConfig& c, const std::vector<EditSpec>& edits, const std::vector<RowRule>& rules)
    : n_layers_(c.n_layers) {
  using std::to_string;
  auto fail = [](const std::string& m) { throw std::invalid_argument("intervention: " + m); };
  for (int s = 0; s < kInterveneSites; ++s) widths_[s] = site_width(c, Site(s));
  auto check_site = [&](Site s, const std::string& where) {
    if (!intervenable(s))
      fail(where + ": site must be one of act, gate, h, up, q, k, v, o, down, got " + to_string(int(s)));
  };
  auto check_layer = [&](int32_t l, const std::string& where) {
    if (l < 0 || l >= n_layers_) fail(where + ": layer " + to_string(l) + " outside [0, " + to_string(n_layers_) + ")");
  };

  // Rules: validated, then grouped by layer (stable), remembering each one's index within its layer.
  std::vector<int32_t> local(rules.size());
  rule_offsets_.assign(size_t(n_layers_) + 1, 0);
  for (size_t k = 0; k < rules.size(); ++k) {
    const RowRule& r = rules[k];
    const std::string where = "rule " + to_string(k);
    check_layer(r.layer, where);
    if (!rule_site(r.site)) fail(where + ": a test-time rule's site must be act, gate or h, got " + to_string(int(r.site)));
    if (int(r.stat) < 0 || int(r.stat) >= kRowStatCount) fail(where + ": unknown statistic " + to_string(int(r.stat)));
    if (!std::isfinite(r.factor)) fail(where + ": factor must be finite");
    if (r.stat == RowStat::Percentile && !(r.percentile >= 0.f && r.percentile <= 100.f))
      fail(where + ": percentile must be in [0, 100], got " + to_string(r.percentile));
    local[k] = rule_offsets_[size_t(r.layer) + 1]++;
    if (local[k] >= 32767) fail(where + ": more than 32767 rules in layer " + to_string(r.layer));
  }
  for (int32_t l = 0; l < n_layers_; ++l) {
    max_rules_ = std::max(max_rules_, rule_offsets_[size_t(l) + 1]);
    rule_offsets_[size_t(l) + 1] += rule_offsets_[size_t(l)];
  }
  rules_.resize(rules.size());
  for (size_t k = 0; k < rules.size(); ++k) rules_[size_t(rule_offsets_[size_t(rules[k].layer)] + local[k])] = rules[k];

  // Edits: validated, then stably ordered by (layer, site, neuron).
  std::vector<size_t> order(edits.size());
  for (size_t i = 0; i < edits.size(); ++i) {
    const EditSpec& e = edits[i];
    const std::string where = "edit " + to_string(i);
    check_layer(e.layer, where);
    check_site(e.site, where);
    const int64_t width = widths_[int(e.site)];
    if (e.neuron < 0 || e.neuron >= width)
      fail(where + ": unit " + to_string(e.neuron) + " outside [0, " + to_string(width) + ") of site " + site_name(e.site));
    if (uint8_t(e.op) >= kInterveneOpCount) fail(where + ": unknown op " + to_string(int(e.op)));
    if (e.when == 0) fail(where + ": 'when' selects no position class");
    if (e.rule < 0) {
      if (e.rule != -1) fail(where + ": rule must be -1 or a rule index, got " + to_string(e.rule));
      if (!std::isfinite(e.value)) fail(where + ": value must be finite");
    } else {
      if (size_t(e.rule) >= rules.size()) fail(where + ": rule " + to_string(e.rule) + " does not exist");
      const RowRule& r = rules[size_t(e.rule)];
      if (r.layer != e.layer || r.site != e.site)
        fail(where + ": its rule " + to_string(e.rule) + " is for another layer or site");
    }
    order[i] = i;
  }
  auto key = [&](size_t i) {
    const EditSpec& e = edits[i];
    return std::make_tuple(e.layer, int(e.site), e.neuron);
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  offsets_.assign(size_t(n_layers_) * kInterveneSites + 1, 0);
  edits_.reserve(edits.size());
  for (size_t i : order) {
    const EditSpec& e = edits[i];
    ++offsets_[slot(e.layer, e.site) + 1];
    const int16_t rule = e.rule < 0 ? int16_t(-1) : int16_t(local[size_t(e.rule)]);
    edits_.push_back({e.neuron, e.op, e.when, rule, e.rule < 0 ? e.value : 0.f});
  }
  for (size_t s = 1; s < offsets_.size(); ++s) offsets_[s] += offsets_[s - 1];
}

bool Intervention::fits(const ModelConfig& c) const {
  if (c.n_layers != n_layers_) return false;
  for (int s = 0; s < kInterveneSites; ++s)
    if (site_width(c, Site(s)) != widths_[s]) return false;
  return true;
}

// q-quantile (q in [0, 1]) of w[0, n) with linear interpolation; reorders w.
static float quantile(float* w, int64_t n, double q) {
  const double pos = q * double(n - 1);
  const int64_t lo = int64_t(std::floor(pos));
  std::nth_element(w, w + lo, w + n);
  const float a = w[lo];
  if (lo + 1 >= n) return a;
  const float b = *std::min_element(w + lo + 1, w + n);
  return float(double(a) + (pos - double(lo)) * (double(b) - double(a)));
}

float row_statistic(const float* x, int64_t n, RowStat stat, float percentile, float* work) {
  switch (stat) {
    case RowStat::Mean:
    case RowStat::Std: {
      double s = 0, s2 = 0;
      for (int64_t i = 0; i < n; ++i) s += x[i];
      const double mean = s / double(n);
      if (stat == RowStat::Mean) return float(mean);
      for (int64_t i = 0; i < n; ++i) s2 += (x[i] - mean) * (x[i] - mean);
      return float(std::sqrt(s2 / double(n)));
    }
    case RowStat::Max: return *std::max_element(x, x + n);
    default: break;
  }
  std::memcpy(work, x, size_t(n) * sizeof(float));
  switch (stat) {
    case RowStat::Median: return quantile(work, n, 0.5);
    case RowStat::Percentile: return quantile(work, n, double(percentile) / 100.0);
    case RowStat::Iqr: {
      const float q1 = quantile(work, n, 0.25);
      return quantile(work, n, 0.75) - q1;
    }
    case RowStat::Mad: {
      const float med = quantile(work, n, 0.5);
      for (int64_t i = 0; i < n; ++i) work[i] = std::fabs(x[i] - med);
      return quantile(work, n, 0.5);
    }
    default: return 0.f;
  }
}

}  // namespace ln
