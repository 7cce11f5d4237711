// The neuron sites on the device: the fused FFN step (SwiGLU + interventions + statistics + capture), the
// edits and statistics of a finished projection output, the in-order reduction of the statistics partials, and the
// test-time row statistics of the interventions' rules. Plain C++ (no CUDA headers); see site_kernels.cu.
//
// Determinism: the batch is cut into chunks of at most kStatsChunkTokens tokens, each inside one sequence
// (planned on the host, StatsChunk). One thread per (unit, chunk) walks the chunk's tokens in order: counts
// (> 0, > threshold, histogram bins) are integers added with atomics (exact, so order-free), float64 sums of the
// chunk go to a partials buffer [chunk][3][width]; stats_reduce then adds the partials chunk by chunk, in order,
// into the totals and the sequence means. Nothing depends on the thread layout or on timing.
#pragma once
#include <cstdint>

#include "cuda/cuda_backend.h"

namespace ln {
namespace cuda {

constexpr int kStatsChunkTokens = 128;

struct StatsChunk {
  int64_t row0;  // first batch row
  int32_t n;     // rows
  int32_t seq;   // sequence index in the batch
};

// The batch-wide inputs of the statistics (device pointers).
struct StatsBatch {
  const StatsChunk* chunks = nullptr;
  int32_t n_chunks = 0;
  const uint8_t* mask = nullptr;   // per token: counted when nonzero; null = all counted
  const double* edges = nullptr;   // bins + 1 histogram edges, or null
  int32_t bins = 0;
};

// One site at one layer: where its statistics and capture go (device pointers, already offset to the layer,
// unit 0). `part` null: no statistics at this site; `capture` null: no capture.
struct SiteTarget {
  double* part = nullptr;                   // [n_chunks][3][width]: sum, sum of squares, sum of |x| per chunk
  unsigned long long* over_zero = nullptr;  // [width]
  const float* thresholds = nullptr;        // [width] or null
  unsigned long long* above = nullptr;      // [width] (with thresholds)
  unsigned long long* hist = nullptr;       // [width][bins] or null
  float* capture = nullptr;                 // row t at capture + t * capture_ld
  int64_t capture_ld = 0;
  bool any() const { return part != nullptr || capture != nullptr; }
};

// model/intervention.h Edit, byte for byte (checked with static_asserts in cuda_runtime.cpp).
struct DevEdit {
  int32_t neuron;
  uint8_t op;  // 0 set, 1 add, 2 scale
  uint8_t when;
  int16_t rule;
  float value;
};

// The current layer's edits at the FFN sites (index 0 = gate, 1 = act, 2 = up, 3 = h): [begin, end) in `edits`,
// sorted by neuron; token classes (null: every class) and the layer's rule values [T][rule_stride].
struct LayerEdits {
  const DevEdit* edits = nullptr;
  int64_t begin[4] = {0, 0, 0, 0}, end[4] = {0, 0, 0, 0};
  const uint8_t* cls = nullptr;
  const float* rule_values = nullptr;
  int32_t rule_stride = 0;
  bool any() const {
    for (int s = 0; s < 4; ++s)
      if (end[s] > begin[s]) return true;
    return false;
  }
};

// The FFN step for T tokens and I neurons. gu row t: gate in [0, I), up in [I, 2I) (row stride ldgu). Per (t, j):
// gate edits -> record gate -> a = silu (gelu_tanh with gelu: Gemma) -> act edits -> record act -> up edits ->
// record up -> h = a * u -> h edits -> record h -> h_out (bf16 when h_bf16, else float32; row stride ldh). sites: gate, act,
// up, h (SiteTarget each). gu_save (the training forward's copy for the backward): null, or [T, 2I] (packed) gate
// and up before any edit, in h_out's dtype (bf16 rounds them, as PyTorch's bf16 layers keep them). h_out, gu_save
// and the sites' captures must not overlap gu (inputs are loaded a few tokens ahead of the stores).
void ffn_fused(int64_t T, int64_t I, const float* gu, int64_t ldgu, void* h_out, bool h_bf16, int64_t ldh,
               const LayerEdits& edits, const StatsBatch& batch, const SiteTarget sites[4], Stream stream,
               bool gelu = false, void* gu_save = nullptr);

// The edits [begin, end) of `edits` (one projection site's at one layer, sorted by unit; no test-time rules) applied
// in place to the [T x width] block x (row stride ld); cls: token classes, or null (every class).
void edit_columns(int64_t T, float* x, int64_t ld, const DevEdit* edits, int64_t begin, int64_t end,
                  const uint8_t* cls, Stream stream);

// Statistics (and capture) of a finished [T x width] block (row stride ld): the sites q, k, v, o, down. The
// capture must not overlap x.
void column_stats(int64_t width, const float* x, int64_t ld, const StatsBatch& batch, const SiteTarget& site,
                  Stream stream);

// totals[j] += sum over chunks (in order) of part[c][*][j] for sum, sum_sq, abs_sum ([width] each, float64);
// with seq_means: for each sequence s with seq_row[s] >= 0, seq_means[seq_row[s] * seq_stride + j] =
// float(sum of its chunks' sums / seq_counted[s]).
void stats_reduce(int64_t width, const StatsBatch& batch, const double* part, double* sum, double* sum_sq,
                  double* abs_sum, float* seq_means, int64_t seq_stride, const int64_t* seq_row,
                  const int64_t* seq_counted, Stream stream);

// A test-time rule: out[t * out_stride] = factor * statistic of token t's row at `site` (0 gate, 1 act, 2 h)
// BEFORE any edit, for t < T (model/intervention.cpp row_statistic: stat 0 mean, 1 std, 2 median, 3 max, 4 IQR,
// 5 MAD, 6 percentile). smem_optin_bytes: the device's opt-in limit (the row is sorted in shared memory). gelu:
// the activation of the sites act and h is gelu_tanh (Gemma), else silu.
void rule_values(int64_t T, int64_t I, const float* gu, int64_t ldgu, int site, int stat, float factor,
                 float percentile, float* out, int64_t out_stride, int64_t smem_optin_bytes, Stream stream,
                 bool gelu = false);

}  // namespace cuda
}  // namespace ln
