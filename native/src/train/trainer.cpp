// Trainer: see trainer.h. The forward mirrors native/src/model/{attention,ffn,model}.cpp in float32; the backward
// walks it in reverse with the pairs of train/layers.h and the products of train/gemm_backward.h.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/oom.h"
#include "kernels/math.h"
#include "kernels/ops.h"
#include "train/gemm_backward.h"

namespace ln {
namespace train {

namespace {
constexpr int64_t kLmChunk = 64;  // LM-head rows per chunk (bounds the chunk x vocab logits buffer)
[[noreturn]] void fail(const std::string& m) { throw std::invalid_argument("trainer: " + m); }
}  // namespace

static int checked_threads(int n) {
  if (n < 1) fail("threads must be >= 1, got " + std::to_string(n));
  return n;
}

Trainer::Trainer(const ModelConfig& cfg, const ModelWeights& w, int threads, const std::vector<TrainableSpec>& spec,
                 const TrainerOptions& options)
    : cfg_(cfg), pool_(checked_threads(threads)), lay_(build_param_layout(cfg, w, spec, options)), opt_(options) {
  for (const LoraAdapter& a : lay_.adapters) {
    Adapter ad;
    static_cast<LoraAdapter&>(ad) = a;
    loras_.push_back(ad);
  }
  if (opt_.dense_then_mask) {
    int64_t biggest = 0;
    for (const Param& p : lay_.params)
      if (p.mode == ParamMode::Rows || p.mode == ParamMode::Cols) biggest = std::max(biggest, p.stored.rows * p.stored.cols);
    dense_dw_.assign(size_t(biggest), 0.f);
  }
  const size_t n = size_t(lay_.n_trainable);
  allocating("the optimizer state of " + std::to_string(n) + " trainable parameters (master weights, gradients, Adam moments)",
             4.0 * double(n) * sizeof(float), [&] {
    master_.assign(n, 0.f);
    grad_.assign(n, 0.f);
    m_.assign(n, 0.f);
    v_.assign(n, 0.f);
  }, "train fewer parameters (--method neurons or lora) or use a machine with more memory");
  init_master_values(lay_, opt_.seed, master_.data());

  inv_freq_ = rope_inv_freq_f32(cfg_);
  // Gemma's norms multiply by (1 + w): a buffer per model norm for that vector (refreshed every forward).
  onep_.resize(lay_.params.size());
  if (cfg_.norm == NormType::RmsOnePlus) {
    auto give = [&](int i) { if (!lay_.params[size_t(i)].stored.empty()) onep_[size_t(i)].resize(size_t(lay_.params[size_t(i)].stored.rows)); };
    give(1);
    for (int l = 0; l < cfg_.n_layers; ++l)
      for (int r : {kAttnNorm, kFfnNorm, kAttnPostNorm, kFfnPostNorm}) give(pi(l, r));
  }
}

float* Trainer::arena(Arena a) {
  switch (a) {
    case Arena::Master: return master_.data();
    case Arena::Grad: return grad_.data();
    case Arena::AdamM: return m_.data();
    case Arena::AdamV: return v_.data();
  }
  throw std::invalid_argument("trainer: unknown arena");
}

void Trainer::read(Arena a, int64_t offset, int64_t n, float* host) {
  check_arena_range(offset, n, lay_.n_trainable);
  if (n > 0) std::memcpy(host, arena(a) + offset, size_t(n) * 4);
}

void Trainer::write(Arena a, int64_t offset, int64_t n, const float* host) {
  check_arena_range(offset, n, lay_.n_trainable);
  if (n > 0) std::memcpy(arena(a) + offset, host, size_t(n) * 4);  // the forward reads master_ directly
}

void Trainer::read_weight(int param, float* host) {
  if (param < 0 || param >= int(lay_.params.size())) fail("read_weight: parameter " + std::to_string(param) + " out of range");
  const Param& p = lay_.params[size_t(param)];
  if (p.stored.empty()) fail("read_weight: " + p.role + " has no checkpoint tensor");
  const int64_t R = p.stored.rows, C = p.stored.cols;
  const float* m = master_.data() + p.offset;
  switch (p.mode) {
    case ParamMode::Dense:
      std::memcpy(host, m, size_t(R * C) * 4);
      return;
    case ParamMode::Rows:
      convert_to_f32(p.stored.data, p.stored.dtype, 0, R * C, host);
      for (size_t k = 0; k < p.index.size(); ++k) std::memcpy(host + int64_t(p.index[k]) * C, m + int64_t(k) * C, size_t(C) * 4);
      return;
    case ParamMode::Cols: {
      convert_to_f32(p.stored.data, p.stored.dtype, 0, R * C, host);
      const int64_t n = int64_t(p.index.size());
      for (int64_t r = 0; r < R; ++r)
        for (int64_t k = 0; k < n; ++k) host[r * C + p.index[size_t(k)]] = m[r * n + k];
      return;
    }
    default:
      convert_to_f32(p.stored.data, p.stored.dtype, 0, R * C, host);
  }
}

TrainingMemory Trainer::memory() const {
  TrainingMemory m;
  const int64_t bytes = lay_.n_trainable * 4;
  m.master = bytes;
  m.grad = bytes;
  m.adam = 2 * bytes;
  m.activations = int64_t(acts_.size()) * 4;
  m.scratch = int64_t(work_.size() + dense_dw_.size()) * 4;
  return m;
}

std::string Trainer::describe() const {
  // (the layout holds every tensor, frozen ones too: the count of those that train is what tells the methods apart)
  const auto trained = std::count_if(lay_.params.begin(), lay_.params.end(), [](const Param& p) { return p.trainable(); });
  return "cpu trainer, float32, " + std::to_string(pool_.size()) + " threads, " + std::to_string(lay_.n_trainable) +
         " trainable values in " + std::to_string(trained) + " of " + std::to_string(lay_.params.size()) + " parameter tensors";
}

const float* Trainer::norm_w(int param) const {
  const std::vector<float>& o = onep_[size_t(param)];
  return o.empty() ? vec_of(lay_.params[size_t(param)]) : o.data();
}

void Trainer::refresh_norms() {
  for (size_t i = 0; i < onep_.size(); ++i) {
    std::vector<float>& o = onep_[i];
    if (o.empty()) continue;
    const float* w = vec_of(lay_.params[i]);
    for (size_t k = 0; k < o.size(); ++k) o[k] = 1.f + w[k];
  }
}

void Trainer::norm_forward(int param, int64_t T, const float* x, float* y, float* mean, float* rstd) {
  if (cfg_.norm == NormType::Layer)
    layernorm_forward(pool_, T, cfg_.hidden, x, norm_w(param), cfg_.rms_eps, y, mean, rstd);
  else
    rmsnorm_forward(pool_, T, cfg_.hidden, x, norm_w(param), cfg_.rms_eps, y, rstd);
}

// d(1 + w) = dw: the gradient goes to the parameter itself.
void Trainer::norm_backward(int param, int64_t T, const float* x, const float* mean, const float* rstd,
                            const float* dy, float* dx, bool accumulate) {
  Param& p = lay_.params[size_t(param)];
  float* dw = p.trainable() ? grad_.data() + p.offset : nullptr;
  if (cfg_.norm == NormType::Layer)
    layernorm_backward(pool_, T, cfg_.hidden, x, norm_w(param), mean, rstd, dy, dx, accumulate, dw);
  else
    rmsnorm_backward(pool_, T, cfg_.hidden, x, norm_w(param), rstd, dy, dx, accumulate, dw);
}

AttnShape Trainer::attn_shape(int layer) const {
  AttnShape a{cfg_.n_heads, cfg_.n_kv_heads, cfg_.head_dim};
  a.scale = cfg_.attn_scale();
  a.softcap = cfg_.attn_softcap;
  a.window = cfg_.window_of(layer);
  return a;
}

WeightRef Trainer::master_ref(const Param& p) const {
  WeightRef r;
  r.data = master_.data() + p.offset;
  r.dtype = DType::F32;
  r.rows = p.mrows;
  r.cols = p.mcols;
  return r;
}

// Activation arena for T tokens (every layer's saved tensors) and the backward work buffers.
void Trainer::ensure(int64_t T, int32_t max_len) {
  const int half = cfg_.head_dim / 2;
  if (rope_positions_ < max_len) {
    cos_.resize(size_t(int64_t(max_len) * half));
    sin_.resize(size_t(int64_t(max_len) * half));
    rope_tables(inv_freq_.data(), half, 0, max_len, cos_.data(), sin_.data());
    if (cfg_.rope_attention_factor != 1.f)  // yarn, as the inference forward
      for (size_t i = 0; i < cos_.size(); ++i) {
        cos_[i] *= cfg_.rope_attention_factor;
        sin_[i] *= cfg_.rope_attention_factor;
      }
    rope_positions_ = max_len;
  }
  if (T <= cap_T_ && max_len <= cap_len_) return;
  cap_T_ = std::max(T, cap_T_);
  cap_len_ = std::max(max_len, cap_len_);
  T = cap_T_;
  const int64_t H = cfg_.hidden, I = cfg_.intermediate, V = cfg_.vocab, nh = cfg_.n_heads;
  const int64_t qd = nh * cfg_.head_dim, kvd = int64_t(cfg_.n_kv_heads) * cfg_.head_dim;
  const bool ln = cfg_.norm == NormType::Layer, qkn = cfg_.qk_norm, post = cfg_.post_norms;
  const int64_t nkv = cfg_.n_kv_heads;
  const int64_t per_layer = T * (4 * H + 2 + 2 * qd + 2 * kvd + nh + 3 * I) + (ln ? 2 * T : 0) +
                            (qkn ? T * (qd + kvd + nh + nkv) : 0) + (post ? T * (2 * H + 2) : 0);
  const int64_t nthreads = pool_.size();
  int64_t lora_acts = 0, max_r = 0;
  bool any_dropout = false;
  for (const Adapter& ad : loras_) {
    lora_acts += T * ad.r;
    max_r = std::max<int64_t>(max_r, ad.r);
    any_dropout = any_dropout || ad.dropout > 0;
  }
  const int64_t n_acts = int64_t(cfg_.n_layers) * per_layer + T * (2 * H + 1) + (ln ? T : 0) + lora_acts;
  allocating("the trainer's activations for " + std::to_string(T) + " tokens", double(n_acts) * sizeof(float),
             [&] { acts_.assign(size_t(n_acts), 0.f); }, "use fewer tokens per micro-batch (a smaller --batch or --chunk)");
  la_.resize(size_t(cfg_.n_layers));
  float* p = acts_.data();
  auto take = [&](int64_t n) { float* r = p; p += n; return r; };
  for (LayerActs& a : la_) {
    a.hin = take(T * H); a.r1 = take(T); a.x1 = take(T * H);
    a.q = take(T * qd); a.k = take(T * kvd); a.v = take(T * kvd); a.lse = take(T * nh); a.att = take(T * qd);
    a.hmid = take(T * H); a.r2 = take(T); a.x2 = take(T * H);
    a.g = take(T * I); a.u = take(T * I); a.a = take(T * I);
    a.m1 = ln ? take(T) : nullptr; a.m2 = ln ? take(T) : nullptr;
    a.qpre = qkn ? take(T * qd) : nullptr; a.kpre = qkn ? take(T * kvd) : nullptr;
    a.rq = qkn ? take(T * nh) : nullptr; a.rk = qkn ? take(T * nkv) : nullptr;
    a.o = post ? take(T * H) : nullptr; a.ro = post ? take(T) : nullptr;
    a.d = post ? take(T * H) : nullptr; a.rd = post ? take(T) : nullptr;
  }
  hfin_ = take(T * H); rf_ = take(T); xf_ = take(T * H);
  mf_ = ln ? take(T) : nullptr;
  for (Adapter& ad : loras_) ad.h = take(T * ad.r);

  int64_t max_sel = 0, maxK = std::max({H, qd, I});
  bool any_cols = false;
  for (const Param& q : lay_.params) {
    if (q.mode == ParamMode::Rows || q.mode == ParamMode::Cols || q.mode == ParamMode::LoraB)
      max_sel = std::max<int64_t>(max_sel, int64_t(q.index.size()));
    if (q.mode == ParamMode::Cols) any_cols = true;
  }
  const int64_t M = std::max(T, kLmChunk);
  const int64_t n_work = T * (3 * H + 2 * qd + 2 * kvd + 3 * I) + T * H /*dxf*/ + M * max_sel +
                         (any_cols ? M * maxK : 0) + nthreads * maxK + nthreads * 2 * int64_t(cap_len_) +
                         kLmChunk * V + 2 * kLmChunk * H + (any_dropout ? T * maxK : 0) + T * max_r +
                         nthreads * int64_t(cap_len_) /* third attention scratch row */ +
                         (qkn ? T * std::max(qd, kvd) : 0) + (cfg_.parallel_block ? T * H : 0) +
                         (cfg_.final_softcap > 0 ? kLmChunk * V : 0);
  allocating("the trainer's backward buffers for " + std::to_string(T) + " tokens", double(n_work) * sizeof(float),
             [&] { work_.assign(size_t(n_work), 0.f); }, "use fewer tokens per micro-batch (a smaller --batch or --chunk)");
  p = work_.data();
  dh_ = take(T * H); dx_ = take(T * H); dtmp_ = take(T * H);
  dq_ = take(T * qd); datt_ = take(T * qd); dk_ = take(T * kvd); dv_ = take(T * kvd);
  dg_ = take(T * I); du_ = take(T * I); da_ = take(T * I); dxf_ = take(T * H);
  sel_ = take(M * max_sel); mask_ = any_cols ? take(M * maxK) : nullptr;
  gscratch_ = take(nthreads * maxK); attn_scratch_ = take(nthreads * 3 * int64_t(cap_len_));
  chunk_ = take(kLmChunk * V); xc_ = take(kLmChunk * H); dxc_ = take(kLmChunk * H);
  lora_x_ = any_dropout ? take(T * maxK) : nullptr; lora_dh_ = take(T * max_r);
  dqk_ = qkn ? take(T * std::max(qd, kvd)) : nullptr;
  dx1p_ = cfg_.parallel_block ? take(T * H) : nullptr;
  capped_ = cfg_.final_softcap > 0 ? take(kLmChunk * V) : nullptr;
  row_loss_.resize(size_t(kLmChunk));
}

// Y (+)= X W_eff^T for the effective weight of p (stored, master, or stored with master rows / columns).
void Trainer::linear_forward(const Param& p, int64_t M, const float* X, float* Y, bool accumulate) {
  const int64_t N = p.stored.rows, K = p.stored.cols;
  switch (p.mode) {
    case ParamMode::Frozen:
      gemm_xwt(M, X, K, p.stored, Y, N, Compute::F32, accumulate, pool_);
      if (p.lora >= 0) lora_forward(loras_[size_t(p.lora)], M, X, Y);
      return;
    case ParamMode::Dense:
      gemm_xwt(M, X, K, master_ref(p), Y, N, Compute::F32, accumulate, pool_);
      return;
    case ParamMode::Rows: {  // (never accumulating: checked at construction)
      const int64_t n = p.mrows;
      gemm_xwt(M, X, K, p.stored, Y, N, Compute::F32, false, pool_);
      gemm_xwt(M, X, K, master_ref(p), sel_, n, Compute::F32, false, pool_);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < n; ++k) Y[i * N + p.index[size_t(k)]] = sel_[i * n + k];
      return;
    }
    case ParamMode::Lora: case ParamMode::LoraA: case ParamMode::LoraB:
      return;  // never the mode of a checkpoint weight
    case ParamMode::Cols: {
      const int64_t n = p.mcols;
      for (int64_t i = 0; i < M; ++i) {
        std::memcpy(mask_ + i * K, X + i * K, size_t(K) * sizeof(float));
        for (int64_t k = 0; k < n; ++k) {
          sel_[i * n + k] = X[i * K + p.index[size_t(k)]];
          mask_[i * K + p.index[size_t(k)]] = 0.f;
        }
      }
      gemm_xwt(M, mask_, K, p.stored, Y, N, Compute::F32, accumulate, pool_);
      gemm_xwt(M, sel_, n, master_ref(p), Y, N, Compute::F32, true, pool_);
      return;
    }
  }
}

// dX = dY W_eff (when dX is not null; overwritten) and, for a trainable p, grad += dY^T X on its slice.
// dY may be modified (Rows zeroes the selected columns) unless p is Frozen, Dense or Cols.
void Trainer::linear_backward(const Param& p, int64_t M, const float* X, float* dY, float* dX) {
  const int64_t N = p.stored.rows, K = p.stored.cols;
  float* gW = grad_.data() + p.offset;
  switch (p.mode) {
    case ParamMode::Frozen:
      if (dX) gemm_dx(M, dY, N, p.stored, dX, K, false, gscratch_, pool_);
      if (p.lora >= 0) lora_backward(loras_[size_t(p.lora)], M, X, dY, dX);
      return;
    case ParamMode::Dense:
      gemm_dw(M, N, K, dY, N, X, K, gW, K, pool_);
      if (dX) gemm_dx(M, dY, N, master_ref(p), dX, K, false, gscratch_, pool_);
      return;
    case ParamMode::Rows: {
      const int64_t n = p.mrows;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < n; ++k) sel_[i * n + k] = dY[i * N + p.index[size_t(k)]];
      if (opt_.dense_then_mask) {  // full dW, then keep the selected rows
        std::fill(dense_dw_.begin(), dense_dw_.begin() + N * K, 0.f);
        gemm_dw(M, N, K, dY, N, X, K, dense_dw_.data(), K, pool_);
        for (int64_t k = 0; k < n; ++k) add_inplace(gW + k * K, dense_dw_.data() + int64_t(p.index[size_t(k)]) * K, K);
      } else {
        gemm_dw(M, n, K, sel_, n, X, K, gW, K, pool_);
      }
      if (!dX) return;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < n; ++k) dY[i * N + p.index[size_t(k)]] = 0.f;
      gemm_dx(M, dY, N, p.stored, dX, K, false, gscratch_, pool_);
      gemm_dx(M, sel_, n, master_ref(p), dX, K, true, gscratch_, pool_);
      return;
    }
    case ParamMode::Cols: {
      const int64_t n = p.mcols;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < n; ++k) sel_[i * n + k] = X[i * K + p.index[size_t(k)]];
      if (opt_.dense_then_mask) {  // full dW, then keep the selected columns
        std::fill(dense_dw_.begin(), dense_dw_.begin() + N * K, 0.f);
        gemm_dw(M, N, K, dY, N, X, K, dense_dw_.data(), K, pool_);
        for (int64_t r = 0; r < N; ++r)
          for (int64_t k = 0; k < n; ++k) gW[r * n + k] += dense_dw_[size_t(r * K + p.index[size_t(k)])];
      } else {
        gemm_dw(M, N, n, dY, N, sel_, n, gW, n, pool_);
      }
      if (!dX) return;
      gemm_dx(M, dY, N, p.stored, dX, K, false, gscratch_, pool_);
      gemm_dx(M, dY, N, master_ref(p), sel_, n, false, gscratch_, pool_);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < n; ++k) dX[i * K + p.index[size_t(k)]] = sel_[i * n + k];
      return;
    }
    case ParamMode::Lora: case ParamMode::LoraA: case ParamMode::LoraB:
      return;
  }
}

