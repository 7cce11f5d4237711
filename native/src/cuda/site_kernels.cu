// The neuron-site kernels (site_kernels.h): fused FFN step, projection statistics, in-order reduction, rule
// statistics. Per-element math from kernels/math.h; this file is indexing, accumulation order and reductions.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/site_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

using elementwise::put;  // float32 or bf16 outputs (h_out, gu_save)

constexpr int kUnitThreads = 256;  // units (neurons) per block of the site kernels
constexpr int kMaxGridY = 65535;

// One thread's statistics of one unit over one chunk.
struct Acc {
  int32_t over = 0, above = 0;
  double sum = 0, sum_sq = 0, abs_sum = 0;
};

__device__ inline void acc_add(Acc& a, float x, const SiteTarget& st, int64_t j, const StatsBatch& b) {
  a.over += x > 0.f;
  const double v = double(x);
  a.sum += v;
  a.sum_sq += v * v;
  a.abs_sum += fabs(v);
  if (st.above) a.above += x > st.thresholds[j];
  if (st.hist) atomicAdd(&st.hist[j * b.bins + math::histogram_bin(v, b.edges, b.bins)], 1ull);
}

// The chunk's partial sums (plain stores: (chunk, unit) is this thread's alone) and its counts (integer atomics).
__device__ inline void acc_flush(const Acc& a, const SiteTarget& st, int64_t width, int64_t chunk, int64_t j) {
  double* p = st.part + chunk * 3 * width + j;
  p[0] = a.sum;
  p[width] = a.sum_sq;
  p[2 * width] = a.abs_sum;
  if (a.over) atomicAdd(&st.over_zero[j], static_cast<unsigned long long>(a.over));
  if (st.above && a.above) atomicAdd(&st.above[j], static_cast<unsigned long long>(a.above));
}

__device__ inline void record(const SiteTarget& st, Acc& a, float x, int64_t t, int64_t j, bool counted,
                              const StatsBatch& b) {
  if (st.capture) st.capture[t * st.capture_ld + j] = x;
  if (st.part && counted) acc_add(a, x, st, j, b);
}

// [lo, hi) of the edits of neuron j within [b, e) (sorted by neuron).
__device__ inline void edit_range(const DevEdit* edits, int64_t b, int64_t e, int64_t j, int64_t* lo, int64_t* hi) {
  int64_t l = b, n = e - b;  // lower_bound(neuron >= j)
  while (n > 0) {
    const int64_t h = n / 2;
    if (edits[l + h].neuron < j) {
      l += h + 1;
      n -= h + 1;
    } else {
      n = h;
    }
  }
  int64_t r = l;
  while (r < e && edits[r].neuron == j) ++r;
  *lo = l;
  *hi = r;
}

__device__ inline float apply_edits(const DevEdit* edits, int64_t lo, int64_t hi, float y, uint8_t cls,
                                    const float* rule_values) {
  for (int64_t i = lo; i < hi; ++i) {
    const DevEdit e = edits[i];
    if (!(e.when & cls)) continue;
    y = math::apply_edit_op(e.op, y, e.rule < 0 ? e.value : rule_values[e.rule]);
  }
  return y;
}

struct FfnParams {
  int64_t T, I;
  const float* gu;
  int64_t ldgu;
  void* h_out;
  bool h_bf16;
  int64_t ldh;
  void* gu_save;  // null, or [T, 2I] gate and up as loaded, in h_out's dtype (the training forward's copy)
  LayerEdits e;
  StatsBatch b;
  SiteTarget s[4];  // gate, act, up, h
  int64_t chunk0;
  bool gelu;  // the activation: Gemma's gelu_tanh, else silu
};

// The FFN's activation (model/ffn.cpp act_inplace).
__device__ inline float activation(float g, bool gelu) { return gelu ? math::gelu_tanh(g) : math::silu(g); }

// Tokens whose inputs a thread loads before it uses the first of them. A thread walks its chunk's tokens in order
// (the statistics' order), and the statistics' registers limit how many threads an SM holds, so without loads
// issued ahead each thread would have one token's values in flight and the kernel would wait on memory latency.
constexpr int kAhead = 4;

