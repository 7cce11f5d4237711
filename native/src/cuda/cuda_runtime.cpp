// The CUDA runtime (runtime/cuda_runtime.h): the model's weights in one device arena, activations in grow-only
// device buffers, a device KV cache, cuBLASLt GEMMs and the kernels of this folder, all on one stream.
//
// The layer loop follows model/attention.cpp and model/ffn.cpp step by step, with the CPU's bf16 rounding points
// in the bf16 mode (GEMM inputs rounded to bf16; q, k, v rounded after projection + bias and q, k again after
// RoPE; the residual stream, norms, softmax and the FFN activations float32), so that the GPU and the CPU differ
// only by rounding (summation order, FMA contraction, P rounded to bf16 in the tensor-core attention).
// Differences from the CPU's layout that are pure optimisations: q/k/v are one GEMM over the concatenated
// weights [Wq; Wk; Wv], gate/up one GEMM over [Wgate; Wup].
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/oom.h"
#include "cuda/cublaslt.h"
#include "cuda/device_buffer.h"
#include "cuda/cuda_model.h"
#include "cuda/cuda_support.h"
#include "cuda/recording.h"
#include "cuda/runtime_kernels.h"
#include "cuda/site_kernels.h"
#include "cuda/train_kernels.h"
#include "model/intervention.h"
#include "model/stats.h"
#include "runtime/cuda_archs.h"
#include "runtime/cuda_runtime.h"
#include "runtime/request.h"
#include "train/param_layout.h"

namespace ln {

static_assert(sizeof(Edit) == sizeof(cuda::DevEdit), "DevEdit mirrors ln::Edit");
static_assert(offsetof(Edit, neuron) == offsetof(cuda::DevEdit, neuron) && offsetof(Edit, op) == offsetof(cuda::DevEdit, op) &&
                  offsetof(Edit, when) == offsetof(cuda::DevEdit, when) &&
                  offsetof(Edit, rule) == offsetof(cuda::DevEdit, rule) &&
                  offsetof(Edit, value) == offsetof(cuda::DevEdit, value),
              "DevEdit mirrors ln::Edit");

namespace cuda_model {

CudaRuntime::CudaRuntime(const ModelConfig& c, const ModelWeights& w, int device, Compute compute)
    : cfg_(c), compute_(compute), bf16_(compute == Compute::BF16), wdt_(bf16_ ? DType::BF16 : DType::F32),
      device_(device) {
  cuda::set_device(device_);
  info_ = cuda::device_info(device_);
  stream_ = cuda::stream_create();
  try {
    gemm_ = std::make_unique<cuda::Gemm>();
    upload(w);
  } catch (...) {
    gemm_.reset();
    cuda::stream_destroy(stream_);
    throw;
  }
  char gb[32];
  std::snprintf(gb, sizeof gb, "%.0f GB", double(info_.total_bytes) / 1e9);
  describe_ = "cuda:" + std::to_string(device_) + " " + info_.name + " (sm_" + std::to_string(info_.major) +
              std::to_string(info_.minor) + ", " + gb + "), " + (bf16_ ? "bf16" : "f32") + ", cuBLASLt " +
              gemm_->library().version_string();
}

CudaRuntime::~CudaRuntime() {
  try {
    cuda::set_device(device_);
    cuda::synchronize(stream_);
  } catch (...) {
  }
  gemm_.reset();
  cuda::stream_destroy(stream_);
}

void CudaRuntime::put(char* dst, const WeightRef& src, DType target) {
  const int64_t n = src.rows * src.cols;
  const size_t src_elem = dtype_size(src.dtype);
  if (src.dtype == target) {
    cuda::copy_to_device(dst, src.data, size_t(n) * src_elem, stream_);
    return;
  }
  // Converted on the device, through a staging buffer of raw chunks (the host pointer may be misaligned).
  constexpr int64_t kChunk = int64_t(8) << 20;  // elements
  DeviceBuffer* staging = &staging_;
  staging->ensure(size_t(std::min(n, kChunk)) * src_elem);
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    cuda::copy_to_device(staging->get(), static_cast<const char*>(src.data) + size_t(i) * src_elem, size_t(m) * src_elem,
                         stream_);
    if (target == DType::BF16)
      cuda::convert_to_bf16(staging->get(), src.dtype, m, reinterpret_cast<uint16_t*>(dst) + i, stream_);
    else
      cuda::convert_to_f32(staging->get(), src.dtype, m, reinterpret_cast<float*>(dst) + i, stream_);
    cuda::synchronize(stream_);  // the staging chunk is reused
  }
}

void CudaRuntime::upload(const ModelWeights& w) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden, I = c.intermediate, qd = int64_t(c.n_heads) * c.head_dim,
                kvd = int64_t(c.n_kv_heads) * c.head_dim, QKV = qd + 2 * kvd;
  const size_t we = dtype_size(wdt_);
  const WeightRef& head_src = (c.tie_embeddings && w.lm_head.empty()) ? w.embed : w.lm_head;
  // The embedding stays in its stored dtype (a lookup, not a product: the CPU reads it exactly); the LM head is a
  // GEMM operand and shares it only when the stored dtype is already the compute dtype.
  const bool head_shares_embed = head_src.data == w.embed.data && w.embed.dtype == wdt_;

