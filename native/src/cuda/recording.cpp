// Device-side recording at the sites (recording.h).
#include "cuda/recording.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "cuda/runtime_kernels.h"

namespace ln {
namespace cuda {

DeviceRecording::~DeviceRecording() {
  for (Event e : layer_events_) event_destroy(e);
  host_free_pinned(pinned_);
}

void DeviceRecording::begin(const ModelConfig& c, const ForwardRequest& r, int64_t T, const StatsBatch& batch,
                            const int64_t* seq_row_dev, const int64_t* seq_counted_dev, int64_t new_rows,
                            ForwardResult& out, Stream stream) {
  stats_ = r.stats;
  layers_ = r.stats ? r.stats->n_layers() : 0;
  bins_ = r.stats ? r.stats->hist_bins() : 0;
  new_rows_ = new_rows;
  T_ = T;
  batch_ = batch;
  seq_row_ = seq_row_dev;
  seq_counted_ = seq_counted_dev;
  capture_site_ = r.capture_site;
  capture_layer_ = r.capture_layer;
  out.capture.clear();
  if (capture_layer_ >= 0) {
    capture_width_ = site_width(c, capture_site_);
    capture_.ensure(size_t(T * capture_width_) * sizeof(float));
    out.capture.assign(size_t(T * capture_width_), 0.f);
  }
  if (!stats_) return;
  if (bins_ > 0) {
    edges_.ensure(size_t(bins_ + 1) * sizeof(double));
    copy_to_device(edges_.get(), stats_->hist_edges().data(), size_t(bins_ + 1) * sizeof(double), stream);
    batch_.edges = edges_.as<double>();
    batch_.bins = int32_t(bins_);
  } else {
    batch_.edges = nullptr;
    batch_.bins = 0;
  }
  const SiteStats& first = stats_->sites().front();
  base_row_ = first.width > 0 ? int64_t(first.seq_means.size()) / (int64_t(layers_) * first.width) : 0;
  // Pinned staging, per site: [over_zero][sum][sum_sq][abs_sum][above][hist][seq_means] (layer-major inside each).
  size_t pinned_need = 0;
  for (const SiteStats& ss : stats_->sites()) {
    SiteBuffers& b = sites_[int(ss.site)];
    Staging& g = staging_[int(ss.site)];
    const size_t n = size_t(int64_t(layers_) * ss.width);
    b.over_zero.ensure(n * 8);
    memset_async(b.over_zero.get(), 0, n * 8, stream);
    b.sums.ensure(3 * n * 8);
    memset_async(b.sums.get(), 0, 3 * n * 8, stream);
    g.over = pinned_need;
    g.sums = g.over + n * 8;
    pinned_need = g.sums + 3 * n * 8;
    g.above = g.hist = g.means = SIZE_MAX;
    if (!ss.thresholds.empty()) {
      b.above.ensure(n * 8);
      memset_async(b.above.get(), 0, n * 8, stream);
      b.thresholds.ensure(n * 4);
      copy_to_device(b.thresholds.get(), ss.thresholds.data(), n * 4, stream);
      g.above = pinned_need;
      pinned_need += n * 8;
    }
    if (bins_ > 0) {
      b.hist.ensure(n * size_t(bins_) * 8);
      memset_async(b.hist.get(), 0, n * size_t(bins_) * 8, stream);
      g.hist = pinned_need;
      pinned_need += n * size_t(bins_) * 8;
    }
    b.part.ensure(size_t(batch.n_chunks) * 3 * size_t(ss.width) * 8);
    if (stats_->has_seq_means() && new_rows_ > 0) {
      b.seq_means.ensure(size_t(new_rows_) * n * 4);
      g.means = pinned_need;
      pinned_need += size_t(new_rows_) * n * 4;
    }
  }
  if (pinned_need > pinned_bytes_) {
    host_free_pinned(pinned_);
    pinned_ = nullptr;
    pinned_bytes_ = 0;
    pinned_ = host_alloc_pinned(pinned_need);
    pinned_bytes_ = pinned_need;
  }
  while (int32_t(layer_events_.size()) < layers_) layer_events_.push_back(event_create());
}

bool DeviceRecording::recording(Site s, int l) const {
  if (capture_layer_ == l && capture_site_ == s) return true;
  return stats_ && l < layers_ && stats_->find(s) != nullptr;
}

SiteTarget DeviceRecording::target(Site s, int l) {
  SiteTarget t;
  if (capture_layer_ == l && capture_site_ == s) {
    t.capture = capture_.as<float>();
    t.capture_ld = capture_width_;
  }
  if (!stats_ || l >= layers_) return t;
  const SiteStats* ss = stats_->find(s);
  if (!ss) return t;
  SiteBuffers& b = sites_[int(s)];
  const int64_t off = int64_t(l) * ss->width;
  t.part = b.part.as<double>();
  t.over_zero = b.over_zero.as<unsigned long long>() + off;
  if (!ss->thresholds.empty()) {
    t.thresholds = b.thresholds.as<float>() + off;
    t.above = b.above.as<unsigned long long>() + off;
  }
  if (bins_ > 0) t.hist = b.hist.as<unsigned long long>() + off * bins_;
  return t;
}

void DeviceRecording::reduce(Site s, int l, Stream stream) {
  if (!stats_ || l >= layers_) return;
  const SiteStats* ss = stats_->find(s);
  if (!ss) return;
  SiteBuffers& b = sites_[int(s)];
  const int64_t n = int64_t(layers_) * ss->width, off = int64_t(l) * ss->width;
  double* sums = b.sums.as<double>();
  float* means = stats_->has_seq_means() && new_rows_ > 0 ? b.seq_means.as<float>() + off : nullptr;
  stats_reduce(ss->width, batch_, b.part.as<double>(), sums + off, sums + n + off, sums + 2 * n + off, means, n,
               seq_row_, seq_counted_, stream);
}

// Layer l's slices of every site go to the pinned staging as soon as the layer is done, with an event, so that
// end() adds them into the host totals while the device still computes the later layers.
bool DeviceRecording::layer_done(int l, Stream stream) {
  if (!stats_ || l >= layers_) return false;
  char* p = static_cast<char*>(pinned_);
  for (const SiteStats& ss : stats_->sites()) {
    const SiteBuffers& b = sites_[int(ss.site)];
    const Staging& g = staging_[int(ss.site)];
    const size_t W = size_t(ss.width), n = size_t(layers_) * W, off = size_t(l) * W;
    copy_to_host(p + g.over + off * 8, b.over_zero.as<char>() + off * 8, W * 8, stream);
    for (size_t k = 0; k < 3; ++k)
      copy_to_host(p + g.sums + (k * n + off) * 8, b.sums.as<char>() + (k * n + off) * 8, W * 8, stream);
    if (g.above != SIZE_MAX) copy_to_host(p + g.above + off * 8, b.above.as<char>() + off * 8, W * 8, stream);
    if (g.hist != SIZE_MAX)
      copy_to_host(p + g.hist + off * size_t(bins_) * 8, b.hist.as<char>() + off * size_t(bins_) * 8,
                   W * size_t(bins_) * 8, stream);
  }
  event_record(layer_events_[size_t(l)], stream);
  return true;
}

void DeviceRecording::end(ForwardResult& out, int64_t counted_tokens, int64_t counted_seqs, Stream stream) {
  if (capture_layer_ >= 0)
    copy_to_host(out.capture.data(), capture_.get(), out.capture.size() * sizeof(float), stream);
  if (!stats_) {
    synchronize(stream);
    capture_layer_ = -1;
    return;
  }
  const char* p = static_cast<const char*>(pinned_);
  for (int l = 0; l < layers_; ++l) {
    event_synchronize(layer_events_[size_t(l)]);
    for (const SiteStats& cs : stats_->sites()) {
      SiteStats& ss = *stats_->find(cs.site);
      const Staging& g = staging_[int(ss.site)];
      const size_t W = size_t(ss.width), n = size_t(layers_) * W, off = size_t(l) * W;
      const auto* over = reinterpret_cast<const unsigned long long*>(p + g.over) + off;
      const auto* sums = reinterpret_cast<const double*>(p + g.sums);
      for (size_t j = 0; j < W; ++j) {
        ss.over_zero[off + j] += int64_t(over[j]);
        ss.sum[off + j] += sums[off + j];
        ss.sum_sq[off + j] += sums[n + off + j];
        ss.abs_sum[off + j] += sums[2 * n + off + j];
      }
      if (g.above != SIZE_MAX) {
        const auto* ab = reinterpret_cast<const unsigned long long*>(p + g.above) + off;
        for (size_t j = 0; j < W; ++j) ss.above[off + j] += int64_t(ab[j]);
      }
      if (g.hist != SIZE_MAX) {
        const size_t B = size_t(bins_);
        const auto* h = reinterpret_cast<const unsigned long long*>(p + g.hist) + off * B;
        for (size_t j = 0; j < W * B; ++j) ss.hist[off * B + j] += int64_t(h[j]);
      }
    }
  }
  // Sequence means (written by every layer's reduction): after the whole forward.
  bool any_means = false;
  for (const SiteStats& ss : stats_->sites()) {
    const Staging& g = staging_[int(ss.site)];
    if (g.means == SIZE_MAX) continue;
    const size_t n = size_t(layers_) * size_t(ss.width);
    copy_to_host(static_cast<char*>(pinned_) + g.means, sites_[int(ss.site)].seq_means.get(), size_t(new_rows_) * n * 4,
                 stream);
    any_means = true;
  }
  synchronize(stream);
  if (any_means)
    for (const SiteStats& cs : stats_->sites()) {
      SiteStats& ss = *stats_->find(cs.site);
      const Staging& g = staging_[int(ss.site)];
      if (g.means == SIZE_MAX) continue;
      // Same layout on both sides ([row][layer][width]): the new rows are appended after the existing ones.
      const size_t n = size_t(layers_) * size_t(ss.width), row = size_t(base_row_) * n;
      ss.seq_means.resize(row + size_t(new_rows_) * n, 0.f);
      std::memcpy(ss.seq_means.data() + row, p + g.means, size_t(new_rows_) * n * 4);
    }
  stats_->add_counted(counted_tokens, counted_seqs);
  stats_ = nullptr;
  capture_layer_ = -1;
}

int64_t DeviceRecording::bytes() const {
  size_t b = edges_.bytes() + capture_.bytes();
  for (const SiteBuffers& s : sites_)
    b += s.over_zero.bytes() + s.above.bytes() + s.hist.bytes() + s.sums.bytes() + s.thresholds.bytes() +
         s.part.bytes() + s.seq_means.bytes();
  return int64_t(b);
}

}  // namespace cuda
}  // namespace ln