// grad(bias) += column sums of dY.
void Trainer::bias_backward(const Param& p, int64_t M, const float* dY) {
  if (!p.trainable()) return;
  const int64_t N = p.stored.rows;
  float* g = grad_.data() + p.offset;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t n = 0; n < N; ++n) g[n] += dY[i * N + n];
}

// Validates a packed batch (std::invalid_argument, nothing touched) and returns its longest sequence.
int32_t Trainer::check_batch(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens) {
  return check_training_batch(cfg_, tokens, seq_lens, n_seqs, n_tokens);
}

// Embedding, every layer and the final norm: fills the activation arena up to xf_ (the final-normed states).
// Family variants as the inference forward (model/attention.cpp, ffn.cpp): the norm type, Gemma's embedding scale
// and post-norms, Qwen3's q/k norms, Cohere's interleaved RoPE and parallel block (the FFN reads x1; x2 is unused),
// Gemma 2's attention scaling, soft-capping and sliding windows, gelu_tanh.
void Trainer::forward_layers(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t T, int32_t max_len) {
  const int64_t H = cfg_.hidden, I = cfg_.intermediate;
  const int nh = cfg_.n_heads, nkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd;
  ensure(T, max_len);
  refresh_norms();
  seqs_.clear();
  pos_.resize(size_t(T));
  int64_t row = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    seqs_.push_back({row, seq_lens[s]});
    for (int32_t i = 0; i < seq_lens[s]; ++i) pos_[size_t(row + i)] = i;
    row += seq_lens[s];
  }
  const float eps = cfg_.rms_eps;
  const int L = cfg_.n_layers;
  const bool gelu = cfg_.act == Activation::GeluTanh;

  float* h0 = L > 0 ? la_[0].hin : hfin_;
  if (embed().trainable()) {
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(h0 + t * H, master_.data() + embed().offset + int64_t(tokens[t]) * H, size_t(H) * 4);
  } else {
    embed_rows(embed().stored, tokens, T, h0, H);
  }
  if (cfg_.embed_scale != 1.f)
    for (int64_t i = 0; i < T * H; ++i) h0[i] *= cfg_.embed_scale;
  for (int l = 0; l < L; ++l) {
    LayerActs& a = la_[size_t(l)];
    float* hout = l + 1 < L ? la_[size_t(l + 1)].hin : hfin_;
    norm_forward(pi(l, kAttnNorm), T, a.hin, a.x1, a.m1, a.r1);
    linear_forward(P(l, kWq), T, a.x1, a.q, false);
    linear_forward(P(l, kWk), T, a.x1, a.k, false);
    linear_forward(P(l, kWv), T, a.x1, a.v, false);
    if (cfg_.qkv_bias) {
      const float *bq = vec_of(P(l, kBq)), *bk = vec_of(P(l, kBk)), *bv = vec_of(P(l, kBv));
      for (int64_t t = 0; t < T; ++t) {
        add_inplace(a.q + t * qd, bq, qd);
        add_inplace(a.k + t * kvd, bk, kvd);
        add_inplace(a.v + t * kvd, bv, kvd);
      }
    }
    if (cfg_.qk_norm) {  // per-head RMSNorm: rows of head_dim
      std::memcpy(a.qpre, a.q, size_t(T * qd) * 4);
      std::memcpy(a.kpre, a.k, size_t(T * kvd) * 4);
      rmsnorm_forward(pool_, T * nh, hd, a.qpre, vec_of(P(l, kQNorm)), eps, a.q, a.rq);
      rmsnorm_forward(pool_, T * nkv, hd, a.kpre, vec_of(P(l, kKNorm)), eps, a.k, a.rk);
    }
    rope_forward(pool_, T, a.q, nh, hd, pos_.data(), cos_.data(), sin_.data(), cfg_.rope_interleaved);
    rope_forward(pool_, T, a.k, nkv, hd, pos_.data(), cos_.data(), sin_.data(), cfg_.rope_interleaved);
    attention_forward(pool_, seqs_, attn_shape(l), a.q, a.k, a.v, a.att, a.lse, attn_scratch_);
    std::memcpy(a.hmid, a.hin, size_t(T * H) * 4);
    if (cfg_.post_norms) {
      linear_forward(P(l, kWo), T, a.att, a.o, false);
      rmsnorm_forward(pool_, T, H, a.o, norm_w(pi(l, kAttnPostNorm)), eps, dx_, a.ro);  // dx_: free scratch here
      add_inplace(a.hmid, dx_, T * H);
    } else {
      linear_forward(P(l, kWo), T, a.att, a.hmid, true);
    }
    const float* xf = a.x1;  // the FFN's input: x1 in a parallel block
    if (!cfg_.parallel_block) {
      norm_forward(pi(l, kFfnNorm), T, a.hmid, a.x2, a.m2, a.r2);
      xf = a.x2;
    }
    linear_forward(P(l, kWGate), T, xf, a.g, false);
    linear_forward(P(l, kWUp), T, xf, a.u, false);
    swiglu_forward(pool_, T * I, a.g, a.u, a.a, gelu);
    std::memcpy(hout, a.hmid, size_t(T * H) * 4);
    if (cfg_.post_norms) {
      linear_forward(P(l, kWDown), T, a.a, a.d, false);
      rmsnorm_forward(pool_, T, H, a.d, norm_w(pi(l, kFfnPostNorm)), eps, dx_, a.rd);
      add_inplace(hout, dx_, T * H);
    } else {
      linear_forward(P(l, kWDown), T, a.a, hout, true);
    }
  }
  norm_forward(1, T, hfin_, xf_, mf_, rf_);
}

