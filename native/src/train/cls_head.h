// The classification head's arithmetic (TrainerOptions::num_labels), shared by the CPU trainer (train/head.cpp) and
// the CUDA trainer, which both run it on the host: C is a handful of classes, so its products are nothing next to
// the model's. Per sequence, x is the final-normed hidden state of its last token, W the head [C, H] and b its bias
// [C] (null: none).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ln {
namespace train {

// z[c] = b[c] + sum_k W[c, k] x[k] (double sums, rounded once).
inline void cls_logits(const float* W, const float* b, int64_t C, int64_t H, const float* x, float* z) {
  for (int64_t c = 0; c < C; ++c) {
    double acc = b ? double(b[c]) : 0.0;
    for (int64_t k = 0; k < H; ++k) acc += double(W[c * H + k]) * x[k];
    z[c] = float(acc);
  }
}

// log-sum-exp of z (double), the softmax's normaliser.
inline void cls_logsumexp_parts(const float* z, int64_t C, double& mx, double& sum) {
  mx = z[0];
  for (int64_t c = 1; c < C; ++c) mx = std::max(mx, double(z[c]));
  sum = 0;
  for (int64_t c = 0; c < C; ++c) sum += std::exp(double(z[c]) - mx);
}

// Cross-entropy of the logits z against `label`.
inline double cls_loss(const float* z, int64_t C, int32_t label) {
  double mx, sum;
  cls_logsumexp_parts(z, C, mx, sum);
  return mx + std::log(sum) - double(z[label]);
}

// With dz = (softmax(z) - onehot(label)) * scale: gW += dz x^T, gb += dz (gb null: no bias) and dx += W^T dz (all
// accumulated).
inline void cls_backward(const float* W, int64_t C, int64_t H, const float* x, const float* z, int32_t label,
                         double scale, float* gW, float* gb, float* dx) {
  double mx, sum;
  cls_logsumexp_parts(z, C, mx, sum);
  for (int64_t c = 0; c < C; ++c) {
    const double p = std::exp(double(z[c]) - mx) / sum;
    const float d = float((p - (c == label ? 1.0 : 0.0)) * scale);
    if (gb) gb[c] += d;
    for (int64_t k = 0; k < H; ++k) {
      gW[c * H + k] += d * x[k];
      dx[k] += d * W[c * H + k];
    }
  }
}

}  // namespace train
}  // namespace ln