template <bool kRecord, bool kEdits>
__global__ void ffn_kernel(FfnParams p) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= p.I) return;
  const int64_t c = p.chunk0 + blockIdx.y;
  const StatsChunk ch = p.b.chunks[c];
  int64_t lo[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 0, 0};  // gate, act, up, h
  if (kEdits)
    for (int s = 0; s < 4; ++s) edit_range(p.e.edits, p.e.begin[s], p.e.end[s], j, &lo[s], &hi[s]);
  Acc acc[4];
  for (int32_t i0 = 0; i0 < ch.n; i0 += kAhead) {
    const int32_t n = min(kAhead, ch.n - i0);
    float gs[kAhead], us[kAhead];  // h_out never overlaps gu (ffn_fused), so loading ahead of the stores is safe
#pragma unroll
    for (int k = 0; k < kAhead; ++k)
      if (k < n) {
        const float* row = p.gu + (ch.row0 + i0 + k) * p.ldgu;
        gs[k] = row[j];
        us[k] = row[p.I + j];
      }
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      if (k >= n) break;
      const int64_t t = ch.row0 + i0 + k;
      float g = gs[k];
      float u = us[k];
      if (p.gu_save) {
        put(p.gu_save, p.h_bf16, t * 2 * p.I + j, g);
        put(p.gu_save, p.h_bf16, t * 2 * p.I + p.I + j, u);
      }
      uint8_t cls = 0xff;
      const float* rv = nullptr;
      if (kEdits) {
        if (p.e.cls) cls = p.e.cls[t];
        if (p.e.rule_values) rv = p.e.rule_values + t * p.e.rule_stride;
        g = apply_edits(p.e.edits, lo[0], hi[0], g, cls, rv);
      }
      const bool counted = !p.b.mask || p.b.mask[t] != 0;
      if (kRecord) record(p.s[0], acc[0], g, t, j, counted, p.b);
      float a = activation(g, p.gelu);
      if (kEdits) a = apply_edits(p.e.edits, lo[1], hi[1], a, cls, rv);
      if (kRecord) record(p.s[1], acc[1], a, t, j, counted, p.b);
      if (kEdits) u = apply_edits(p.e.edits, lo[2], hi[2], u, cls, nullptr);
      if (kRecord) record(p.s[2], acc[2], u, t, j, counted, p.b);
      float h = __fmul_rn(a, u);  // never contracted with an Add edit into an FMA: the CPU rounds the product first
      if (kEdits) h = apply_edits(p.e.edits, lo[3], hi[3], h, cls, rv);
      if (kRecord) record(p.s[3], acc[3], h, t, j, counted, p.b);
      put(p.h_out, p.h_bf16, t * p.ldh + j, h);
    }
  }
  if (kRecord)
    for (int s = 0; s < 4; ++s)
      if (p.s[s].part) acc_flush(acc[s], p.s[s], p.I, c, j);
}

// One thread per (unit, block of kEditRows rows): the unit's edits, in order, on each of its rows.
constexpr int kEditRows = 64;
__global__ void edit_columns_kernel(int64_t T, float* x, int64_t ld, const DevEdit* edits, int64_t begin,
                                    int64_t end, const uint8_t* cls) {
  const int64_t i = begin + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= end || (i > begin && edits[i - 1].neuron == edits[i].neuron)) return;  // the first edit of its unit
  const int64_t j = edits[i].neuron;
  int64_t hi = i + 1;
  while (hi < end && edits[hi].neuron == j) ++hi;
  const int64_t t1 = min(T, int64_t(blockIdx.y + 1) * kEditRows);
  for (int64_t t = int64_t(blockIdx.y) * kEditRows; t < t1; ++t) {
    float* y = x + t * ld + j;
    *y = apply_edits(edits, i, hi, *y, cls ? cls[t] : uint8_t(0xff), nullptr);
  }
}

__global__ void column_stats_kernel(int64_t width, const float* x, int64_t ld, StatsBatch b, SiteTarget st,
                                    int64_t chunk0) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= width) return;
  const int64_t c = chunk0 + blockIdx.y;
  const StatsChunk ch = b.chunks[c];
  Acc acc;
  for (int32_t i0 = 0; i0 < ch.n; i0 += kAhead) {
    const int32_t n = min(kAhead, ch.n - i0);
    float xs[kAhead];  // loaded ahead (kAhead); a capture never overlaps x
#pragma unroll
    for (int k = 0; k < kAhead; ++k)
      if (k < n) xs[k] = x[(ch.row0 + i0 + k) * ld + j];
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      if (k >= n) break;
      const int64_t t = ch.row0 + i0 + k;
      record(st, acc, xs[k], t, j, !b.mask || b.mask[t] != 0, b);
    }
  }
  if (st.part) acc_flush(acc, st, width, c, j);
}