// From d(loss)/d(xf_) in dxf_ down through the final norm and every layer down to lay_.lowest (and the embedding).
void Trainer::backward_layers(const int32_t* tokens, int64_t T) {
  const int64_t H = cfg_.hidden, I = cfg_.intermediate;
  const int nh = cfg_.n_heads, nkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd;
  const int L = cfg_.n_layers;
  const bool gelu = cfg_.act == Activation::GeluTanh, par = cfg_.parallel_block;
  norm_backward(1, T, hfin_, mf_, rf_, dxf_, dh_, false);
  if (lay_.lowest >= L) return;  // only the final norm / heads train
  const int stop = std::max(lay_.lowest, 0);
  for (int l = L - 1; l >= stop; --l) {
    LayerActs& a = la_[size_t(l)];
    auto grad_of = [&](Param& p) { return p.trainable() ? grad_.data() + p.offset : nullptr; };
    bool attn_trainable = false;
    for (int r : {kAttnNorm, kWq, kWk, kWv, kWo, kBq, kBk, kBv, kQNorm, kKNorm, kAttnPostNorm})
      attn_trainable = attn_trainable || P(l, r).learns();
    const bool below = l > lay_.lowest || embed().trainable();  // gradient needed below this layer
    const bool need_attn = below || attn_trainable;
    Param& n1 = P(l, kAttnNorm);
    const bool need_dx1 = below || n1.trainable();

    // FFN half: hout = hmid + [post-norm] down(act(gate(x2)) * up(x2)), x2 = norm(hmid) (x1 in a parallel block).
    // dh holds d hout.
    const float* xf = par ? a.x1 : a.x2;
    float* dd = dh_;
    if (cfg_.post_norms) {
      norm_backward(pi(l, kFfnPostNorm), T, a.d, nullptr, a.rd, dh_, dtmp_, false);
      dd = dtmp_;
    }
    linear_backward(P(l, kWDown), T, a.a, dd, da_);
    swiglu_backward(pool_, T * I, a.g, a.u, da_, dg_, du_, gelu);
    Param& n2 = P(l, kFfnNorm);
    const bool need_dx2 = par ? need_dx1 : (need_attn || n2.trainable());
    linear_backward(P(l, kWGate), T, xf, dg_, need_dx2 ? dx_ : nullptr);
    linear_backward(P(l, kWUp), T, xf, du_, need_dx2 ? dtmp_ : nullptr);
    if (need_dx2) {
      add_inplace(dx_, dtmp_, T * H);
      if (par)
        std::memcpy(dx1p_, dx_, size_t(T * H) * 4);  // joins d(x1) in the attention half
      else
        norm_backward(pi(l, kFfnNorm), T, a.hmid, a.m2, a.r2, dx_, dh_, true);
    }
    if (!need_attn) break;

    // Attention half: hmid = hin + [post-norm] wo(attn(rope(qk-norm(q)), rope(qk-norm(k)), v)), q/k/v = proj(x1)
    // (+bias), x1 = norm(hin). dh holds d hmid.
    float* dob = dh_;
    if (cfg_.post_norms) {
      norm_backward(pi(l, kAttnPostNorm), T, a.o, nullptr, a.ro, dh_, dtmp_, false);
      dob = dtmp_;
    }
    linear_backward(P(l, kWo), T, a.att, dob, datt_);
    attention_backward(pool_, seqs_, attn_shape(l), a.q, a.k, a.v, a.lse, datt_, dq_, dk_, dv_, attn_scratch_);
    rope_backward(pool_, T, dq_, nh, hd, pos_.data(), cos_.data(), sin_.data(), cfg_.rope_interleaved);
    rope_backward(pool_, T, dk_, nkv, hd, pos_.data(), cos_.data(), sin_.data(), cfg_.rope_interleaved);
    if (cfg_.qk_norm) {
      Param& qn = P(l, kQNorm);
      Param& kn = P(l, kKNorm);
      rmsnorm_backward(pool_, T * nh, hd, a.qpre, vec_of(qn), a.rq, dq_, dqk_, false, grad_of(qn));
      std::memcpy(dq_, dqk_, size_t(T * qd) * 4);
      rmsnorm_backward(pool_, T * nkv, hd, a.kpre, vec_of(kn), a.rk, dk_, dqk_, false, grad_of(kn));
      std::memcpy(dk_, dqk_, size_t(T * kvd) * 4);
    }
    if (cfg_.qkv_bias) {
      bias_backward(P(l, kBq), T, dq_);
      bias_backward(P(l, kBk), T, dk_);
      bias_backward(P(l, kBv), T, dv_);
    }
    linear_backward(P(l, kWq), T, a.x1, dq_, need_dx1 ? dx_ : nullptr);
    if (need_dx1) {
      linear_backward(P(l, kWk), T, a.x1, dk_, dtmp_);
      add_inplace(dx_, dtmp_, T * H);
      linear_backward(P(l, kWv), T, a.x1, dv_, dtmp_);
      add_inplace(dx_, dtmp_, T * H);
      if (par) add_inplace(dx_, dx1p_, T * H);
      norm_backward(pi(l, kAttnNorm), T, a.hin, a.m1, a.r1, dx_, dh_, true);
    } else {
      linear_backward(P(l, kWk), T, a.x1, dk_, nullptr);
      linear_backward(P(l, kWv), T, a.x1, dv_, nullptr);
    }
  }
  if (embed().trainable()) embedding_backward(T, H, tokens, dh_, grad_.data() + embed().offset, cfg_.embed_scale);
}

