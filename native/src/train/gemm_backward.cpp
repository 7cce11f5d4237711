// Backward GEMMs: argument checks and the run-time choice of kernel family (see gemm_backward.h), the plain
// (portable, auto-vectorised) kernels, and the float64 references. The AVX2 kernels are in
// kernels/gemm_backward_avx2.cpp.
#include "train/gemm_backward.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/dtype.h"
#include "kernels/kernel_table.h"
#include "kernels/math.h"

namespace ln {
namespace train {

namespace {
constexpr int64_t kRowBlock = 16;  // rows of dX per task in gemm_dx
constexpr int64_t kOutBlock = 8;   // rows of dW per task in gemm_dw

inline void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] += a * x[k];
}

// Row n of W as float32: a pointer into W (F32) or the converted row in buf.
inline const float* weight_row(const WeightRef& W, int64_t n, float* buf) {
  const int64_t K = W.cols;
  if (W.dtype == DType::F32) {
    // Checkpoint pointers may be misaligned for float; memcpy into the buffer when they are.
    const char* p = static_cast<const char*>(W.data) + n * K * 4;
    if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) return reinterpret_cast<const float*>(p);
    std::memcpy(buf, p, size_t(K) * 4);
    return buf;
  }
  convert_to_f32(W.data, W.dtype, n * K, K, buf);
  return buf;
}
}  // namespace

void gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate,
             float* scratch, ThreadPool& pool) {
  const int64_t N = W.rows, K = W.cols;
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("gemm_dx: negative dimension");
  if (M == 0 || K == 0) return;
  if (ldx < K || (N > 0 && ldy < N)) throw std::invalid_argument("gemm_dx: row stride smaller than the row");
  if (N == 0) {  // empty sum
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::memset(dX + i * ldx, 0, size_t(K) * sizeof(float));
    return;
  }
  cpu_kernels().gemm_dx(M, dY, ldy, W, dX, ldx, accumulate, scratch, pool);
}

void gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx, float* dW,
             int64_t lddw, ThreadPool& pool) {
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("gemm_dw: negative dimension");
  if (M == 0 || N == 0 || K == 0) return;
  if (ldy < N || ldx < K || lddw < K) throw std::invalid_argument("gemm_dw: row stride smaller than the row");
  cpu_kernels().gemm_dw(M, N, K, dY, ldy, X, ldx, dW, lddw, pool);
}

// ---- plain kernels: one task per block of rows of dX (gemm_dx) or of dW (gemm_dw), an axpy per product row.

void plain_gemm_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx,
                   bool accumulate, float* scratch, ThreadPool& pool) {
  const int64_t N = W.rows, K = W.cols;
  const int64_t n_blocks = (M + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(n_blocks, [&](int64_t b, int thread) {
    const int64_t i0 = b * kRowBlock, i1 = std::min(M, i0 + kRowBlock);
    float* buf = scratch + int64_t(thread) * K;
    if (!accumulate)
      for (int64_t i = i0; i < i1; ++i) std::memset(dX + i * ldx, 0, size_t(K) * sizeof(float));
    for (int64_t n = 0; n < N; ++n) {
      const float* w = nullptr;
      for (int64_t i = i0; i < i1; ++i) {
        const float a = dY[i * ldy + n];
        if (a == 0.f) continue;  // ignored positions and masked columns are common
        if (!w) w = weight_row(W, n, buf);
        axpy(a, w, dX + i * ldx, K);
      }
    }
  });
}

void plain_gemm_dw(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx,
                   float* dW, int64_t lddw, ThreadPool& pool) {
  const int64_t n_blocks = (N + kOutBlock - 1) / kOutBlock;
  pool.parallel_for(n_blocks, [&](int64_t b, int) {
    const int64_t n0 = b * kOutBlock, n1 = std::min(N, n0 + kOutBlock);
    for (int64_t i = 0; i < M; ++i) {
      const float* x = X + i * ldx;
      for (int64_t n = n0; n < n1; ++n) {
        const float a = dY[i * ldy + n];
        if (a != 0.f) axpy(a, x, dW + n * lddw, K);
      }
    }
  });
}

// ---- float64 references

void gemm_dx_ref(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < W.cols; ++k) {
      double s = accumulate ? dX[i * ldx + k] : 0.0;
      for (int64_t n = 0; n < W.rows; ++n) s += double(dY[i * ldy + n]) * math::load_f32(W.data, W.dtype, n * W.cols + k);
      dX[i * ldx + k] = float(s);
    }
}

void gemm_dw_ref(int64_t M, int64_t N, int64_t K, const float* dY, int64_t ldy, const float* X, int64_t ldx, float* dW,
                 int64_t lddw) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      double s = dW[n * lddw + k];
      for (int64_t i = 0; i < M; ++i) s += double(dY[i * ldy + n]) * X[i * ldx + k];
      dW[n * lddw + k] = float(s);
    }
}

}  // namespace train
}  // namespace ln