  // Arena layout (every tensor 256-byte aligned).
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t off = at;
    at = align_up(at + bytes, 256);
    return off;
  };
  const size_t off_embed = take(size_t(c.vocab) * size_t(H) * dtype_size(w.embed.dtype));
  const size_t off_head = head_shares_embed ? off_embed : take(size_t(c.vocab) * size_t(H) * we);
  const size_t off_fnorm = take(size_t(H) * 4);
  const size_t off_inv = 0;  // inv_freq lives in its own small buffer
  (void)off_inv;
  struct LayerOffsets {
    size_t qkv, o, gu, down, an, fn, b, qn, kn, apn, fpn;
  };
  std::vector<LayerOffsets> lo(size_t(c.n_layers));
  const size_t none = SIZE_MAX;  // a tensor the family does not have
  for (auto& L : lo) {
    L.qkv = take(size_t(QKV * H) * we);
    L.o = take(size_t(H * qd) * we);
    L.gu = take(size_t(2 * I * H) * we);
    L.down = take(size_t(H * I) * we);
    L.an = take(size_t(H) * 4);
    L.fn = c.parallel_block ? none : take(size_t(H) * 4);
    L.b = c.qkv_bias ? take(size_t(QKV) * 4) : none;
    L.qn = c.qk_norm ? take(size_t(c.head_dim) * 4) : none;
    L.kn = c.qk_norm ? take(size_t(c.head_dim) * 4) : none;
    L.apn = c.post_norms ? take(size_t(H) * 4) : none;
    L.fpn = c.post_norms ? take(size_t(H) * 4) : none;
  }
  allocating("the model's weights on cuda:" + std::to_string(device_), double(at), [&] { arena_.ensure(at); },
             "a GPU with more memory, or --device cpu");
  char* base = arena_.as<char>();
  put(base + off_embed, w.embed, w.embed.dtype);
  if (!head_shares_embed) put(base + off_head, head_src, wdt_);
  // Norm weights as the norm multiplies them (norm_weight_f32: 1 + w for Gemma's (1 + w) RMSNorm), as the CPU
  // engine holds them. Built on the host; the vectors live until the synchronize at the end, after their copies.
  std::vector<std::vector<float>> norm_host;
  auto put_norm = [&](size_t off, std::vector<float> v) {
    cuda::copy_to_device(base + off, v.data(), v.size() * 4, stream_);
    norm_host.push_back(std::move(v));
    return reinterpret_cast<const float*>(base + off);
  };
  final_norm_ = put_norm(off_fnorm, norm_weight_f32(c, w.final_norm));
  final_norm_host_ = norm_host.back();  // for LogitsMode::LastHidden, normed on the host as the CPU does
  embed_ = base + off_embed;
  embed_dtype_ = w.embed.dtype;
  lm_head_ = base + off_head;
  layers_.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const LayerOffsets& o = lo[size_t(l)];
    put(base + o.qkv, L.wq, wdt_);
    put(base + o.qkv + size_t(qd * H) * we, L.wk, wdt_);
    put(base + o.qkv + size_t((qd + kvd) * H) * we, L.wv, wdt_);
    put(base + o.o, L.wo, wdt_);
    put(base + o.gu, L.w_gate, wdt_);
    put(base + o.gu + size_t(I * H) * we, L.w_up, wdt_);
    put(base + o.down, L.w_down, wdt_);
    DevLayer& d = layers_[size_t(l)];
    d.wqkv = base + o.qkv;
    d.wo = base + o.o;
    d.wgu = base + o.gu;
    d.wdown = base + o.down;
    d.attn_norm = put_norm(o.an, norm_weight_f32(c, L.attn_norm));
    if (o.fn != none) d.ffn_norm = put_norm(o.fn, norm_weight_f32(c, L.ffn_norm));
    if (o.qn != none) {  // Qwen3's q/k norms are plain RMSNorms
      d.q_norm = put_norm(o.qn, weight_f32(L.q_norm));
      d.k_norm = put_norm(o.kn, weight_f32(L.k_norm));
    }
    if (o.apn != none) {
      d.attn_post_norm = put_norm(o.apn, norm_weight_f32(c, L.attn_post_norm));
      d.ffn_post_norm = put_norm(o.fpn, norm_weight_f32(c, L.ffn_post_norm));
    }
    if (c.qkv_bias) {
      put(base + o.b, L.bq, DType::F32);
      put(base + o.b + size_t(qd) * 4, L.bk, DType::F32);
      put(base + o.b + size_t(qd + kvd) * 4, L.bv, DType::F32);
      d.bqkv = reinterpret_cast<const float*>(base + o.b);
    }
  }
  staging_.release();
  const std::vector<float> inv = rope_inv_freq_f32(c);
  inv_freq_.ensure(inv.size() * 4);
  cuda::copy_to_device(inv_freq_.get(), inv.data(), inv.size() * 4, stream_);
  cuda::synchronize(stream_);
}

MemoryReport CudaRuntime::memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  MemoryReport m;
  m.weights = int64_t(arena_.bytes());
  m.kv_cache = live_cache_->load();
  for (const DeviceBuffer* b : {&h_, &x_, &gin_, &xn_, &qkv_, &qa_, &ka_, &va_, &gu_, &rule_values_, &logits_, &lp_})
    m.activations += int64_t(b->bytes());
  m.scratch = gemm_->workspace_bytes() + rec_.bytes() + int64_t(plan_dev_.bytes() + lm_plan_.bytes() + picks_.bytes() +
                                                                 rope_cos_.bytes() + rope_sin_.bytes());
  cuda::set_device(device_);
  int64_t free_b = 0, total_b = 0;
  cuda::mem_get_info(&free_b, &total_b);
  m.device_used = total_b - free_b;
  m.device_total = total_b;
  return m;
}

