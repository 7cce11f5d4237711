// Recording at the sites during the forward (internal to the model runtime): per-unit statistics into an
// ActivationStats and the optional capture of one (site, layer) block.
//
// Work is split over the threads by units: a task owns the columns [c0, c1) of a [tokens x width] block and
// walks every token in order (see stats.h for why). SiteChunk is one task's view of one site; ffn.cpp drives
// four of them inside its activation loop (the block is read once, while in cache), record_block drives one
// over a finished block (the projection outputs q, k, v, o, down).
#pragma once
#include <cstdint>

#include "kernels/stats_kernels.h"
#include "model/forward_state.h"
#include "model/stats.h"

namespace ln {
namespace detail {

// Checks what the request asks to record against the model and the stats object; throws
// std::invalid_argument. Called by validate_request before any state changes.
void validate_recording(const ModelConfig& c, const ForwardRequest& r);
// Sizes the recording of this forward (sequence bookkeeping, the sequence-means rows, the capture buffer):
// every allocation happens here, before the layer loop.
void begin_recording(ForwardState& st, const ForwardRequest& r, ForwardResult& out);
// Adds this forward's counted tokens and sequences to the stats' totals.
void end_recording(ForwardState& st);

// True when `site` at layer l is profiled or captured by the current forward.
bool recording(const ForwardState& st, Site site, int l);

// Units per task for a block `width` wide: a multiple of 8 (the AVX2 step), at most SiteChunk::kMaxUnits,
// and small enough to give every thread several tasks.
int64_t chunk_units(int64_t width, int n_threads);

class SiteChunk {
 public:
  static constexpr int64_t kMaxUnits = 256;
  // Columns [c0, c1) (c1 - c0 <= kMaxUnits) of `site` at layer l; does nothing when that site/layer is
  // neither profiled nor captured.
  SiteChunk(ForwardState& st, Site site, int l, int64_t c0, int64_t c1);
  SiteChunk(const SiteChunk&) = delete;
  SiteChunk& operator=(const SiteChunk&) = delete;
  bool active() const { return stats_ || capture_; }

  // Token t's values of the chunk's units (x[0] is unit c0). Tokens must come in order, sequence by sequence.
  void row(int64_t t, const float* x) {
    if (capture_) copy_to_capture(t, x);
    if (!stats_ || (mask_ && !mask_[t])) return;
    accumulate_row(x, n_, acc_);
    if (hist_) add_to_histogram(x);
  }
  // After the last token of sequence s: writes its mean (when sequence means are on).
  void end_sequence(int32_t s);
  // After the last token: adds the int32 counters into the int64 totals.
  void finish();

 private:
  void copy_to_capture(int64_t t, const float* x);
  void add_to_histogram(const float* x);

  const SiteRecording& rec_;
  SiteStats* stats_ = nullptr;
  float* capture_ = nullptr;  // capture + c0
  const uint8_t* mask_ = nullptr;
  int64_t n_ = 0, width_ = 0, layer_ = 0, c0_ = 0, layers_ = 0;
  int64_t* hist_ = nullptr;  // the chunk's [n][B] histogram counts
  const double* edges_ = nullptr;
  int64_t bins_ = 0;
  RowAccumulators acc_;
  // Per-task counters (a forward counts < 2^31 tokens: validate_recording) and the current sequence's sums.
  int32_t over_zero_[kMaxUnits];
  int32_t above_[kMaxUnits];
  double seq_sum_[kMaxUnits];
};

// Records the [T x width] block of `site` at layer l (row stride ld) when that site/layer is recorded.
void record_block(ForwardState& st, Site site, int l, const float* block, int64_t ld);

}  // namespace detail
}  // namespace ln
