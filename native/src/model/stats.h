// Per-(layer, unit) activation statistics accumulated inside the forward, for language-neuron profiling
// (docs METHODS.md section 1): for each requested site and profiled layer, per unit, the count of values > 0,
// the sum, the sum of squares and the sum of absolute values; optionally a histogram over shared bin edges, the count of values above a
// per-unit threshold, and the mean of each sequence. Only tokens the forward's count mask marks are counted.
//
// Accumulation (model/site_pass.cpp) is split over the threads by units, never by tokens: each task owns a
// range of columns and walks every row in order, so no two threads ever touch the same accumulator (no
// atomics, no per-thread partials to merge) and every total is the same whatever the number of threads; the
// float64 sums are added in token order, so they too are identical across thread counts.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace ln {

// Units per layer at a site: intermediate, heads * head_dim, kv_heads * head_dim or hidden.
int64_t site_width(const ModelConfig& c, Site s);

struct StatsOptions {
  std::vector<Site> sites;         // distinct, at least one
  int32_t n_layers = 0;            // layers [0, n_layers) are profiled (a forward may stop after the last)
  std::vector<double> hist_edges;  // empty: no histogram; else B + 1 >= 2 finite, strictly ascending edges
  // Per site (indexed by int(Site)): empty, or n_layers * width thresholds for the "value > threshold" counts.
  std::vector<float> thresholds[kSiteCount];
  bool seq_means = false;
};

// One site's statistics, row-major [n_layers][width] (the histogram [n_layers][width][B]).
struct SiteStats {
  Site site = Site::Act;
  int64_t width = 0;
  std::vector<int64_t> over_zero;
  std::vector<double> sum, sum_sq, abs_sum;
  std::vector<int64_t> hist;        // empty without histogram edges
  std::vector<float> thresholds;    // empty without thresholds for this site
  std::vector<int64_t> above;       // counts of value > thresholds (same shape), empty without
  std::vector<float> seq_means;     // [sequences since clear_seq_means][n_layers][width], when enabled
};

class ActivationStats {
 public:
  // Throws std::invalid_argument naming what is wrong with the options (unknown or repeated site, layers out
  // of [1, n_layers of the model], bad edges, threshold arrays of the wrong length).
  ActivationStats(const ModelConfig& c, const StatsOptions& o);

  int32_t n_layers() const { return n_layers_; }
  const std::vector<double>& hist_edges() const { return edges_; }
  int64_t hist_bins() const { return edges_.empty() ? 0 : int64_t(edges_.size()) - 1; }
  bool has_seq_means() const { return seq_means_; }
  // Tokens counted, and sequences with at least one counted token (each has a row in seq_means).
  int64_t tokens() const { return tokens_; }
  int64_t sequences() const { return sequences_; }
  const std::vector<SiteStats>& sites() const { return sites_; }
  const SiteStats* find(Site s) const;
  // Whether a forward of a model with config c may accumulate into this object (same shapes, enough layers).
  bool fits(const ModelConfig& c) const;

  void reset();            // every count, sum and sequence mean back to zero / empty (options kept)
  // Continues from earlier totals (a profile checkpoint): the counters are set to them, the arrays are filled by
  // the caller through find(). The forwards then add to those totals in the order an uninterrupted run would, so
  // a resumed run's float64 sums are the same bits as the uninterrupted run's.
  void set_counted(int64_t tokens, int64_t sequences) {
    tokens_ = tokens;
    sequences_ = sequences;
  }
  void clear_seq_means();  // drop the sequence means read so far (counts and sums kept)

  // ---- used by the forward (model/site_pass.cpp) ----
  SiteStats* find(Site s);
  void add_counted(int64_t tokens, int64_t sequences) {
    tokens_ += tokens;
    sequences_ += sequences;
  }

 private:
  ModelConfig cfg_;
  int32_t n_layers_ = 0;
  std::vector<double> edges_;
  bool seq_means_ = false;
  int64_t tokens_ = 0, sequences_ = 0;
  std::vector<SiteStats> sites_;
};

}  // namespace ln