// Per-token and per-tile plans, uploaded as one block; activation buffers and RoPE tables sized.
void CudaRuntime::prepare(const ForwardRequest& r, CudaKvCache* cache) {
  const ModelConfig& c = cfg_;
  plan_sequences(r, seqs_, pos_, max_ctx_);
  const int64_t T = r.n_tokens;
  T_ = T;
  cuda::plan_attention(seqs_, cache ? int64_t(cache->capacity()) : -1, kv_row_, key_row0_, n_keys_, tiles_);
  cuda::plan_stats_chunks(seqs_, cuda::kStatsChunkTokens, chunks_);
  new_rows_ = cuda::plan_sequence_rows(seqs_, r.stats ? r.count_mask : nullptr, seq_counted_, seq_row_);
  counted_tokens_ = counted_seqs_ = 0;
  for (int64_t n : seq_counted_) {
    counted_tokens_ += n;
    counted_seqs_ += n > 0;
  }

  // One host block, one copy.
  plan_host_.clear();
  auto add = [&](const void* p, size_t bytes) {
    const size_t off = align_up(plan_host_.size(), 256);
    plan_host_.resize(off + bytes);
    if (bytes) std::memcpy(plan_host_.data() + off, p, bytes);
    return off;
  };
  const size_t o_tok = add(r.tokens, size_t(T) * 4), o_pos = add(pos_.data(), size_t(T) * 4),
               o_kvr = add(kv_row_.data(), size_t(T) * 8), o_kr0 = add(key_row0_.data(), size_t(T) * 8),
               o_nk = add(n_keys_.data(), size_t(T) * 4),
               o_tiles = add(tiles_.data(), tiles_.size() * sizeof(cuda::AttnTile)),
               o_chunks = add(chunks_.data(), chunks_.size() * sizeof(cuda::StatsChunk)),
               o_srow = add(seq_row_.data(), seq_row_.size() * 8),
               o_scnt = add(seq_counted_.data(), seq_counted_.size() * 8);
  const size_t o_mask = (r.stats && r.count_mask) ? add(r.count_mask, size_t(T)) : SIZE_MAX;
  const size_t o_cls = (r.intervention && r.intervene_mask) ? add(r.intervene_mask, size_t(T)) : SIZE_MAX;
  size_t o_edits = SIZE_MAX;
  iv_ = r.intervention;
  if (iv_ && iv_->n_edits() > 0)
    o_edits = add(iv_->begin(0, Site(0)), size_t(iv_->n_edits()) * sizeof(Edit));
  plan_dev_.ensure(plan_host_.size());
  cuda::copy_to_device(plan_dev_.get(), plan_host_.data(), plan_host_.size(), stream_);
  const char* d = plan_dev_.as<char>();
  plan_.tokens = reinterpret_cast<const int32_t*>(d + o_tok);
  plan_.pos = reinterpret_cast<const int32_t*>(d + o_pos);
  plan_.kv_row = reinterpret_cast<const int64_t*>(d + o_kvr);
  plan_.key_row0 = reinterpret_cast<const int64_t*>(d + o_kr0);
  plan_.n_keys = reinterpret_cast<const int32_t*>(d + o_nk);
  plan_.tiles = reinterpret_cast<const cuda::AttnTile*>(d + o_tiles);
  plan_.chunks = reinterpret_cast<const cuda::StatsChunk*>(d + o_chunks);
  plan_.seq_row = reinterpret_cast<const int64_t*>(d + o_srow);
  plan_.seq_counted = reinterpret_cast<const int64_t*>(d + o_scnt);
  plan_.count_mask = o_mask == SIZE_MAX ? nullptr : reinterpret_cast<const uint8_t*>(d + o_mask);
  plan_.cls = o_cls == SIZE_MAX ? nullptr : reinterpret_cast<const uint8_t*>(d + o_cls);
  plan_.edits = o_edits == SIZE_MAX ? nullptr : reinterpret_cast<const cuda::DevEdit*>(d + o_edits);

  // Activations.
  const int64_t H = c.hidden, I = c.intermediate, qd = int64_t(c.n_heads) * c.head_dim,
                kvd = int64_t(c.n_kv_heads) * c.head_dim;
  const size_t we = dtype_size(wdt_);
  const double act_bytes = double(T) * double(8 * H + 4 * (qd + 2 * kvd) + 8 * I) +
                           double(T) * double(std::max({H, qd, I}) + qd + 2 * kvd + (c.parallel_block ? H : 0)) *
                               double(we);
  allocating("the activation buffers for " + std::to_string(T) + " tokens on cuda:" + std::to_string(device_), act_bytes, [&] {
    h_.ensure(size_t(T * H) * 4);
    x_.ensure(size_t(T * H) * 4);
    gin_.ensure(size_t(T * std::max({H, qd, I})) * we);
    if (c.parallel_block) xn_.ensure(size_t(T * H) * we);
    qkv_.ensure(size_t(T * (qd + 2 * kvd)) * 4);
    qa_.ensure(size_t(T * qd) * we);
    ka_.ensure(size_t(T * kvd) * we);
    va_.ensure(size_t(T * kvd) * we);
    gu_.ensure(size_t(T * 2 * I) * 4);
    if (iv_ && iv_->max_rules_per_layer() > 0) rule_values_.ensure(size_t(T * iv_->max_rules_per_layer()) * 4);
  }, "fewer tokens per batch");

  // RoPE rows for every position up to max_ctx, grown geometrically (capped at the model's context), as the CPU.
  const int half = c.head_dim / 2;
  if (rope_positions_ < max_ctx_) {
    const int64_t n = std::min<int64_t>(c.max_positions, std::max<int64_t>(max_ctx_, 2 * rope_positions_));
    DeviceBuffer* tabs[2] = {&rope_cos_, &rope_sin_};
    for (DeviceBuffer* b : tabs) b->release();  // recomputed whole: simpler than keeping the old rows
    rope_cos_.ensure(size_t(n * half) * 4);
    rope_sin_.ensure(size_t(n * half) * 4);
    cuda::rope_tables(inv_freq_.as<float>(), half, 0, n, rope_cos_.as<float>(), rope_sin_.as<float>(), stream_,
                      c.rope_attention_factor);
    rope_positions_ = n;
  }
}