__global__ void stats_reduce_kernel(int64_t width, StatsBatch b, const double* part, double* sum, double* sum_sq,
                                    double* abs_sum, float* seq_means, int64_t seq_stride, const int64_t* seq_row,
                                    const int64_t* seq_counted) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= width) return;
  double s = 0, sq = 0, ab = 0, seq_sum = 0;
  int32_t cur = -1;
  auto flush = [&]() {
    if (cur >= 0 && seq_row[cur] >= 0)
      seq_means[seq_row[cur] * seq_stride + j] = float(seq_sum / double(seq_counted[cur]));
  };
  for (int32_t c = 0; c < b.n_chunks; ++c) {
    const double* p = part + int64_t(c) * 3 * width + j;
    s += p[0];
    sq += p[width];
    ab += p[2 * width];
    if (seq_means) {
      const int32_t q = b.chunks[c].seq;
      if (q != cur) {
        flush();
        cur = q;
        seq_sum = 0;
      }
      seq_sum += p[0];
    }
  }
  if (seq_means) flush();
  sum[j] += s;
  sum_sq[j] += sq;
  abs_sum[j] += ab;
}

// One block per token: the statistic of its row at the rule's site (values before any edit).
__global__ void rule_kernel(int64_t I, const float* gu, int64_t ldgu, int site, int stat, float factor, float pct,
                            float* out, int64_t out_stride, int64_t n2, bool gelu) {
  extern __shared__ float buf[];
  __shared__ double red_d[32];
  __shared__ float red_f[32];
  const float* row = gu + int64_t(blockIdx.x) * ldgu;
  auto value = [&](int64_t j) {
    const float g = row[j];
    if (site == 0) return g;
    const float a = activation(g, gelu);
    return site == 2 ? a * row[I + j] : a;
  };
  float result = 0.f;
  if (stat == 0 || stat == 1) {  // mean, population std (float64, as row_statistic)
    double s = 0;
    for (int64_t j = threadIdx.x; j < I; j += blockDim.x) s += double(value(j));
    s = reduce::block_sum(s, red_d);
    const double mean = s / double(I);
    result = float(mean);
    if (stat == 1) {
      double s2 = 0;
      for (int64_t j = threadIdx.x; j < I; j += blockDim.x) {
        const double d = double(value(j)) - mean;
        s2 += d * d;
      }
      s2 = reduce::block_sum(s2, red_d);
      result = float(sqrt(s2 / double(I)));
    }
  } else if (stat == 3) {  // max
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < I; j += blockDim.x) m = fmaxf(m, value(j));
    result = reduce::block_max(m, red_f);
  } else {  // order statistics: bitonic sort of the row (padded with +inf to n2, a power of two)
    auto sort = [&]() {
      __syncthreads();
      for (int64_t k = 2; k <= n2; k <<= 1) {
        for (int64_t m = k >> 1; m > 0; m >>= 1) {
          for (int64_t i = threadIdx.x; i < n2; i += blockDim.x) {
            const int64_t ixj = i ^ m;
            if (ixj > i) {
              const float a = buf[i], b = buf[ixj];
              const bool ascending = (i & k) == 0;
              if ((a > b) == ascending) {
                buf[i] = b;
                buf[ixj] = a;
              }
            }
          }
          __syncthreads();
        }
      }
    };
    for (int64_t j = threadIdx.x; j < n2; j += blockDim.x) buf[j] = j < I ? value(j) : INFINITY;
    sort();
    if (stat == 2) {
      result = math::quantile_sorted(buf, I, 0.5);
    } else if (stat == 6) {
      result = math::quantile_sorted(buf, I, double(pct) / 100.0);
    } else if (stat == 4) {
      const float q1 = math::quantile_sorted(buf, I, 0.25);
      result = math::quantile_sorted(buf, I, 0.75) - q1;
    } else {  // 5: MAD = median |x - median|
      const float med = math::quantile_sorted(buf, I, 0.5);
      __syncthreads();  // every thread has read the median before the buffer is rewritten
      for (int64_t j = threadIdx.x; j < n2; j += blockDim.x) buf[j] = j < I ? fabsf(value(j) - med) : INFINITY;
      sort();
      result = math::quantile_sorted(buf, I, 0.5);
    }
  }
  if (threadIdx.x == 0) out[int64_t(blockIdx.x) * out_stride] = factor * result;
}

unsigned unit_blocks(int64_t width) { return unsigned((width + kUnitThreads - 1) / kUnitThreads); }

}  // namespace

