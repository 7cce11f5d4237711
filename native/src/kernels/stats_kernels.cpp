// Plain version of the statistics row kernel, and the dispatch (see stats_kernels.h).
#include "kernels/stats_kernels.h"

#include <cmath>

#include "kernels/kernel_table.h"

namespace ln {

void accumulate_row_plain(const float* x, int64_t n, const RowAccumulators& a) {
  for (int64_t j = 0; j < n; ++j) {
    const double v = double(x[j]);
    a.over_zero[j] += x[j] > 0.f;
    a.sum[j] += v;
    a.sum_sq[j] += v * v;
    a.abs_sum[j] += std::fabs(v);
  }
  if (a.thresholds)
    for (int64_t j = 0; j < n; ++j) a.above[j] += x[j] > a.thresholds[j];
  if (a.seq_sum)
    for (int64_t j = 0; j < n; ++j) a.seq_sum[j] += double(x[j]);
}

void accumulate_row(const float* x, int64_t n, const RowAccumulators& a) {
  cpu_kernels().accumulate_row(x, n, a);
}

}  // namespace ln