void CudaRuntime::norm(int64_t M, const float* x, const int64_t* rows, const float* w, void* y, bool y_bf16) {
  const int64_t H = cfg_.hidden;
  cuda::norm_rows_ex(M, x, H, rows, w, y, y_bf16, H, H, cfg_.rms_eps, cfg_.norm == NormType::Layer, stream_);
}

bool CudaRuntime::editing(Site site, int l) const { return iv_ && plan_.edits && iv_->any(l, site); }

void CudaRuntime::edit_projection(Site site, int l, float* x, int64_t ld) {
  if (!editing(site, l)) return;
  const Edit* base = iv_->begin(0, Site(0));
  cuda::edit_columns(T_, x, ld, plan_.edits, iv_->begin(l, site) - base, iv_->end(l, site) - base, plan_.cls,
                     stream_);
}

void CudaRuntime::add_to_residual(const float* post_w) {
  const int64_t H = cfg_.hidden;
  float* x = x_.as<float>();
  if (post_w) norm(T_, x, nullptr, post_w, x, false);  // float32, in place, as model/attention.cpp
  cuda::add_rows(T_, H, h_.as<float>(), H, x, H, stream_);
}

void CudaRuntime::layer(int l, CudaKvCache* cache) {
  const ModelConfig& c = cfg_;
  const DevLayer& L = layers_[size_t(l)];
  const int64_t T = T_, H = c.hidden, I = c.intermediate, hd = c.head_dim, qd = int64_t(c.n_heads) * hd,
                kvd = int64_t(c.n_kv_heads) * hd, QKV = qd + 2 * kvd;
  float* h = h_.as<float>();
  float* x = x_.as<float>();
  void* gin = gin_.get();
  float* qkv = qkv_.as<float>();
  float* gu = gu_.as<float>();
  const cuda::StatsBatch& batch = rec_.batch();  // token chunks, count mask, histogram edges

  const LayerSave* save = saves_ && size_t(l) < saves_->size() ? &(*saves_)[size_t(l)] : nullptr;
  const size_t ge = bf16_ ? 2 : 4;  // bytes of a GEMM input
  using P = cuda::PhaseClock;

  // ---- attention
  if (save && save->hin) cuda::copy_device(save->hin, h, size_t(T * H) * 4, stream_);
  // The normed input goes to gin, or with Cohere's parallel block to xn_, where it stays for the FFN (gin holds the
  // attention's output next).
  void* xin = c.parallel_block ? xn_.get() : gin;
  norm(T, h, nullptr, L.attn_norm, xin, bf16_);
  if (save && save->x1) cuda::copy_device(save->x1, xin, size_t(T * H) * ge, stream_);
  phase(P::Norm);
  gemm(T, QKV, H, xin, H, L.wqkv, qkv, QKV, false);
  if (hook_) {
    hook_->after_linear(l, train::kWq, xin, qkv, QKV);
    hook_->after_linear(l, train::kWk, xin, qkv + qd, QKV);
    hook_->after_linear(l, train::kWv, xin, qkv + qd + kvd, QKV);
  }
  phase(P::QkvGemm);
  // Bias and bf16 rounding of q / k / v: a pass of its own when the sites are recorded (they record the values
  // after it, before RoPE), else fused into the RoPE kernel.
  // Qwen3's q/k norms come between that step and RoPE: a pass of their own too.
  // Edits of q / k / v (after the bias and rounding, before the norms and RoPE) come first in that pass.
  const Site proj[3] = {Site::Q, Site::K, Site::V};
  const int64_t proj_off[3] = {0, qd, qd + kvd};
  const bool record_qkv = rec_.recording(Site::Q, l) || rec_.recording(Site::K, l) || rec_.recording(Site::V, l);
  const bool edit_qkv = editing(Site::Q, l) || editing(Site::K, l) || editing(Site::V, l);
  const bool pre_pass = record_qkv || edit_qkv || c.qk_norm;
  if (pre_pass) cuda::bias_round_rows(T, QKV, qkv, QKV, L.bqkv, bf16_, stream_);
  if (edit_qkv)
    for (int i = 0; i < 3; ++i) edit_projection(proj[i], l, qkv + proj_off[i], QKV);
  if (record_qkv) {
    phase(P::Rope);
    const int64_t proj_w[3] = {qd, kvd, kvd};
    for (int i = 0; i < 3; ++i)
      if (rec_.recording(proj[i], l)) {
        cuda::column_stats(proj_w[i], qkv + proj_off[i], QKV, batch, rec_.target(proj[i], l), stream_);
        rec_.reduce(proj[i], l, stream_);
      }
    phase(P::Stats);
  }
  if (save && save->qk_pre) {
    cuda::copy_rows_f32(T, qd, qkv, QKV, save->qk_pre, qd, stream_);
    cuda::copy_rows_f32(T, kvd, qkv + qd, QKV, save->qk_pre + T * qd, kvd, stream_);
  }
  if (c.qk_norm)
    cuda::head_rmsnorm(T, qkv, QKV, c.n_heads, c.n_kv_heads, c.head_dim, L.q_norm, L.k_norm, c.rms_eps, stream_);
  void* kdst = cache ? cache->k(l) : ka_.get();
  void* vdst = cache ? cache->v(l) : va_.get();
  cuda::rope_qkv(T, qkv, QKV, pre_pass ? nullptr : L.bqkv, !pre_pass && bf16_, c.n_heads, c.n_kv_heads, c.head_dim,
                 plan_.pos, rope_cos_.as<float>(), rope_sin_.as<float>(), qa_.get(), qd, kdst, vdst, kvd, plan_.kv_row,
                 bf16_, stream_, c.rope_interleaved);
  phase(P::Rope);
  const bool flash = bf16_ && info_.major >= 8 && cuda::flash_attention_supported(c.head_dim);  // mma.sync: sm_80+
  const bool keep_bf16 = save && tensor_core_attention();  // (LayerSave's "a" dtype)
  const DType adt = bf16_ ? DType::BF16 : DType::F32;
  auto keep = [&](void* dst, const void* src, int64_t n) {  // what attention read or wrote, in the saves' dtype
    if (!dst) return;
    if (keep_bf16) cuda::copy_device(dst, src, size_t(n) * 2, stream_);
    else cuda::convert_to_f32(src, adt, n, static_cast<float*>(dst), stream_);  // exact: bf16 values widen
  };
  if (save) {
    keep(save->q, qa_.get(), T * qd);
    keep(save->k, kdst, T * kvd);
    keep(save->v, vdst, T * kvd);
    // Without the tensor-core kernel: a float32 attention of its own that also gives the lse. With it, its own
    // output and lse (below), as FlashAttention's backward uses them, instead of a second, far slower pass.
    if (save->lse && !flash) save_attention(*save, l);
  }
  // Gemma 2: query_pre_attn_scalar's scale, scores soft-capped, a sliding window on its even layers.
  const float scale = c.attn_scale(), cap = c.attn_softcap;
  const int32_t window = c.window_of(l);
  if (flash) {
    float* lse = save ? save->lse : nullptr;
    cuda::flash_attention_bf16(plan_.tiles, int64_t(tiles_.size()), c.n_heads, c.n_kv_heads, c.head_dim,
                               qa_.as<uint16_t>(), qd, static_cast<const uint16_t*>(kdst),
                               static_cast<const uint16_t*>(vdst), kvd, scale, static_cast<uint16_t*>(gin), qd, lse,
                               stream_, window, cap);
    if (lse) keep(save->att, gin, T * qd);
  } else if (bf16_)
    cuda::attention_causal_bf16(T, c.n_heads, c.n_kv_heads, c.head_dim, qa_.as<uint16_t>(), qd,
                                static_cast<const uint16_t*>(kdst), static_cast<const uint16_t*>(vdst), kvd,
                                plan_.key_row0, plan_.n_keys, scale, static_cast<uint16_t*>(gin), qd, stream_, window,
                                cap);
  else
    cuda::attention_causal(T, c.n_heads, c.n_kv_heads, c.head_dim, qa_.as<float>(), qd,
                           static_cast<const float*>(kdst), static_cast<const float*>(vdst), kvd, plan_.key_row0,
                           plan_.n_keys, scale, static_cast<float*>(gin), qd, stream_, window, cap);
  if (save && save->attg && save->attg != save->att) cuda::copy_device(save->attg, gin, size_t(T * qd) * ge, stream_);
  phase(P::Attention);
  if (!rec_.recording(Site::O, l) && !editing(Site::O, l) && !c.post_norms) {
    gemm(T, H, qd, gin, qd, L.wo, h, H, true);
    if (hook_) hook_->after_linear(l, train::kWo, gin, h, H);
  } else {  // the projection's own output is needed (site o, Gemma 2's post-attention norm): into x first
    gemm(T, H, qd, gin, qd, L.wo, x, H, false);
    if (hook_) hook_->after_linear(l, train::kWo, gin, x, H);  // an adapter's output is part of the projection's
    edit_projection(Site::O, l, x, H);  // (its time counts as the projection's)
    if (rec_.recording(Site::O, l)) {
      phase(P::OGemm);
      cuda::column_stats(H, x, H, batch, rec_.target(Site::O, l), stream_);
      rec_.reduce(Site::O, l, stream_);
      phase(P::Stats);
    }
    if (save && save->o_pre) cuda::copy_device(save->o_pre, x, size_t(T * H) * 4, stream_);
    add_to_residual(L.attn_post_norm);
  }
  phase(P::OGemm);

  // ---- FFN (Cohere's parallel block: on the attention's normed input, kept in xn_)
  if (save && save->hmid) cuda::copy_device(save->hmid, h, size_t(T * H) * 4, stream_);
  const void* fin = c.parallel_block ? xin : gin;
  if (!c.parallel_block) {
    norm(T, h, nullptr, L.ffn_norm, gin, bf16_);
    phase(P::Norm);
  }
  if (save && save->x2) cuda::copy_device(save->x2, fin, size_t(T * H) * ge, stream_);
  gemm(T, 2 * I, H, fin, H, L.wgu, gu, 2 * I, false);
  if (hook_) {
    hook_->after_linear(l, train::kWGate, fin, gu, 2 * I);
    hook_->after_linear(l, train::kWUp, fin, gu + I, 2 * I);
  }
  phase(P::GateUpGemm);
  const bool gelu = c.act == Activation::GeluTanh;
  cuda::LayerEdits edits;
  if (iv_ && plan_.edits) {
    const Edit* base = iv_->begin(0, Site(0));
    const Site order[4] = {Site::Gate, Site::Act, Site::Up, Site::H};
    for (int s = 0; s < 4; ++s) {
      edits.begin[s] = iv_->begin(l, order[s]) - base;
      edits.end[s] = iv_->end(l, order[s]) - base;
    }
    edits.edits = plan_.edits;
    edits.cls = plan_.cls;
    const int32_t n_rules = iv_->n_rules(l), R = iv_->max_rules_per_layer();
    if (n_rules > 0) {
      const RowRule* rules = iv_->layer_rules(l);
      for (int32_t k = 0; k < n_rules; ++k) {
        const int site = rules[k].site == Site::Gate ? 0 : (rules[k].site == Site::Act ? 1 : 2);
        cuda::rule_values(T, I, gu, 2 * I, site, int(rules[k].stat), rules[k].factor, rules[k].percentile,
                          rule_values_.as<float>() + k, R, info_.smem_optin_bytes, stream_, gelu);
      }
      edits.rule_values = rule_values_.as<float>();
      edits.rule_stride = R;
    }
  }
  const Site ffn_sites[4] = {Site::Gate, Site::Act, Site::Up, Site::H};
  cuda::SiteTarget targets[4];
  for (int s = 0; s < 4; ++s)
    if (rec_.recording(ffn_sites[s], l)) targets[s] = rec_.target(ffn_sites[s], l);
  // (the training forward's copy of gate and up is written by the same pass: ffn_fused's gu_save)
  cuda::ffn_fused(T, I, gu, 2 * I, gin, bf16_, I, edits, batch, targets, stream_, gelu, save ? save->gu : nullptr);
  if (save && save->act) cuda::copy_device(save->act, gin, size_t(T * I) * ge, stream_);
  phase(P::Ffn);
  bool reduced = false;
  for (int s = 0; s < 4; ++s)
    if (targets[s].part) {
      rec_.reduce(ffn_sites[s], l, stream_);
      reduced = true;
    }
  if (reduced) phase(P::Stats);
  if (!rec_.recording(Site::Down, l) && !editing(Site::Down, l) && !c.post_norms) {
    gemm(T, H, I, gin, I, L.wdown, h, H, true);
    if (hook_) hook_->after_linear(l, train::kWDown, gin, h, H);
  } else {  // site down, Gemma 2's post-feedforward norm
    gemm(T, H, I, gin, I, L.wdown, x, H, false);
    if (hook_) hook_->after_linear(l, train::kWDown, gin, x, H);
    edit_projection(Site::Down, l, x, H);
    if (rec_.recording(Site::Down, l)) {
      phase(P::DownGemm);
      cuda::column_stats(H, x, H, batch, rec_.target(Site::Down, l), stream_);
      rec_.reduce(Site::Down, l, stream_);
      phase(P::Stats);
    }
    if (save && save->down_pre) cuda::copy_device(save->down_pre, x, size_t(T * H) * 4, stream_);
    add_to_residual(L.ffn_post_norm);
  }
  phase(P::DownGemm);
  // Site `resid`: the residual stream after the layer (model.cpp records it after ffn_forward).
  const bool resid = rec_.recording(Site::Resid, l);
  if (resid) {
    cuda::column_stats(H, h, H, batch, rec_.target(Site::Resid, l), stream_);
    rec_.reduce(Site::Resid, l, stream_);
  }
  if (rec_.layer_done(l, stream_) || resid) phase(P::Stats);  // a step only where something was recorded
}

