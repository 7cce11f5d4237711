// What a CUDA forward records at the sites (the device twin of model/site_pass.*): per-unit statistics
// accumulated on the device and added into the host ActivationStats at the end of the forward, the sequence
// means, and the optional capture of one (site, layer) block. Also the host-side plans the site kernels need
// (token chunks) are in cuda/plans.h, checked by the CPU tests.
#pragma once
#include <cstdint>
#include <cstddef>
#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/plans.h"
#include "cuda/runtime_kernels.h"
#include "cuda/site_kernels.h"
#include "model/model.h"
#include "model/stats.h"
#include "runtime/request.h"

namespace ln {
namespace cuda {

class DeviceRecording {
 public:
  // Sets up this forward's recording: statistics accumulators (zeroed), thresholds and edges uploaded, the
  // capture buffer; every allocation happens here (grow-only). chunks / mask / seq_row / seq_counted are device
  // copies of the plans (seq arrays indexed by sequence). out.capture is sized when a capture is asked for.
  void begin(const ModelConfig& c, const ForwardRequest& r, int64_t T, const StatsBatch& batch,
             const int64_t* seq_row_dev, const int64_t* seq_counted_dev, int64_t new_rows, ForwardResult& out,
             Stream stream);
  // The batch as the site kernels take it (chunks, mask, the stats' histogram edges); valid after begin.
  const StatsBatch& batch() const { return batch_; }
  bool recording(Site s, int l) const;
  // Where the site's values at layer l go (statistics partials, counts, capture).
  SiteTarget target(Site s, int l);
  // After the site's kernel at layer l: folds its chunk partials into the totals and sequence means.
  void reduce(Site s, int l, Stream stream);
  // After the last kernel of layer l: queues the copy of the layer's totals to the host staging (async, with an
  // event), so that end() can add them while the device computes the later layers. False when nothing of layer l
  // is recorded (no statistics, or a layer past the profiled ones): nothing queued.
  bool layer_done(int l, Stream stream);
  // Adds the totals (layer by layer, as each layer's copy completes), the sequence means and the capture into
  // the request's stats / the result; synchronizes the stream. counted_*: this forward's counted tokens and
  // sequences.
  void end(ForwardResult& out, int64_t counted_tokens, int64_t counted_seqs, Stream stream);
  int64_t bytes() const;

 private:
  struct SiteBuffers {
    DeviceBuffer over_zero, above, hist, sums, thresholds, part, seq_means;  // sums: [3][L][W] sum, sq, abs
  };
  ActivationStats* stats_ = nullptr;
  int32_t layers_ = 0;
  int64_t bins_ = 0, new_rows_ = 0, base_row_ = 0, T_ = 0;
  StatsBatch batch_;
  const int64_t* seq_row_ = nullptr;
  const int64_t* seq_counted_ = nullptr;
  Site capture_site_ = Site::Act;
  int32_t capture_layer_ = -1;
  int64_t capture_width_ = 0;
  SiteBuffers sites_[kSiteCount];
  DeviceBuffer edges_, capture_;
  struct Staging {  // byte offsets of a site's arrays in the pinned staging (SIZE_MAX: absent)
    size_t over = 0, sums = 0, above = 0, hist = 0, means = 0;
  };
  Staging staging_[kSiteCount];
  void* pinned_ = nullptr;  // host staging for the copy-back
  size_t pinned_bytes_ = 0;
  std::vector<Event> layer_events_;

 public:
  DeviceRecording() = default;
  ~DeviceRecording();
  DeviceRecording(const DeviceRecording&) = delete;
  DeviceRecording& operator=(const DeviceRecording&) = delete;
};

}  // namespace cuda
}  // namespace ln
