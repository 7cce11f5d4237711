// Reference GEMM: plain loops, double-free float32 accumulation in k order. Every fast kernel is tested against
// this (and this against a float64 recomputation in native/tests).
#include <vector>

#include "kernels/gemm.h"

namespace ln {

void gemm_xwt_ref(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                  bool accumulate) {
  const int64_t N = W.rows, K = W.cols;
  std::vector<float> w(static_cast<size_t>(K)), x(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    convert_to_f32(W.data, W.dtype, n * K, K, w.data());
    if (compute == Compute::BF16)
      for (int64_t k = 0; k < K; ++k) w[k] = round_bf16(w[k]);
    for (int64_t i = 0; i < M; ++i) {
      const float* xi = X + i * ldx;
      float acc = 0.f;
      if (compute == Compute::BF16) {
        for (int64_t k = 0; k < K; ++k) acc += round_bf16(xi[k]) * w[k];
      } else {
        for (int64_t k = 0; k < K; ++k) acc += xi[k] * w[k];
      }
      float* y = Y + i * ldy + n;
      *y = accumulate ? *y + acc : acc;
    }
  }
}

}  // namespace ln