BatchLoss Trainer::forward_backward(const int32_t* tokens, const int32_t* targets, const int32_t* seq_lens,
                                    int32_t n_seqs, int64_t n_tokens, double denominator, bool backward,
                                    int64_t dropout_step, int64_t dropout_micro) {
  // ---- validation (nothing touched before it passes)
  if (!targets) fail("tokens, targets and seq_lens are required");
  const int32_t max_len = check_batch(tokens, seq_lens, n_seqs, n_tokens);
  const int64_t count = count_training_targets(cfg_, targets, n_tokens);
  if (!(denominator > 0)) denominator = double(count);
  BatchLoss out;
  out.count = count;
  if (count == 0) return out;

  const int64_t T = n_tokens, H = cfg_.hidden, V = cfg_.vocab;
  set_dropout(backward, dropout_step, dropout_micro);
  forward_layers(tokens, seq_lens, n_seqs, T, max_len);

  // ---- LM head + cross-entropy, chunk by chunk over the rows that have a target; with `backward`, the head's
  // backward runs on each chunk right away (dlogits never exist for more than kLmChunk rows).
  const bool bw = backward && lay_.any_trainable;
  if (bw) std::memset(dxf_, 0, size_t(T * H) * 4);
  lm_rows_.clear();
  lm_targets_.clear();
  for (int64_t t = 0; t < T; ++t)
    if (targets[t] >= 0) {
      lm_rows_.push_back(int32_t(t));
      lm_targets_.push_back(targets[t]);
    }
  const float scale = float(1.0 / denominator);
  Param& hp = head();
  for (int64_t i0 = 0; i0 < count; i0 += kLmChunk) {
    const int64_t m = std::min(kLmChunk, count - i0);
    for (int64_t i = 0; i < m; ++i) std::memcpy(xc_ + i * H, xf_ + int64_t(lm_rows_[size_t(i0 + i)]) * H, size_t(H) * 4);
    linear_forward(hp, m, xc_, chunk_, false);
    // Cohere's logit_scale and Gemma 2's final soft-capping; their derivatives are applied to dlogits below.
    const float ls = cfg_.logit_scale, cap = cfg_.final_softcap;
    if (ls != 1.f || cap > 0)
      for (int64_t i = 0; i < m * V; ++i) {
        float x = chunk_[i] * ls;
        if (cap > 0) x = capped_[i] = math::softcap(x, cap);
        chunk_[i] = x;
      }
    out.sum += crossentropy_forward_backward(pool_, m, V, chunk_, lm_targets_.data() + i0, scale, row_loss_.data());
    if (!bw) continue;
    if (ls != 1.f || cap > 0)
      for (int64_t i = 0; i < m * V; ++i)
        chunk_[i] *= ls * (cap > 0 ? math::softcap_grad_from_output(capped_[i], cap) : 1.f);
    linear_backward(hp, m, xc_, chunk_, dxc_);
    for (int64_t i = 0; i < m; ++i) std::memcpy(dxf_ + int64_t(lm_rows_[size_t(i0 + i)]) * H, dxc_ + i * H, size_t(H) * 4);
  }
  if (!bw) return out;
  backward_layers(tokens, T);
  ++micro_;
  return out;
}