// Final norm of the rows idx (device) and the LM head, kLmChunkRows rows per GEMM: logits copied to logits_host
// (row-major n x vocab) when given, log p(target) of each row into lp_dev when targets are given.
void CudaRuntime::lm_head(const int64_t* idx_dev, int64_t n, float* logits_host, const int32_t* targets_dev,
                          float* lp_dev, const Pick* pick) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden, V = c.vocab;
  const int64_t C = std::min(kLmChunkRows, n);
  logits_.ensure(size_t(C * V) * 4);
  for (int64_t i0 = 0; i0 < n; i0 += kLmChunkRows) {
    const int64_t m = std::min(kLmChunkRows, n - i0);
    norm(m, h_.as<float>(), idx_dev + i0, final_norm_, gin_.get(), bf16_);
    gemm(m, V, H, gin_.get(), H, lm_head_, logits_.as<float>(), V, false);
    cuda::finish_logits(m, V, logits_.as<float>(), V, c.logit_scale, c.final_softcap, stream_);
    if (targets_dev)
      cuda::log_softmax_targets(m, logits_.as<float>(), V, V, targets_dev + i0, lp_dev + i0, stream_);
    if (pick) {  // in stream order before the next chunk's product overwrites the buffer
      cuda::penalize_logits(m, logits_.as<float>(), V, pick->penalty, pick->ids, pick->offsets + i0, stream_);
      cuda::pick_next_tokens(m, logits_.as<float>(), V, V, pick->out + i0, stream_);
    }
    if (logits_host) {
      cuda::copy_to_host(logits_host + i0 * V, logits_.get(), size_t(m * V) * 4, stream_);
      cuda::synchronize(stream_);  // the chunk buffer is reused
    }
  }
}

