// The CUDA trainer's backward (cuda_trainer.h): weight gradients (dense, or the selected rows / columns only), the
// norms' and the layers' backward down to the lowest trainable layer, and LoRA's backward.
#include "cuda/cuda_trainer.h"

namespace ln {
namespace train {

using cuda::DeviceBuffer;
using cuda_model::LayerSave;

const void* CudaTrainer::to_gemm(const float* dY, int64_t M, int64_t N, int64_t lddy, void* scratch) {
  if (!bf16_) return dY;
  cuda::f32_to_bf16_rows(M, N, dY, lddy, static_cast<uint16_t*>(scratch), N, s_);
  return scratch;
}

const float* CudaTrainer::to_f32(const void* X, int64_t M, int64_t K) {
  if (!bf16_) return static_cast<const float*>(X);
  cuda::convert_to_f32(X, DType::BF16, M * K, conv_, s_);
  return conv_;
}

// dW of Y = X W^T (W [N, K]) with the GEMM dtype's operands (bf16 dY and X in the bf16 mode): dense; rows / cols on
// the selected features only (or, with dense_then_mask, the full dW then its selected rows / columns).
void CudaTrainer::weight_grad(int param, int64_t M, const void* dYg, int64_t lddyg, const void* Xg, int64_t ldx) {
  const Param& p = lay_.params[size_t(param)];
  if (!p.trainable()) return;
  cuda::Gemm& gemm = *rt_->gemm_;
  const int64_t N = p.stored.rows, K = p.stored.cols, n = int64_t(p.index.size());
  float* g = grad_.as<float>() + p.offset;
  if (p.mode == ParamMode::Dense) {
    gemm.run_dw(M, N, K, dYg, lddyg, Xg, ldx, gdt_, g, K, s_);
    return;
  }
  const int32_t* idx = index_of(param);
  if (opt_.dense_then_mask) {  // the reference's way: dense dW, then keep the selected rows / columns
    cuda::memset_async(dense_dw_, 0, size_t(N * K) * 4, s_);
    gemm.run_dw(M, N, K, dYg, lddyg, Xg, ldx, gdt_, dense_dw_, K, s_);
    if (p.mode == ParamMode::Rows) {
      for (int64_t k = 0; k < n; ++k)
        cuda::add_rows(1, K, g + k * K, K, dense_dw_ + int64_t(p.index[size_t(k)]) * K, K, s_);
    } else {
      cuda::gather_cols(N, n, dense_dw_, K, idx, sel2_, n, s_);
      cuda::add_rows(N, n, g, n, sel2_, n, s_);
    }
    return;
  }
  const int64_t lds = sel_ld(n);
  if (p.mode == ParamMode::Rows) {  // dW_sel [n, K] += dY[:, index]^T X
    cuda::gather_cols(M, n, dYg, lddyg, idx, sel_, lds, gdt_, s_);
    gemm.run_dw(M, n, K, sel_, lds, Xg, ldx, gdt_, g, K, s_);
  } else {  // Cols: dW_sel [N, n] += dY^T X[:, index], X's columns gathered by the forward (after_linear; the LM
            // head's here), into a padded [N, lds] first (the master slice's rows of n floats need not be 16-byte
            // aligned)
    const void* xs = x_sel_[size_t(param)];
    if (!xs) {
      cuda::gather_cols(M, n, Xg, ldx, idx, sel_, lds, gdt_, s_);
      xs = sel_;
    }
    cuda::memset_async(dw_sel_, 0, size_t(N * lds) * 4, s_);
    gemm.run_dw(M, N, n, dYg, lddyg, xs, lds, gdt_, dw_sel_, lds, s_);
    cuda::add_rows(N, n, g, n, dw_sel_, lds, s_);
  }
}

// ---- backward --------------------------------------------------------------------------------------------------

void CudaTrainer::norm_backward(int64_t T, const float* x, const float* w, const float* dy, float* dx,
                                bool accumulate, float* dw) {
  const int64_t H = cfg_.hidden;
  if (cfg_.norm == NormType::Layer)
    cuda::layernorm_backward(T, H, x, H, w, cfg_.rms_eps, dy, H, dx, H, accumulate, dw, partials_, s_);
  else
    cuda::rmsnorm_backward(T, H, x, H, w, cfg_.rms_eps, dy, H, dx, H, accumulate, dw, partials_, s_);
}

// From d(loss)/d(final-normed states) in dxf_ down through the final norm and every layer to the lowest trainable
// one (and the embedding), as train/trainer.cpp backward_layers. The families: Gemma 2's post-norms (the gradient of
// a projection's output goes through its post-norm first, into dpost_), GELU, soft-capped scores; Cohere's parallel
// block (the FFN's input gradient stays in dx_ and the attention's is added to it before the one norm);
// Qwen3's q/k norms; interleaved RoPE.
const cuda_model::LayerSave& CudaTrainer::layer_saves(int l) {
  if (!opt_.recompute) return saves_[size_t(l)];
  // The shared set without what this layer's backward does not read (the recomputed forward skips keeping it).
  const SaveMembers keep = kept_members(needs(l));
  SaveOffsets o = shared_offsets_;
  for (int m = 0; m < kMembers; ++m)
    if (!keep[size_t(m)] || m == kHin) o[size_t(m)] = kNoSave;
  const LayerSave mine = save_at(o);
  cuda::copy_device(rt_->h_.get(), saves_[size_t(l)].hin, size_t(cur_T_ * cfg_.hidden) * 4, s_);
  {
    // The recomputed forward is one step of the clocked backward, not the forward's steps again; afterwards (also
    // when it throws) the runtime marks on the trainer's clock again and the shared set is layer l's no longer.
    struct Restore {
      CudaTrainer* t;
      int l;
      ~Restore() {
        t->rt_->set_phase_clock(t->clock_.get());
        t->recompute_saves_[size_t(l)] = cuda_model::LayerSave{};
      }
    } restore{this, l};
    recompute_saves_[size_t(l)] = mine;
    rt_->set_phase_clock(nullptr);
    rt_->recompute_layer(l, recompute_saves_, linear_hook());
  }
  tick(cuda::PhaseClock::Recompute);
  recomputed_ = mine;
  recomputed_.hin = saves_[size_t(l)].hin;
  return recomputed_;
}

void CudaTrainer::backward_layers(const int32_t* tokens, int64_t T) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden, I = c.intermediate, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads,
                qd = nh * hd, kvd = nkv * hd, QKV = qd + 2 * kvd;
  const int L = c.n_layers;
  const float eps = c.rms_eps;
  cuda::Gemm& gemm = *rt_->gemm_;
  const DType wdt = rt_->wdt_;
  const float* h_final = rt_->h_.as<float>();
  using Ph = cuda::PhaseClock;
  norm_backward(T, h_final, rt_->final_norm_, dxf_, dh_, false, grad_of(lay_.params[1]));
  tick(Ph::GradElementwise);
  if (lay_.lowest >= L) return;  // only the final norm / heads train
  const int stop = std::max(lay_.lowest, 0);
  const bool embed_trains = lay_.params[0].trainable();
  const float scale = c.attn_scale(), cap = c.attn_softcap;
  const bool par = c.parallel_block, gelu = c.act == Activation::GeluTanh;
  const float* cos_t = rt_->rope_cos_.as<float>();
  const float* sin_t = rt_->rope_sin_.as<float>();
  const int32_t* pos = rt_->plan_.pos;
  for (int l = L - 1; l >= stop; --l) {
    const LayerSave& s = layer_saves(l);
    const cuda_model::DevLayer& W = rt_->layers_[size_t(l)];
    const LayerNeeds need = needs(l);
    const bool need_attn = need.attn, need_dx1 = need.dx1;
    const int window = c.window_of(l);
    // d(a projection's output) from d(the residual) in dh_: dh_ itself, or through Gemma 2's post-norm into dpost_.
    auto projection_grad = [&](const float* pre, const float* post_w, int post_role) -> const float* {
      if (!c.post_norms) return dh_;
      norm_backward(T, pre, post_w, dh_, dpost_, false, grad_of(P(l, post_role)));
      tick(Ph::GradElementwise);
      return dpost_;
    };
    auto dw_done = [&](std::initializer_list<int> roles) {  // marked where a weight gradient was computed
      for (int r : roles)
        if (P(l, r).trainable()) return tick(Ph::GradWeight);
    };
    auto lora = [&](int role, const float* dY, int64_t lddy, const void* Xg, float* dX, int64_t lddx) {
      if (adapter_at(l, role) < 0) return;
      lora_backward(adapter_at(l, role), dY, lddy, Xg, dX, lddx);
      tick(Ph::GradLora);
    };

    // FFN half: hout = hmid + [post-norm] down(act(gate(x2)) * up(x2)); dh_ holds d hout.
    const float* dy_down = projection_grad(s.down_pre, W.ffn_post_norm, kFfnPostNorm);
    const void* dhg = to_gemm(dy_down, T, H, H, g_);
    tick(Ph::GradElementwise);
    weight_grad(layer_param_index(l, kWDown), T, dhg, H, s.act, I);
    dw_done({kWDown});
    gemm.run_dx(T, H, I, dhg, H, W.wdown, I, wdt, da_, I, false, s_);
    tick(Ph::GradInput);
    lora(kWDown, dy_down, H, s.act, da_, I);
    // dgu in the GEMM dtype straight from the kernel (bf16 mode: into g_, no rounding pass); the float32 one only
    // where it is read (the f32 mode's GEMMs, an adapter on gate or up).
    const bool gu_adapted = adapter_at(l, kWGate) >= 0 || adapter_at(l, kWUp) >= 0;
    cuda::swiglu_backward(T, I, s.gu, gdt_, 2 * I, da_, I, !bf16_ || gu_adapted ? dgu_ : nullptr,
                          bf16_ ? static_cast<uint16_t*>(g_) : nullptr, 2 * I, s_, gelu);
    const void* dgug = bf16_ ? g_ : static_cast<const void*>(dgu_);
    tick(Ph::GradElementwise);
    weight_grad(layer_param_index(l, kWGate), T, dgug, 2 * I, s.x2, H);
    // (the up half of dgu: the GEMM-dtype copy is packed [T, 2I], its columns I.. start I elements in)
    weight_grad(layer_param_index(l, kWUp), T, static_cast<const char*>(dgug) + size_t(I) * ge_, 2 * I, s.x2, H);
    dw_done({kWGate, kWUp});
    // With the parallel block, x2 is the attention's normed input x1: its gradient waits in dx_ for the attention's.
    const bool need_dx2 = need.dx2;
    if (need_dx2) {
      gemm.run_dx(T, 2 * I, H, dgug, 2 * I, W.wgu, H, wdt, dx_, H, false, s_);
      tick(Ph::GradInput);
    }
    lora(kWGate, dgu_, 2 * I, s.x2, need_dx2 ? dx_ : nullptr, H);
    lora(kWUp, dgu_ + I, 2 * I, s.x2, need_dx2 ? dx_ : nullptr, H);
    if (need_dx2 && !par) {
      norm_backward(T, s.hmid, W.ffn_norm, dx_, dh_, true, grad_of(P(l, kFfnNorm)));
      tick(Ph::GradElementwise);
    }
    if (!need_attn) break;

    // Attention half: hmid = hin + [post-norm] wo(attn(rope(q), rope(k), v)), q/k/v = proj(x1) (+ bias); dh_ holds
    // d hmid (d hout with the parallel block).
    const float* dy_o = projection_grad(s.o_pre, W.attn_post_norm, kAttnPostNorm);
    const void* dhg2 = to_gemm(dy_o, T, H, H, g_);
    tick(Ph::GradElementwise);
    weight_grad(layer_param_index(l, kWo), T, dhg2, H, s.attg, qd);
    dw_done({kWo});
    gemm.run_dx(T, H, qd, dhg2, H, W.wo, qd, wdt, datt_, qd, false, s_);
    tick(Ph::GradInput);
    lora(kWo, dy_o, H, s.attg, datt_, qd);
    float *dq = dqkv_, *dk = dqkv_ + qd, *dv = dqkv_ + qd + kvd;
    if (rt_->tensor_core_attention()) {  // (the saves are bf16: LayerSave)
      auto b = [](const void* p) { return static_cast<const uint16_t*>(p); };
      cuda::attention_backward_tc(T, int(nh), int(nkv), int(hd), b(s.q), qd, b(s.k), b(s.v), kvd, b(s.att), qd, datt_,
                                  qd, s.lse, seq_row0_, seq_len_, scale, dq, QKV, dk, dv, QKV, d_rows_, s_, window,
                                  cap);
    } else {
      auto f = [](const void* p) { return static_cast<const float*>(p); };
      if (cuda::attention_backward_tiled_supported(int(hd)))
        cuda::attention_backward_tiled(T, int(nh), int(nkv), int(hd), f(s.q), qd, f(s.k), f(s.v), kvd, f(s.att), qd,
                                       datt_, qd, s.lse, seq_row0_, seq_len_, scale, dq, QKV, dk, dv, QKV, d_rows_, s_,
                                       window, cap);
      else
        cuda::attention_backward(T, int(nh), int(nkv), int(hd), f(s.q), qd, f(s.k), f(s.v), kvd, f(s.att), qd, datt_,
                                 qd, s.lse, seq_row0_, seq_len_, pos, scale, dq, QKV, dk, dv, QKV, d_rows_, s_, window,
                                 cap);
    }
    tick(Ph::GradAttention);
    cuda::rope_backward(T, dq, QKV, int(nh), int(hd), pos, cos_t, sin_t, s_, c.rope_interleaved);
    cuda::rope_backward(T, dk, QKV, int(nkv), int(hd), pos, cos_t, sin_t, s_, c.rope_interleaved);
    if (c.qk_norm) {
      // Qwen3's per-head norms, one norm over rows of head_dim for the q heads, then the k heads (as the CPU trainer):
      // their gradients gathered contiguous into datt_ (free since the attention backward), the norm's input
      // gradient into dx_ (free until the q/k/v input gradient: no family has both q/k norms and the parallel
      // block), then back into dqkv_.
      const struct {
        float* d;
        int64_t width, heads;
        const float *x, *w;
        int role;
      } parts[2] = {{dq, qd, nh, s.qk_pre, W.q_norm, kQNorm}, {dk, kvd, nkv, s.qk_pre + T * qd, W.k_norm, kKNorm}};
      for (const auto& p : parts) {
        cuda::copy_rows_f32(T, p.width, p.d, QKV, datt_, p.width, s_);
        cuda::rmsnorm_backward(T * p.heads, hd, p.x, hd, p.w, eps, datt_, hd, dx_, hd, false, grad_of(P(l, p.role)),
                               partials_, s_);
        cuda::copy_rows_f32(T, p.width, dx_, p.width, p.d, QKV, s_);
      }
    }
    if (c.qkv_bias) {
      const int roles[3] = {kBq, kBk, kBv};
      const float* cols[3] = {dq, dk, dv};
      const int64_t widths[3] = {qd, kvd, kvd};
      for (int i = 0; i < 3; ++i)
        if (float* gb = grad_of(P(l, roles[i]))) cuda::colsum_accumulate(T, widths[i], cols[i], QKV, gb, partials_, s_);
    }
    const void* dqkvg = to_gemm(dqkv_, T, QKV, QKV, g_);
    tick(Ph::GradElementwise);  // RoPE, q/k norms, biases, the GEMM copy
    const char* dqkvb = static_cast<const char*>(dqkvg);
    weight_grad(layer_param_index(l, kWq), T, dqkvb, QKV, s.x1, H);
    weight_grad(layer_param_index(l, kWk), T, dqkvb + size_t(qd) * ge_, QKV, s.x1, H);
    weight_grad(layer_param_index(l, kWv), T, dqkvb + size_t(qd + kvd) * ge_, QKV, s.x1, H);
    dw_done({kWq, kWk, kWv});
    if (need_dx1) {
      gemm.run_dx(T, QKV, H, dqkvg, QKV, W.wqkv, H, wdt, dx_, H, par, s_);  // par: onto d x2
      tick(Ph::GradInput);
    }
    const int proj[3] = {kWq, kWk, kWv};
    const float* dproj[3] = {dq, dk, dv};
    for (int i = 0; i < 3; ++i) lora(proj[i], dproj[i], QKV, s.x1, need_dx1 ? dx_ : nullptr, H);
    if (need_dx1) {
      norm_backward(T, s.hin, W.attn_norm, dx_, dh_, true, grad_of(P(l, kAttnNorm)));
      tick(Ph::GradElementwise);
    }
  }
  if (embed_trains) {
    plan_token_groups(tokens, T, &groups_);
    cuda::copy_to_device(order_, groups_.order.data(), size_t(T) * 8, s_);
    cuda::copy_to_device(group_token_, groups_.group_token.data(), groups_.group_token.size() * 4, s_);
    cuda::copy_to_device(group_start_, groups_.group_start.data(), groups_.group_start.size() * 8, s_);
    cuda::embedding_backward(groups_.n_groups(), group_token_, group_start_, order_, dh_, H, H,
                             grad_.as<float>() + lay_.params[0].offset, H, rt_->embed_scale(), s_);
    tick(Ph::GradElementwise);
    cuda::synchronize(s_);  // the host groups are reused
  }
}

// ---- LoRA -------------------------------------------------------------------------------------------------------

// Y += s dropout(X) A^T B^T for the adapter on (l, role), if any (train/lora.cpp lora_forward); saves H = s Xd A^T.
void CudaTrainer::after_linear(int l, int role, const void* X, float* Y, int64_t ldy) {
  const int pi = layer_param_index(l, role);
  if (void* sel = x_sel_[size_t(pi)]) {  // a Cols weight: keep its input's selected columns for its dW
    const Param& p = lay_.params[size_t(pi)];
    const int64_t n = int64_t(p.index.size());
    cuda::gather_cols(cur_T_, n, X, p.stored.cols, index_of(pi), sel, sel_ld(n), gdt_, s_);
  }
  const int ai = adapter_at(l, role);
  if (ai < 0) return;
  const LoraAdapter& ad = lay_.adapters[size_t(ai)];
  const Param &w = lay_.params[size_t(ad.base)], &a = lay_.params[size_t(ad.a)], &b = lay_.params[size_t(ad.b)];
  const int64_t T = cur_T_, N = w.stored.rows, K = w.stored.cols, r = ad.r, n = b.mrows;
  cuda::Gemm& gemm = *rt_->gemm_;
  const float* xin = to_f32(X, T, K);
  if (dropout_on_ && ad.dropout > 0) {
    cuda::lora_dropout(T, K, xin, K, lora_x_, K, dropout_key(ad), ad.dropout, false, s_);
    xin = lora_x_;
  }
  float* h = lora_h_[size_t(ai)];
  const float* A = master_.as<float>() + a.offset;
  const float* B = master_.as<float>() + b.offset;
  gemm.run(T, r, K, xin, K, A, K, DType::F32, h, r, false, s_);
  cuda::scale_inplace(h, T * r, ad.scale, s_);
  if (b.index.empty()) {
    gemm.run(T, N, r, h, r, B, r, DType::F32, Y, ldy, true, s_);
    return;
  }
  gemm.run(T, n, r, h, r, B, r, DType::F32, sel_, n, false, s_);
  cuda::scatter_cols(T, n, sel_, n, index_of(ad.b), Y, ldy, true, s_);
}

void CudaTrainer::lora_backward(int ai, const float* dY, int64_t lddy, const void* Xg, float* dX, int64_t lddx) {
  const LoraAdapter& ad = lay_.adapters[size_t(ai)];
  const Param &w = lay_.params[size_t(ad.base)], &a = lay_.params[size_t(ad.a)], &b = lay_.params[size_t(ad.b)];
  const int64_t T = cur_T_, K = w.stored.cols, r = ad.r, n = b.mrows;
  cuda::Gemm& gemm = *rt_->gemm_;
  const float* G = dY;
  int64_t ldg = lddy;
  if (!b.index.empty()) {
    cuda::gather_cols(T, n, dY, lddy, index_of(ad.b), sel_, n, s_);
    G = sel_;
    ldg = n;
  }
  float* gA = grad_.as<float>() + a.offset;
  float* gB = grad_.as<float>() + b.offset;
  const float* A = master_.as<float>() + a.offset;
  const float* B = master_.as<float>() + b.offset;
  gemm.run_dw(T, n, r, G, ldg, lora_h_[size_t(ai)], r, DType::F32, gB, r, s_);
  gemm.run_dx(T, n, r, G, ldg, B, r, DType::F32, lora_dh_, r, false, s_);
  cuda::scale_inplace(lora_dh_, T * r, ad.scale, s_);
  const bool drop = dropout_on_ && ad.dropout > 0;
  const float* xin = to_f32(Xg, T, K);
  if (drop) {
    cuda::lora_dropout(T, K, xin, K, lora_x_, K, dropout_key(ad), ad.dropout, false, s_);
    xin = lora_x_;
  }
  gemm.run_dw(T, r, K, lora_dh_, r, xin, K, DType::F32, gA, K, s_);
  if (!dX) return;
  if (!drop) {
    gemm.run_dx(T, r, K, lora_dh_, r, A, K, DType::F32, dX, lddx, true, s_);
    return;
  }
  gemm.run_dx(T, r, K, lora_dh_, r, A, K, DType::F32, lora_x_, K, false, s_);
  cuda::lora_dropout(T, K, lora_x_, K, dX, lddx, dropout_key(ad), ad.dropout, true, s_);
}

}  // namespace train
}  // namespace ln