void Trainer::zero_grad() {
  std::fill(grad_.begin(), grad_.end(), 0.f);
  micro_ = 0;
}

void Trainer::reset_optimizer() {
  std::fill(m_.begin(), m_.end(), 0.f);
  std::fill(v_.begin(), v_.end(), 0.f);
  t_ = 0;
}

double Trainer::grad_norm() {
  double s = 0;
  for (float g : grad_) s += double(g) * g;
  return std::sqrt(s);
}

double Trainer::step(const AdamWConfig& c) {
  check_adamw_config(c);
  const double norm = grad_norm();
  const AdamWStep s = adamw_step_scalars(c, norm, t_ + 1);
  ++t_;
  const int64_t n = int64_t(master_.size()), blk = 1 << 14;
  pool_.parallel_for((n + blk - 1) / blk, [&](int64_t b, int) {
    for (int64_t i = b * blk, e = std::min(n, i + blk); i < e; ++i) {
      const float g = grad_[size_t(i)] * s.clip_scale;  // (the CUDA trainer's adamw_step: the same function)
      math::adamw_update(g, c.beta1, c.beta2, c.eps, s.step_size, s.bc2_sqrt, s.decay, &master_[size_t(i)],
                         &m_[size_t(i)], &v_[size_t(i)]);
    }
  });
  return norm;
}

}  // namespace train
}  // namespace ln
