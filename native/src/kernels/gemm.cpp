// GEMM dispatch: validates the arguments, then calls the active kernel table (kernel_table.h) on one of two paths:
// few rows of X (decode) -> streaming GEMV, memory-bound on reading W; many rows (prefill) -> packed, cache-blocked
// GEMM, compute-bound. The readable reference is gemm_ref.cpp; the kernels are in gemm_plain.cpp, gemm_avx2.cpp,
// gemm_avx512.cpp and gemm_avx512bf16.cpp.
#include <cstdlib>
#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/gemm_kernels.h"
#include "kernels/kernel_table.h"

namespace ln {

int64_t balanced_chunk(int64_t units, int threads, int64_t max_per_task) {
  if (threads < 1) threads = 1;
  if (max_per_task < 1) max_per_task = 1;
  int64_t per_round = int64_t(threads) * max_per_task;
  int64_t tasks = int64_t(threads) * ((units + per_round - 1) / per_round);
  int64_t chunk = (units + tasks - 1) / tasks;
  return chunk < 1 ? 1 : chunk;
}

void gemm_xwt(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
              bool accumulate, ThreadPool& pool) {
  const int64_t N = W.rows, K = W.cols;
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("gemm_xwt: negative dimension");
  if (M == 0 || N == 0) return;
  if (ldy < N || (K > 0 && ldx < K)) throw std::invalid_argument("gemm_xwt: row stride smaller than the row");
  if (K == 0) {  // empty sum
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t n = 0; n < N; ++n) Y[i * ldy + n] = 0.f;
    return;
  }
  const bool gemv = M <= kGemvMaxRows;
  const CpuKernelTable& t = cpu_kernels();
  (gemv ? t.gemv : t.gemm)(M, X, ldx, W, Y, ldy, compute, accumulate, pool);
}

}  // namespace ln