void CudaRuntime::forward(const ForwardRequest& req, ForwardResult& out) {
  std::lock_guard<std::mutex> lock(mu_);
  validate_forward_request(cfg_, req);
  CudaKvCache* cache = nullptr;
  if (req.cache) {
    cache = dynamic_cast<CudaKvCache*>(req.cache);
    if (!cache || cache->owner() != this)
      throw std::invalid_argument("forward: the KV cache was not made by this CUDA runtime (use its make_cache)");
  }
  cuda::set_device(device_);
  if (clock_) clock_->begin(stream_);
  prepare(req, cache);
  const int64_t T = T_, H = cfg_.hidden, V = cfg_.vocab;
  cuda::StatsBatch batch;
  batch.chunks = plan_.chunks;
  batch.n_chunks = int32_t(chunks_.size());
  batch.mask = plan_.count_mask;
  rec_.begin(cfg_, req, T, batch, plan_.seq_row, plan_.seq_counted, req.stats ? new_rows_ : 0, out, stream_);

  cuda::embed_rows(embed_, embed_dtype_, V, H, plan_.tokens, T, h_.as<float>(), H, stream_, embed_scale());
  phase(cuda::PhaseClock::Embed);
  const int n_run = req.last_layer < 0 ? cfg_.n_layers : req.last_layer + 1;
  for (int l = 0; l < n_run; ++l) layer(l, cache);
  rec_.end(out, counted_tokens_, counted_seqs_, stream_);  // synchronizes
  if (cache)
    for (const SequencePlan& s : seqs_) cache->set_grown_length(s.slot, s.pos0 + s.len);
  iv_ = nullptr;

  // LM head, as model.cpp: All = every row (returned), Last = the last row of each sequence, targets without All =
  // the rows that have a target, in chunks; None = no final norm, no LM head.
  out.logits.clear();
  out.target_logprobs.clear();
  out.next.clear();
  if (req.logits == LogitsMode::None && !req.targets) return;
  lm_idx_.clear();
  lm_targets_.clear();
  const size_t n_last = size_t(req.n_seqs);
  for (const SequencePlan& s : seqs_) lm_idx_.push_back(s.row0 + s.len - 1);       // [0, n_seqs): Last rows
  for (int64_t t = 0; t < T; ++t) lm_idx_.push_back(t);                           // then every row
  if (req.targets)
    for (int64_t t = 0; t < T; ++t) lm_targets_.push_back(req.targets[t]);
  std::vector<int64_t>& target_rows = target_rows_;  // rows with a target (not All)
  target_rows.clear();
  if (req.targets && req.logits != LogitsMode::All) {
    for (int64_t t = 0; t < T; ++t)
      if (req.targets[t] >= 0) {
        target_rows.push_back(t);
        lm_targets_.push_back(req.targets[t]);
      }
    lm_idx_.insert(lm_idx_.end(), target_rows.begin(), target_rows.end());
  }
  lm_plan_.ensure(lm_idx_.size() * 8 + lm_targets_.size() * 4 + 256);
  cuda::copy_to_device(lm_plan_.get(), lm_idx_.data(), lm_idx_.size() * 8, stream_);
  const int64_t* idx = lm_plan_.as<int64_t>();
  const int32_t* tg = reinterpret_cast<const int32_t*>(lm_plan_.as<char>() + align_up(lm_idx_.size() * 8, 256));
  if (!lm_targets_.empty())
    cuda::copy_to_device(const_cast<int32_t*>(tg), lm_targets_.data(), lm_targets_.size() * 4, stream_);
  if (req.targets) lp_.ensure(size_t(T) * 4 + 4);

  if (req.logits == LogitsMode::All) {
    out.logits.resize(size_t(T * V));
    lm_head(idx + n_last, T, out.logits.data(), req.targets ? tg : nullptr, lp_.as<float>());
  } else if (req.logits == LogitsMode::Last) {
    out.logits.resize(n_last * size_t(V));
    lm_head(idx, int64_t(n_last), out.logits.data(), nullptr, nullptr);
  } else if (req.logits == LogitsMode::Greedy) {
    // The picks of the last rows (n_seqs records back instead of n_seqs x vocab floats); the penalised ids of
    // each sequence, without repeats, go up behind the records.
    plan_penalty_ids(req.n_seqs, req.repetition_penalty, req.penalty_ids, req.penalty_offsets, V, penalty_ids_,
                     penalty_offsets_, penalty_seen_);
    const bool penalise = !penalty_ids_.empty();
    const size_t rec_bytes = align_up(n_last * sizeof(NextToken), 256), off_bytes = align_up((n_last + 1) * 8, 256);
    picks_.ensure(rec_bytes + off_bytes + penalty_ids_.size() * 4 + 4);
    Pick pick;
    pick.out = picks_.as<NextToken>();
    pick.offsets = reinterpret_cast<const int64_t*>(picks_.as<char>() + rec_bytes);
    pick.ids = reinterpret_cast<const int32_t*>(picks_.as<char>() + rec_bytes + off_bytes);
    if (penalise) {
      pick.penalty = req.repetition_penalty;
      cuda::copy_to_device(const_cast<int64_t*>(pick.offsets), penalty_offsets_.data(), (n_last + 1) * 8, stream_);
      cuda::copy_to_device(const_cast<int32_t*>(pick.ids), penalty_ids_.data(), penalty_ids_.size() * 4, stream_);
    }
    lm_head(idx, int64_t(n_last), nullptr, nullptr, nullptr, &pick);
    out.next.resize(n_last);
    cuda::copy_to_host(out.next.data(), pick.out, n_last * sizeof(NextToken), stream_);
    cuda::synchronize(stream_);
  } else if (req.logits == LogitsMode::LastHidden) {
    // The classification head's input (eval --head): each sequence's last residual row, final-normed on the host
    // with the CPU's rmsnorm (n_seqs rows of hidden floats; the head itself is applied by the caller).
    out.logits.resize(n_last * size_t(H));
    last_row_host_.resize(size_t(H));
    for (size_t i = 0; i < n_last; ++i) {
      cuda::copy_to_host(last_row_host_.data(), h_.as<float>() + lm_idx_[i] * H, size_t(H) * 4, stream_);
      cuda::synchronize(stream_);
      norm_rows(cfg_, 1, last_row_host_.data(), H, final_norm_host_.data(), out.logits.data() + int64_t(i) * H, H, H);
    }
  }
  if (req.targets) {
    out.target_logprobs.assign(size_t(T), 0.f);
    if (req.logits == LogitsMode::All) {
      std::vector<float>& lp = lp_host_;
      lp.resize(size_t(T));
      cuda::copy_to_host(lp.data(), lp_.get(), size_t(T) * 4, stream_);
      cuda::synchronize(stream_);
      for (int64_t t = 0; t < T; ++t)
        if (req.targets[t] >= 0) out.target_logprobs[size_t(t)] = lp[size_t(t)];
    } else {
      const int64_t n = int64_t(target_rows.size());
      lm_head(idx + n_last + T, n, nullptr, tg + T, lp_.as<float>());
      std::vector<float>& lp = lp_host_;
      lp.resize(size_t(n));
      cuda::copy_to_host(lp.data(), lp_.get(), size_t(n) * 4, stream_);
      cuda::synchronize(stream_);
      for (int64_t i = 0; i < n; ++i) out.target_logprobs[size_t(target_rows[size_t(i)])] = lp[size_t(i)];
    }
  }
  phase(cuda::PhaseClock::LmHead);
  cuda::synchronize(stream_);
}

