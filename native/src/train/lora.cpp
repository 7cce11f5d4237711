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
[[noreturn]] void fail(const std::string& m) { throw std::invalid_argument("trainer: " + m); }
constexpr int64_t kRows = 16;  // rows per task of the dropout loops

bool lora_role(int r) { return r == kWq || r == kWk || r == kWv || r == kWo || r == kWGate || r == kWUp || r == kWDown; }

void scale_inplace(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}
}  // namespace

// Validates the Lora entries of the spec and appends, per adapter, the parameters A and B (no offsets yet: the
// constructor lays them out after the checkpoint tensors), then the classification head.
void Trainer::add_lora_params(const std::vector<TrainableSpec>& spec) {
  for (const TrainableSpec& s : spec) {
    const std::string where = s.role + (s.layer >= 0 ? " of layer " + std::to_string(s.layer) : std::string());
    if (s.mode != ParamMode::Lora) {
      if (s.lora_r != 0 || s.lora_alpha != 0.f || s.lora_dropout != 0.f)
        fail(where + ": r / alpha / dropout are only meaningful with mode 'lora'");
      continue;
    }
    int role = -1;
    for (int r = 0; r < kLayerRoles; ++r)
      if (s.role == layer_role_name(r)) role = r;
    if (s.layer < 0 || role < 0 || !lora_role(role))
      fail(where + ": mode 'lora' is supported for wq, wk, wv, wo, w_gate, w_up, w_down of a layer");
    if (s.lora_r < 1) fail(where + ": LoRA rank r must be an integer >= 1, got " + std::to_string(s.lora_r));
    if (!(s.lora_alpha > 0) || !std::isfinite(s.lora_alpha)) fail(where + ": LoRA alpha must be a number > 0");
    if (!(s.lora_dropout >= 0 && s.lora_dropout < 1)) fail(where + ": LoRA dropout must be in [0, 1)");
    const int base = find(s.role, s.layer);
    const int64_t N = params_[size_t(base)].stored.rows, K = params_[size_t(base)].stored.cols;
    if (s.lora_r > std::min(N, K))
      fail(where + ": LoRA rank " + std::to_string(s.lora_r) + " exceeds the weight's smaller side " +
           std::to_string(std::min(N, K)));
    for (size_t k = 0; k < s.index.size(); ++k) {  // masked B: the output features that get an update
      if (s.index[k] < 0 || s.index[k] >= N)
        fail(where + ": LoRA row " + std::to_string(s.index[k]) + " outside [0, " + std::to_string(N) + ")");
      if (k > 0 && s.index[k] <= s.index[k - 1]) fail(where + ": LoRA rows must be strictly increasing");
    }
    Adapter ad;
    ad.base = base;
    ad.layer = s.layer;
    ad.role = role;
    ad.r = s.lora_r;
    ad.scale = s.lora_alpha / float(s.lora_r);
    ad.dropout = s.lora_dropout;
    Param a, b;
    a.role = s.role + ".lora_A";
    b.role = s.role + ".lora_B";
    a.layer = b.layer = s.layer;
    a.mode = ParamMode::LoraA;
    b.mode = ParamMode::LoraB;
    a.mrows = s.lora_r;
    a.mcols = K;
    b.mrows = s.index.empty() ? N : int64_t(s.index.size());
    b.mcols = s.lora_r;
    b.index = s.index;
    ad.a = int(params_.size());
    params_.push_back(std::move(a));
    ad.b = int(params_.size());
    params_.push_back(std::move(b));
    params_[size_t(base)].lora = int(loras_.size());  // (by index: the push_backs above may have moved params_)
    loras_.push_back(ad);
  }
  if (opt_.num_labels < 0) fail("num_labels must be >= 0");
  if (opt_.num_labels > 0) {
    Param h;
    h.role = "score";
    h.layer = -1;
    h.mode = ParamMode::Dense;
    h.mrows = opt_.num_labels;
    h.mcols = cfg_.hidden;
    head_ = int(params_.size());
    params_.push_back(std::move(h));
  }
}

// Initial values of the parameters that have no checkpoint tensor: A uniform(-1/sqrt(K), 1/sqrt(K)), B = 0 (PEFT),
// the head normal(0, 0.02) (transformers' initializer_range default for Llama / Mistral / Qwen2).
void Trainer::init_extra_params() {
  for (const Adapter& ad : loras_) {
    const Param& a = params_[size_t(ad.a)];
    float* A = master_.data() + a.offset;
    for (int64_t i = 0; i < a.size; ++i) A[i] = lora_init_a(opt_.seed, ad.layer, ad.role, i, a.mcols);
    const Param& b = params_[size_t(ad.b)];
    std::fill(master_.begin() + b.offset, master_.begin() + b.offset + b.size, 0.f);
  }
  if (head_ >= 0) {
    const Param& h = params_[size_t(head_)];
    const uint64_t key = rng_key(opt_.seed, kRngHeadInit, 0, 0, 0, 0);
    float* W = master_.data() + h.offset;
    for (int64_t i = 0; i < h.size; ++i) {  // Box-Muller
      const double u1 = 1.0 - double(rng_uniform(key, 2 * i)), u2 = double(rng_uniform(key, 2 * i + 1));
      W[i] = float(0.02 * std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2));
    }
  }
}

void Trainer::set_dropout(bool backward, int64_t step, int64_t micro) {
  dropout_on_ = backward;
  drop_step_ = step >= 0 ? step : t_;
  drop_micro_ = micro >= 0 ? micro : micro_;
}

// Xd = X * mask / (1 - p) for the adapter's current mask (or, with accumulate, Xd += that: the backward of the
// dropout applied to a gradient).
void Trainer::lora_dropout(const Adapter& ad, int64_t M, const float* X, float* Xd, bool accumulate) {
  const int64_t K = params_[size_t(ad.base)].stored.cols;
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
  const Param &w = params_[size_t(ad.base)], &a = params_[size_t(ad.a)], &b = params_[size_t(ad.b)];
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
  const Param &w = params_[size_t(ad.base)], &a = params_[size_t(ad.a)], &b = params_[size_t(ad.b)];
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
