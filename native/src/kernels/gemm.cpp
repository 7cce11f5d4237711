// GEMM dispatch: validates the arguments, then picks the kernel family (cpu_features.cpp) and the path:
// few rows of X (decode) -> streaming GEMV, memory-bound on reading W; many rows (prefill) -> packed, cache-blocked
// GEMM, compute-bound. The readable reference is gemm_ref.cpp; the kernels are in gemm_plain.cpp / gemm_avx2.cpp.
#include <cstdlib>
#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/gemm_kernels.h"

namespace ln {

ScratchBuffer::ScratchBuffer() {}
ScratchBuffer::~ScratchBuffer() { std::free(data_); }

float* ScratchBuffer::get(int64_t n) {
  if (n > size_) {
    std::free(data_);
    // Round up to a multiple of 64 bytes (aligned_alloc requires it) and grow geometrically to avoid churn.
    int64_t want = n > 2 * size_ ? n : 2 * size_;
    want = (want + 15) / 16 * 16;
    data_ = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(want) * sizeof(float)));
    if (!data_) {
      size_ = 0;
      throw std::bad_alloc();
    }
    size_ = want;
  }
  return data_;
}

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
  if (active_kernel() == CpuKernel::Avx2) {
    (gemv ? avx2_gemv : avx2_gemm)(M, X, ldx, W, Y, ldy, compute, accumulate, pool);
  } else {
    (gemv ? plain_gemv : plain_gemm)(M, X, ldx, W, Y, ldy, compute, accumulate, pool);
  }
}

}  // namespace ln