void CudaRuntime::save_attention(const LayerSave& s, int l) {
  const ModelConfig& c = cfg_;
  const int64_t qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  cuda::attention_forward_lse(T_, c.n_heads, c.n_kv_heads, c.head_dim, static_cast<const float*>(s.q), qd,
                              static_cast<const float*>(s.k), static_cast<const float*>(s.v), kvd, plan_.key_row0,
                              plan_.n_keys, c.attn_scale(), static_cast<float*>(s.att), qd, s.lse, stream_,
                              c.window_of(l), c.attn_softcap);
}

bool CudaRuntime::tensor_core_attention() const {
  return bf16_ && info_.major >= 8 && cuda::flash_attention_supported(cfg_.head_dim) &&  // mma.sync: sm_80+
         cuda::attention_backward_tc_supported(cfg_.head_dim);
}

void CudaRuntime::recompute_layer(int l, const std::vector<LayerSave>& saves, LinearHook* hook) {
  std::lock_guard<std::mutex> lock(mu_);
  cuda::set_device(device_);
  train_layers(l, l + 1, saves, hook);
}

void CudaRuntime::train_layers(int l0, int l1, const std::vector<LayerSave>& saves, LinearHook* hook) {
  struct Unset {  // the save hook is the training forward's only, even when a layer throws
    CudaRuntime* rt;
    ~Unset() {
      rt->saves_ = nullptr;
      rt->hook_ = nullptr;
    }
  } unset{this};
  saves_ = &saves;
  hook_ = hook;
  for (int l = l0; l < l1; ++l) layer(l, nullptr);
}