void ffn_fused(int64_t T, int64_t I, const float* gu, int64_t ldgu, void* h_out, bool h_bf16, int64_t ldh,
               const LayerEdits& edits, const StatsBatch& batch, const SiteTarget sites[4], Stream stream, bool gelu,
               void* gu_save) {
  if (T <= 0 || I <= 0) return;
  if (batch.n_chunks <= 0 || !batch.chunks) throw std::runtime_error("langneurons cuda: ffn_fused: no token chunks");
  FfnParams p{};
  p.T = T;
  p.I = I;
  p.gu = gu;
  p.ldgu = ldgu;
  p.h_out = h_out;
  p.h_bf16 = h_bf16;
  p.ldh = ldh;
  p.gu_save = gu_save;
  p.e = edits;
  p.b = batch;
  p.gelu = gelu;
  bool rec = false;
  for (int s = 0; s < 4; ++s) {
    p.s[s] = sites[s];
    rec = rec || sites[s].any();
  }
  const bool ed = edits.any();
  for (int64_t c0 = 0; c0 < batch.n_chunks; c0 += kMaxGridY) {
    p.chunk0 = c0;
    const dim3 grid{unit_blocks(I), unsigned(std::min<int64_t>(kMaxGridY, batch.n_chunks - c0)), 1u};
    cudaStream_t s = as_stream(stream);
    if (rec && ed) ffn_kernel<true, true><<<grid, kUnitThreads, 0, s>>>(p);
    else if (rec) ffn_kernel<true, false><<<grid, kUnitThreads, 0, s>>>(p);
    else if (ed) ffn_kernel<false, true><<<grid, kUnitThreads, 0, s>>>(p);
    else ffn_kernel<false, false><<<grid, kUnitThreads, 0, s>>>(p);
    check(cudaGetLastError(), "ffn_fused");
  }
}

void edit_columns(int64_t T, float* x, int64_t ld, const DevEdit* edits, int64_t begin, int64_t end,
                  const uint8_t* cls, Stream stream) {
  if (T <= 0 || end <= begin) return;
  const int64_t row_blocks = (T + kEditRows - 1) / kEditRows;
  if (row_blocks > kMaxGridY) throw std::runtime_error("langneurons cuda: edit_columns: too many rows");
  const dim3 grid{unsigned((end - begin + kUnitThreads - 1) / kUnitThreads), unsigned(row_blocks), 1u};
  edit_columns_kernel<<<grid, kUnitThreads, 0, as_stream(stream)>>>(T, x, ld, edits, begin, end, cls);
  check(cudaGetLastError(), "edit_columns");
}

void column_stats(int64_t width, const float* x, int64_t ld, const StatsBatch& batch, const SiteTarget& site,
                  Stream stream) {
  if (width <= 0 || !site.any()) return;
  if (batch.n_chunks <= 0 || !batch.chunks) throw std::runtime_error("langneurons cuda: column_stats: no token chunks");
  for (int64_t c0 = 0; c0 < batch.n_chunks; c0 += kMaxGridY) {
    const dim3 grid{unit_blocks(width), unsigned(std::min<int64_t>(kMaxGridY, batch.n_chunks - c0)), 1u};
    column_stats_kernel<<<grid, kUnitThreads, 0, as_stream(stream)>>>(width, x, ld, batch, site, c0);
    check(cudaGetLastError(), "column_stats");
  }
}

void stats_reduce(int64_t width, const StatsBatch& batch, const double* part, double* sum, double* sum_sq,
                  double* abs_sum, float* seq_means, int64_t seq_stride, const int64_t* seq_row,
                  const int64_t* seq_counted, Stream stream) {
  if (width <= 0 || batch.n_chunks <= 0) return;
  stats_reduce_kernel<<<unit_blocks(width), kUnitThreads, 0, as_stream(stream)>>>(
      width, batch, part, sum, sum_sq, abs_sum, seq_means, seq_stride, seq_row, seq_counted);
  check(cudaGetLastError(), "stats_reduce");
}

void rule_values(int64_t T, int64_t I, const float* gu, int64_t ldgu, int site, int stat, float factor,
                 float percentile, float* out, int64_t out_stride, int64_t smem_optin_bytes, Stream stream, bool gelu) {
  if (T <= 0 || I <= 0) return;
  if (T > 2147483647) throw std::runtime_error("langneurons cuda: rule_values: too many rows");
  int64_t n2 = 1;
  while (n2 < I) n2 <<= 1;
  const bool sorts = stat == 2 || stat == 4 || stat == 5 || stat == 6;
  const int64_t smem = sorts ? n2 * int64_t(sizeof(float)) : 0;
  if (smem > smem_optin_bytes)
    throw std::runtime_error("langneurons cuda: rule_values: a row of " + std::to_string(I) +
                             " neurons needs " + std::to_string(smem) + " bytes of shared memory to sort; the device allows " +
                             std::to_string(smem_optin_bytes));
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(rule_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
          "rule_values: shared memory opt-in");
  rule_kernel<<<unsigned(T), 512, size_t(smem), as_stream(stream)>>>(I, gu, ldgu, site, stat, factor, percentile, out,
                                                                    out_stride, n2, gelu);
  check(cudaGetLastError(), "rule_values");
}

}  // namespace cuda
}  // namespace ln
