// LoRA adapters of the trainer (see lora.h for the math and trainer.h for the arena layout). The products are the
// same GEMMs as every other layer (kernels/gemm.h forward, train/gemm_backward.h backward) with the float32
// adapter matrices viewed as weights; nothing here allocates (buffers come from Trainer::ensure).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/ops.h"
#include "train/gemm_backward.h"
#include "train/lora.h"
#include "train/trainer.h"

namespace ln {
namespace train {

namespace {
constexpr int64_t kRows = 16;  // rows per task of the dropout loops

void scale_inplace(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}
}  // namespace

void Trainer::set_dropout(bool backward, int64_t step, int64_t micro) {
  dropout_on_ = backward;
  drop_step_ = step >= 0 ? step : t_;
  drop_micro_ = micro >= 0 ? micro : micro_;
}

// Xd = X * mask / (1 - p) for the adapter's current mask (or, with accumulate, Xd += that: the backward of the
// dropout applied to a gradient).
void Trainer::lora_dropout(const Adapter& ad, int64_t M, const float* X, float* Xd, bool accumulate) {
  const int64_t K = lay_.params[size_t(ad.base)].stored.cols;
  const uint64_t key = lora_dropout_key(opt_.seed, drop_step_, drop_micro_, ad.layer, ad.role);
  const float p = ad.dropout, keep_scale = 1.f / (1.f - p);
  pool_.parallel_for((M + kRows - 1) / kRows, [&](int64_t b, int) {
    for (int64_t i = b * kRows, e = std::min(M, i + kRows); i < e; ++i)
      for (int64_t k = 0; k < K; ++k) {
        const float v = lora_keep(key, i, k, K, p) ? X[i * K + k] * keep_scale : 0.f;
        Xd[i * K + k] = accumulate ? Xd[i * K + k] + v : v;
      }
  });
}

// Y += s * dropout(X) A^T B^T (B masked: only the columns `index` of Y). Saves H = s * dropout(X) A^T for dB.
void Trainer::lora_forward(Adapter& ad, int64_t M, const float* X, float* Y) {
  const Param &w = lay_.params[size_t(ad.base)], &a = lay_.params[size_t(ad.a)], &b = lay_.params[size_t(ad.b)];
  const int64_t N = w.stored.rows, K = w.stored.cols, r = ad.r;
  const float* xin = X;
  if (dropout_on_ && ad.dropout > 0) {
    lora_dropout(ad, M, X, lora_x_, false);
    xin = lora_x_;
  }
  gemm_xwt(M, xin, K, master_ref(a), ad.h, r, Compute::F32, false, pool_);
  scale_inplace(ad.h, M * r, ad.scale);
  if (b.index.empty()) {
    gemm_xwt(M, ad.h, r, master_ref(b), Y, N, Compute::F32, true, pool_);
    return;
  }
  const int64_t n = b.mrows;
  gemm_xwt(M, ad.h, r, master_ref(b), sel_, n, Compute::F32, false, pool_);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < n; ++k) Y[i * N + b.index[size_t(k)]] += sel_[i * n + k];
}

// With G = dY (or its columns `index` for a masked B) and H = s * Xd A^T from the forward:
//   dB += G^T H,   dH = s * G B,   dA += dH^T Xd,   dX += dropout'(dH A)   (dX may be null: not needed).
void Trainer::lora_backward(Adapter& ad, int64_t M, const float* X, const float* dY, float* dX) {
  const Param &w = lay_.params[size_t(ad.base)], &a = lay_.params[size_t(ad.a)], &b = lay_.params[size_t(ad.b)];
  const int64_t N = w.stored.rows, K = w.stored.cols, r = ad.r, n = b.mrows;
  const float* G = dY;
  int64_t ldg = N;
  if (!b.index.empty()) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < n; ++k) sel_[i * n + k] = dY[i * N + b.index[size_t(k)]];
    G = sel_;
    ldg = n;
  }
  gemm_dw(M, n, r, G, ldg, ad.h, r, grad_.data() + b.offset, r, pool_);
  gemm_dx(M, G, ldg, master_ref(b), lora_dh_, r, false, gscratch_, pool_);
  scale_inplace(lora_dh_, M * r, ad.scale);
  const bool drop = dropout_on_ && ad.dropout > 0;
  const float* xin = X;
  if (drop) {
    lora_dropout(ad, M, X, lora_x_, false);
    xin = lora_x_;
  }
  gemm_dw(M, r, K, lora_dh_, r, xin, K, grad_.data() + a.offset, K, pool_);
  if (!dX) return;
  if (!drop) {
    gemm_dx(M, lora_dh_, r, master_ref(a), dX, K, true, gscratch_, pool_);
    return;
  }
  gemm_dx(M, lora_dh_, r, master_ref(a), lora_x_, K, false, gscratch_, pool_);
  lora_dropout(ad, M, lora_x_, dX, true);
}

}  // namespace train
}  // namespace ln