void CudaRuntime::forward_train(const ForwardRequest& req, const std::vector<LayerSave>& saves, LinearHook* hook) {
  std::lock_guard<std::mutex> lock(mu_);
  validate_forward_request(cfg_, req);
  if (req.cache || req.stats || req.intervention || req.capture_layer >= 0)
    throw std::invalid_argument("forward_train: no cache, statistics, intervention or capture");
  cuda::set_device(device_);
  prepare(req, nullptr);
  const int64_t T = T_, H = cfg_.hidden, V = cfg_.vocab;
  cuda::StatsBatch batch;
  batch.chunks = plan_.chunks;
  batch.n_chunks = int32_t(chunks_.size());
  batch.mask = nullptr;
  ForwardResult none;
  rec_.begin(cfg_, req, T, batch, plan_.seq_row, plan_.seq_counted, 0, none, stream_);
  cuda::embed_rows(embed_, embed_dtype_, V, H, plan_.tokens, T, h_.as<float>(), H, stream_, embed_scale());
  phase(cuda::PhaseClock::Embed);
  train_layers(0, cfg_.n_layers, saves, hook);
  rec_.end(none, 0, 0, stream_);
}

}  // namespace cuda_model

using cuda_model::CudaRuntime;

// ---- entry points (runtime/cuda_runtime.h) ------------------------------------------------------------------------

bool cuda_built() { return true; }
int cuda_device_count() { return cuda::device_count(); }
const char* cuda_unavailable_reason() { return cuda::unavailable_reason(); }

std::string cuda_device_problem(int device_index) {
  const int n = cuda::device_count();
  if (n == 0) return std::string("no usable CUDA device: ") + cuda::unavailable_reason();
  const std::string name = "cuda:" + std::to_string(device_index);
  if (device_index < 0 || device_index >= n)
    return name + " does not exist (" + std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s") + ")";
#if defined(LN_CUDA_ARCHS)
  try {
    // A device query, no context made: asking about a GPU costs it no memory.
    const cuda::DeviceInfo d = cuda::device_info(device_index);
    const std::string why = cuda_arch_problem(LN_CUDA_ARCHS, d.major, d.minor);
    if (!why.empty()) return name + " (" + d.name + ") has " + why;
  } catch (const std::exception& e) {
    return name + ": " + e.what();
  }
#endif
  return "";
}

void check_cuda_supported(const ModelConfig& config, const ModelWeights& weights, int device_index, Compute compute,
                          const char* what) {
  const std::string bad = validate_weights(config, weights);  // includes validate_config
  if (!bad.empty()) throw std::invalid_argument(bad);
  if (compute != Compute::F32 && compute != Compute::BF16)
    throw std::invalid_argument(std::string(what) + ": unknown compute mode");
  if (config.head_dim > 256 || config.head_dim % 2 != 0)
    throw std::invalid_argument(std::string(what) + ": head_dim must be even and at most 256, got " +
                                std::to_string(config.head_dim));
  const std::string problem = cuda_device_problem(device_index);
  if (problem.empty()) return;
  // An index the machine does not have is the caller's input; no device or one without code, the machine's state.
  const int n = cuda::device_count();
  if (n > 0 && (device_index < 0 || device_index >= n)) throw std::invalid_argument(problem);
  throw std::runtime_error(problem);
}

std::unique_ptr<Runtime> make_cuda_runtime(const ModelConfig& config, const ModelWeights& weights, int device_index,
                                           Compute compute) {
  check_cuda_supported(config, weights, device_index, compute, "CUDA runtime");
  return std::make_unique<CudaRuntime>(config, weights, device_index, compute);
}

}  // namespace ln
