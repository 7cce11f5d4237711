// Recording at the sites: request checks, per-forward set-up, the per-task accumulator (SiteChunk) and the
// pass over a finished projection output (record_block). See site_pass.h.
#include "model/site_pass.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace ln {
namespace detail {

void validate_recording(const ModelConfig& c, const ForwardRequest& r) {
  using std::to_string;
  auto fail = [](const std::string& m) { throw std::invalid_argument("forward: " + m); };
  if (r.last_layer != -1) {
    if (r.last_layer < 0 || r.last_layer >= c.n_layers)
      fail("last_layer must be -1 (all) or in [0, " + to_string(c.n_layers) + "), got " + to_string(r.last_layer));
    // Logits and targets with last_layer are the logit lens: the final norm and LM head on that layer's stream.
    if (r.cache) fail("last_layer would leave the later layers' KV cache unfilled: no cache with last_layer");
  }
  const int32_t layers_run = r.last_layer < 0 ? c.n_layers : r.last_layer + 1;
  if (r.stats) {
    if (!r.stats->fits(c)) fail("the stats object was made for a model of different shape");
    if (r.stats->n_layers() > layers_run)
      fail("the stats profile layers 0.." + to_string(r.stats->n_layers() - 1) + " but the forward stops after layer " +
           to_string(r.last_layer));
    // SiteChunk counts a forward's tokens in int32.
    if (r.n_tokens > std::numeric_limits<int32_t>::max()) fail("too many tokens for one profiled forward");
  }
  if (r.capture_layer != -1) {
    if (int(r.capture_site) < 0 || int(r.capture_site) >= kSiteCount)
      fail("unknown capture site " + to_string(int(r.capture_site)));
    if (r.capture_layer < 0 || r.capture_layer >= layers_run)
      fail("capture layer must be in [0, " + to_string(layers_run) + "), got " + to_string(r.capture_layer));
  }
}

void begin_recording(ForwardState& st, const ForwardRequest& r, ForwardResult& out) {
  SiteRecording& rec = st.rec;
  rec.stats = r.stats;
  rec.stats_layers = r.stats ? r.stats->n_layers() : 0;
  rec.mask = r.count_mask;
  rec.capture_site = r.capture_site;
  rec.capture_layer = r.capture_layer;
  rec.capture = nullptr;
  out.capture.clear();
  if (r.capture_layer >= 0) {
    out.capture.assign(size_t(st.T * site_width(*st.cfg, r.capture_site)), 0.f);
    rec.capture = out.capture.data();
  }
  if (!r.stats) return;

  // Sequences with a counted token get a row of means; the others (all BOS / padding) get none.
  rec.seq_counted.assign(st.seqs.size(), 0);
  rec.seq_row.assign(st.seqs.size(), -1);
  int64_t next_row = 0;
  const SiteStats& first = r.stats->sites().front();
  const int64_t base = first.width > 0 ? int64_t(first.seq_means.size()) / (int64_t(rec.stats_layers) * first.width) : 0;
  for (size_t s = 0; s < st.seqs.size(); ++s) {
    const SeqSpan& sp = st.seqs[s];
    int64_t n = sp.len;
    if (rec.mask) {
      n = 0;
      for (int64_t t = sp.row0; t < sp.row0 + sp.len; ++t) n += rec.mask[t] != 0;
    }
    rec.seq_counted[s] = n;
    if (n > 0) rec.seq_row[s] = base + next_row++;
  }
  if (r.stats->has_seq_means())
    for (const SiteStats& ss : r.stats->sites()) {
      SiteStats& m = *r.stats->find(ss.site);
      m.seq_means.resize(size_t((base + next_row) * rec.stats_layers * m.width), 0.f);
    }
}

void end_recording(ForwardState& st) {
  SiteRecording& rec = st.rec;
  if (rec.stats) {
    int64_t tokens = 0, seqs = 0;
    for (int64_t n : rec.seq_counted) {
      tokens += n;
      seqs += n > 0;
    }
    rec.stats->add_counted(tokens, seqs);
  }
  // No dangling pointers into the request once the forward is over (the vectors keep their capacity).
  rec.stats = nullptr;
  rec.stats_layers = 0;
  rec.mask = nullptr;
  rec.capture = nullptr;
  rec.capture_layer = -1;
}

bool recording(const ForwardState& st, Site site, int l) {
  const SiteRecording& rec = st.rec;
  if (rec.capture_layer == l && rec.capture_site == site) return true;
  return rec.stats && l < rec.stats_layers && rec.stats->find(site) != nullptr;
}

int64_t chunk_units(int64_t width, int n_threads) {
  const int64_t tasks = 4 * int64_t(std::max(1, n_threads));
  int64_t c = (width + tasks - 1) / tasks;
  c = (c + 7) / 8 * 8;
  return std::max<int64_t>(8, std::min(c, SiteChunk::kMaxUnits));
}

SiteChunk::SiteChunk(ForwardState& st, Site site, int l, int64_t c0, int64_t c1) : rec_(st.rec) {
  n_ = c1 - c0;
  c0_ = c0;
  layer_ = l;
  width_ = site_width(*st.cfg, site);
  if (rec_.capture_layer == l && rec_.capture_site == site) capture_ = rec_.capture + c0;
  if (!rec_.stats || l >= rec_.stats_layers) return;
  stats_ = rec_.stats->find(site);
  if (!stats_) return;
  mask_ = rec_.mask;
  layers_ = rec_.stats_layers;
  const int64_t off = int64_t(l) * width_ + c0;
  std::fill(over_zero_, over_zero_ + n_, 0);
  acc_.over_zero = over_zero_;
  acc_.sum = stats_->sum.data() + off;
  acc_.sum_sq = stats_->sum_sq.data() + off;
  acc_.abs_sum = stats_->abs_sum.data() + off;
  if (!stats_->thresholds.empty()) {
    std::fill(above_, above_ + n_, 0);
    acc_.thresholds = stats_->thresholds.data() + off;
    acc_.above = above_;
  }
  if (rec_.stats->has_seq_means()) {
    std::fill(seq_sum_, seq_sum_ + n_, 0.0);
    acc_.seq_sum = seq_sum_;
  }
  bins_ = rec_.stats->hist_bins();
  if (bins_ > 0) {
    hist_ = stats_->hist.data() + off * bins_;
    edges_ = rec_.stats->hist_edges().data();
  }
}

void SiteChunk::copy_to_capture(int64_t t, const float* x) {
  std::memcpy(capture_ + t * width_, x, size_t(n_) * sizeof(float));
}

// Bin b holds [edges[b], edges[b+1]); below edges[0] counts in bin 0, at or above edges[B] in bin B-1.
void SiteChunk::add_to_histogram(const float* x) {
  const double* last = edges_ + bins_;  // edges[B]
  for (int64_t j = 0; j < n_; ++j) {
    const int64_t above_or_at = std::upper_bound(edges_, last + 1, double(x[j])) - edges_;  // edges <= x
    const int64_t b = std::min(bins_ - 1, std::max<int64_t>(0, above_or_at - 1));
    ++hist_[j * bins_ + b];
  }
}

void SiteChunk::end_sequence(int32_t s) {
  if (!stats_ || !acc_.seq_sum) return;
  const int64_t row = rec_.seq_row[size_t(s)];
  if (row >= 0) {
    const double n = double(rec_.seq_counted[size_t(s)]);
    float* out = stats_->seq_means.data() + (row * layers_ + layer_) * width_ + c0_;
    for (int64_t j = 0; j < n_; ++j) out[j] = float(seq_sum_[j] / n);
  }
  std::fill(seq_sum_, seq_sum_ + n_, 0.0);
}

void SiteChunk::finish() {
  if (!stats_) return;
  const int64_t off = layer_ * width_ + c0_;
  int64_t* oz = stats_->over_zero.data() + off;
  for (int64_t j = 0; j < n_; ++j) oz[j] += over_zero_[j];
  if (acc_.above) {
    int64_t* ab = stats_->above.data() + off;
    for (int64_t j = 0; j < n_; ++j) ab[j] += above_[j];
  }
}

void record_block(ForwardState& st, Site site, int l, const float* block, int64_t ld) {
  if (!recording(st, site, l)) return;
  const int64_t W = site_width(*st.cfg, site);
  const int64_t cw = chunk_units(W, st.pool->size());
  st.pool->parallel_for((W + cw - 1) / cw, [&](int64_t task, int) {
    const int64_t c0 = task * cw, c1 = std::min(W, c0 + cw);
    SiteChunk chunk(st, site, l, c0, c1);
    for (size_t s = 0; s < st.seqs.size(); ++s) {
      const SeqSpan& sp = st.seqs[s];
      for (int64_t t = sp.row0; t < sp.row0 + sp.len; ++t) chunk.row(t, block + t * ld + c0);
      chunk.end_sequence(int32_t(s));
    }
    chunk.finish();
  });
}

}  // namespace detail
}  // namespace ln
