// The inner loop of activation statistics (model/site_pass.cpp): one token's values of a range of units added
// into that range's per-unit accumulators. Called once per (counted token, site) while the row is in cache, so
// it is vectorised; the plain and AVX2 versions give identical results (counts are integers, and float32 values
// are added to, squared into and their absolute values added to float64 exactly the same way: a float32 square is
// exact in float64).
#pragma once
#include <cstdint>

namespace ln {

// Accumulators of units [0, n): x[j] is unit j's value.
struct RowAccumulators {
  int32_t* over_zero = nullptr;       // += x[j] > 0
  double* sum = nullptr;              // += x[j]
  double* sum_sq = nullptr;           // += x[j]^2
  double* abs_sum = nullptr;          // += |x[j]|
  const float* thresholds = nullptr;  // optional: above[j] += x[j] > thresholds[j]
  int32_t* above = nullptr;
  double* seq_sum = nullptr;          // optional: += x[j] (the current sequence's sum)
};

// Runs the active kernel table's version (kernels/kernel_table.h).
void accumulate_row(const float* x, int64_t n, const RowAccumulators& a);
void accumulate_row_plain(const float* x, int64_t n, const RowAccumulators& a);
void accumulate_row_avx2(const float* x, int64_t n, const RowAccumulators& a);  // only after cpu_supports(Avx2)
void accumulate_row_avx512(const float* x, int64_t n, const RowAccumulators& a);  // after cpu_supports(Avx512)

}  // namespace ln
