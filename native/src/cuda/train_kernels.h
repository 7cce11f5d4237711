// Host API of the CUDA trainer's kernels (train_kernels.cu): the backward twins of the runtime's forward kernels,
// the sparse (masked) weight-gradient helpers, the loss, and AdamW. The CPU twins they are tested against are in
// native/src/train/layers.h and trainer.cpp; their per-element math is kernels/math.h (LN_HD), shared.
//
// Plain C++17, no CUDA headers. Conventions as cuda_backend.h / runtime_kernels.h: device pointers unless the
// name ends in _host; row-major with explicit row strides (ld*) in elements; bf16 values are uint16_t bit
// patterns; launchers are asynchronous on `stream` and throw std::runtime_error naming the kernel on a failed
// launch.
//
// Determinism (resume must be bit-identical on the same device): nothing here uses floating-point atomics.
// Reductions over tokens (norm weight gradients, bias gradients, the embedding gradient, the global gradient
// norm) write per-block partials and add them in a fixed order; the attention backward computes dq per query
// row and dk/dv per key row (each output written by exactly one thread block).
//
// Every parameter-gradient output ACCUMULATES (+=), as the CPU trainer's backward (gradient accumulation over
// micro-batches); input-gradient outputs say = or += per function.
#pragma once
#include <cstdint>

#include "cuda/cuda_backend.h"

namespace ln {
namespace cuda {

// ---- norms ---------------------------------------------------------------------------------------------------

// LlamaRMSNorm backward (train/layers.h rmsnorm_backward), r recomputed from x (double sum of squares,
// math::rmsnorm_inv_rms, as the forward):
//   dx_i (+)= r (w_i dy_i) - r^3 / n * x_i * sum_k w_k dy_k x_k        (accumulate selects += vs =)
//   dw_i += sum_t dy_ti x_ti r_t                                     (dw may be null: a frozen norm)
// dw_partials: scratch of at least rmsnorm_dw_partials(M, n) floats when dw is not null (block partials, reduced
// in order into dw, and the rows' r).
void rmsnorm_backward(int64_t M, int64_t n, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                      int64_t lddy, float* dx, int64_t lddx, bool accumulate, float* dw, float* dw_partials,
                      Stream stream);
int64_t rmsnorm_dw_partials(int64_t M, int64_t n);
// Cohere's LayerNorm backward (train/layers.h layernorm_backward; mean and r recomputed as the forward):
//   dx_i (+)= r (w_i dy_i - mean_k(w_k dy_k) - xhat_i mean_k(w_k dy_k xhat_k)),  xhat = (x - mean) r
//   dw_i += sum_t dy_ti xhat_ti
// The same arguments as rmsnorm_backward; dw_partials of at least layernorm_dw_partials(M, n) floats.
void layernorm_backward(int64_t M, int64_t n, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                        int64_t lddy, float* dx, int64_t lddx, bool accumulate, float* dw, float* dw_partials,
                        Stream stream);
int64_t layernorm_dw_partials(int64_t M, int64_t n);

// ---- RoPE ----------------------------------------------------------------------------------------------------

// The transpose rotation (train/layers.h rope_backward) in place on T rows of n_heads heads (row stride ld),
// row t by the table row pos[t]: the gradient of rope_apply / rope_qkv's rotation (interleaved: Cohere's pairs).
void rope_backward(int64_t T, float* dx, int64_t ld, int n_heads, int head_dim, const int32_t* pos,
                   const float* cos_tab, const float* sin_tab, Stream stream, bool interleaved = false);

// ---- attention -----------------------------------------------------------------------------------------------

// Causal GQA attention forward that also writes lse[t * n_heads + h] (the logsumexp of row t's scaled scores,
// what the backward recomputes the probabilities from). Same arguments as cuda_backend.h attention_causal, all
// float32 (the f32 mode and the reference for the bf16 path's saved values), window and cap included.
void attention_forward_lse(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                           const float* k, const float* v, int64_t ldkv, const int64_t* key_row0, const int32_t* n_keys,
                           float scale, float* out, int64_t ldo, float* lse, Stream stream, int window = 0,
                           float cap = 0.f);

// Backward of causal attention over packed sequences without a cache (train/layers.h attention_backward):
//   p_ij = exp(scale q_i.k_j - lse_i), D_i = dout_i . out_i, ds_ij = p_ij (dout_i . v_j - D_i)
//   dq_i = scale sum_j ds_ij k_j                (one block per query row and head; overwritten)
//   dk_j = scale sum_{i, heads of j's group} ds_ij q_i, dv_j = sum_{i, heads} p_ij dout_i
//                                               (one block per key row and kv head; overwritten)
// q, out, dout, dq: [T, n_heads * hd]; k, v, dk, dv: [T, n_kv_heads * hd] (packed rows, strides given);
// seq_row0[t], seq_len[t]: the first row and the length of token t's sequence; pos[t]: its position.
// d_rows: scratch of T * n_heads floats (the D_i). head_dim <= 256. With cap > 0 (Gemma 2) the scores are
// y = cap tanh(scale q.k / cap): p_ij = exp(y_ij - lse_i) and ds_ij gets the factor 1 - (y_ij / cap)^2. With
// window > 0 a query sees only its last `window` keys (itself included), as the forward.
void attention_backward(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                        const float* k, const float* v, int64_t ldkv, const float* out, int64_t ldo,
                        const float* dout, int64_t lddo, const float* lse, const int64_t* seq_row0,
                        const int32_t* seq_len, const int32_t* pos, float scale, float* dq, int64_t lddq, float* dk,
                        float* dv, int64_t lddkv, float* d_rows, Stream stream, int window = 0, float cap = 0.f);

// The same backward on shared-memory tiles of 32 query x 32 key rows (attention_backward_tiled.cu, float32;
// FlashAttention-2's split: one block per (query tile, head) for dq, one per (key tile, kv head) for dk/dv), for
// the head sizes attention_backward_tiled_supported accepts (64, 128); the same arguments as attention_backward
// (pos is implied by seq_row0: row t's position is t - seq_row0[t]). Sums in another order than the simple
// kernels, which stay the reference.
bool attention_backward_tiled_supported(int head_dim);
void attention_backward_tiled(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                              const float* k, const float* v, int64_t ldkv, const float* out, int64_t ldo,
                              const float* dout, int64_t lddo, const float* lse, const int64_t* seq_row0,
                              const int32_t* seq_len, float scale, float* dq, int64_t lddq, float* dk, float* dv,
                              int64_t lddkv, float* d_rows, Stream stream, int window = 0, float cap = 0.f);

// The same backward on tensor cores for the bf16 mode (attention_backward_tc.cu; sm_80+, head_dim 32 / 64 / 128 / 256):
// mma.sync with bf16 operands and float32 accumulation. q / k / v and out are bf16, the tensors the forward's
// tensor-core attention (flash_attention_bf16) read and wrote; dout, p and ds are rounded to bf16 for their products
// as FlashAttention-2 does; otherwise the same split and arguments as the tiled kernels. q / k / v (row strides
// multiples of 8) and dout (multiples of 4) 16-byte aligned.
bool attention_backward_tc_supported(int head_dim);
void attention_backward_tc(int64_t T, int n_heads, int n_kv_heads, int head_dim, const uint16_t* q, int64_t ldq,
                           const uint16_t* k, const uint16_t* v, int64_t ldkv, const uint16_t* out, int64_t ldo,
                           const float* dout, int64_t lddo, const float* lse, const int64_t* seq_row0,
                           const int32_t* seq_len, float scale, float* dq, int64_t lddq, float* dk, float* dv,
                           int64_t lddkv, float* d_rows, Stream stream, int window = 0, float cap = 0.f);

// ---- FFN -----------------------------------------------------------------------------------------------------

// SwiGLU backward on the fused layout of the forward (gu row t: gate [0, I), up [I, 2I)):
//   dgu[t, j] = da[t, j] * u * silu'(g),  dgu[t, I + j] = da[t, j] * silu(g)     (overwritten)
// math::silu_grad / math::silu, as train/layers.h swiglu_backward.
// gelu: Gemma's GELU-tanh instead of silu (dgu = da * u * gelu'(g), da * gelu(g)).
// gu: float32, or bf16 (gu_dtype; the bf16 mode keeps gate and up rounded, as ffn_fused's gu_save writes them).
// dgu (float32) and dgu_bf16 (the same values rounded, the bf16 mode's GEMM operand: no pass of its own to round
// them) may each be null, not both; both have row stride lddgu.
void swiglu_backward(int64_t M, int64_t I, const void* gu, DType gu_dtype, int64_t ldgu, const float* da, int64_t ldda,
                     float* dgu, uint16_t* dgu_bf16, int64_t lddgu, Stream stream, bool gelu = false);

// ---- loss ----------------------------------------------------------------------------------------------------

// Cross-entropy of `rows` logit rows (V each, row stride ld) in place, as train/layers.h
// crossentropy_forward_backward: row i becomes scale * (softmax - onehot(targets[i])) and row_loss[i] =
// logsumexp - logit[target] (double; float exp, double sum as the CPU). Rows with targets[i] < 0 become zero
// and row_loss 0. The caller adds row_loss in row order on the host (deterministic).
void crossentropy_backward(int64_t rows, int64_t V, float* logits, int64_t ld, const int32_t* targets, float scale,
                           double* row_loss, Stream stream);

// The cross-entropy gradient of finished logits (y = softcap(x * scale, cap): runtime_kernels.h finish_logits)
// back to the LM head's output x, in place: dl *= scale * (cap > 0 ? 1 - (y / cap)^2 : 1). capped: y (row stride
// ldy), needed when cap > 0. Nothing when scale == 1 and cap == 0.
void logits_chain(int64_t M, int64_t V, float* dlogits, int64_t ld, const float* capped, int64_t ldy, float scale,
                  float cap, Stream stream);

// ---- embedding -----------------------------------------------------------------------------------------------

// dE[tok, :] += scale * sum of dh rows whose token is tok, deterministic: the host passes the rows grouped by
// token (order[i]: rows sorted by token, stable; group_start[g] .. group_start[g + 1]: the rows of token
// group_token[g]); one block per group adds its rows in order. dE: [vocab, H] (row stride lde).
void embedding_backward(int64_t n_groups, const int32_t* group_token, const int64_t* group_start,
                        const int64_t* order, const float* dh, int64_t lddh, int64_t H, float* dE, int64_t lde,
                        float scale, Stream stream);

// ---- sparse weight gradients (gather, one GEMM, scatter) -----------------------------------------------------

// y[i, c] = x[i, index[c]] for i < M, c < n (the selected output features of dY for Rows weights, or the
// selected input features of X for Cols weights), float32.
void gather_cols(int64_t M, int64_t n, const float* x, int64_t ldx, const int32_t* index, float* y, int64_t ldy,
                 Stream stream);
// The same on values of `dtype` (BF16 bit patterns or F32): the operands of a sparse weight gradient's GEMM, in the
// GEMM dtype.
void gather_cols(int64_t M, int64_t n, const void* x, int64_t ldx, const int32_t* index, void* y, int64_t ldy,
                 DType dtype, Stream stream);
// y[i, index[c]] (+)= x[i, c]: the scatter back (e.g. a masked LoRA B output into its output features).
void scatter_cols(int64_t M, int64_t n, const float* x, int64_t ldx, const int32_t* index, float* y, int64_t ldy,
                  bool accumulate, Stream stream);
// Column sums for bias gradients: db[j] += sum_i dy[i, j], deterministic (partials scratch of
// colsum_partials(M, n) floats).
void colsum_accumulate(int64_t M, int64_t n, const float* dy, int64_t ld, float* db, float* partials, Stream stream);
int64_t colsum_partials(int64_t M, int64_t n);

// ---- weights from master copies ------------------------------------------------------------------------------

// After an optimizer step, the device weight the forward reads gets the new master values, converted to its
// dtype (BF16: round to nearest even; F32: copied):
//   dense: W[:] = master[rows * cols]
//   rows:  W[index[r], :] = master[r, :]        (master [n, cols])
//   cols:  W[:, index[c]] = master[:, c]        (master [rows, n])
// index null for dense. W: [rows, cols] contiguous in w_dtype. add: written as add + master (Gemma's norms, which
// multiply by 1 + w: the forward reads 1 + w, the master holds w).
enum class MasterLayout : int { Dense = 0, Rows = 1, Cols = 2 };
void write_master(MasterLayout layout, const float* master, int64_t rows, int64_t cols, const int32_t* index,
                  int64_t n, void* W, DType w_dtype, Stream stream, float add = 0.f);

// ---- optimizer -----------------------------------------------------------------------------------------------

// The global L2 norm's square of n floats, in double, deterministic: per-block double partials reduced in order
// into *out (device). partials: sumsq_partials(n) doubles.
void sum_of_squares(const float* x, int64_t n, double* partials, double* out, Stream stream);
int64_t sumsq_partials(int64_t n);

// AdamW over n trainable floats, the CPU trainer's exact float operations (train/trainer.cpp Trainer::step, as
// torch.optim.AdamW): with g = grad * clip_scale,
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  p *= decay;  p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
// where the host computes, as the CPU does: bc1 = 1 - b1^t, bc2 = 1 - b2^t in double, step_size = float(lr / bc1),
// bc2_sqrt = float(sqrt(bc2)), decay = 1 - lr * weight_decay (float). Compile without FMA contraction
// (__fmul_rn/__fadd_rn) so that the f32 mode matches the CPU bit for bit. Does not zero grad.
void adamw_step(int64_t n, float* master, const float* grad, float* m, float* v, float beta1, float beta2, float eps,
                float step_size, float bc2_sqrt, float decay, float clip_scale, Stream stream);

// LoRA dropout on the device, the same masks as the CPU (train/lora.cpp lora_dropout: key from
// lora_dropout_key(seed, step, micro, layer, role), per (row, feature) keep/drop by the shared hash of math.h or
// train/lora.h): y (+)= dropout(x) * 1 / (1 - p) for M rows of K features.
void lora_dropout(int64_t M, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, uint64_t key, float p,
                  bool accumulate, Stream stream);

// ---- backward GEMMs of last resort ---------------------------------------------------------------------------

// The two products of a Linear layer's backward on one thread per output, float32 accumulation in order (what
// cuda::Gemm::run_dx / run_dw fall back to for shapes cuBLASLt offers no algorithm for). Operands both bf16 (bf16)
// or both float32:
//   dX[i, k] = (accumulate ? dX[i, k] : 0) + sum_n dY[i, n] W[n, k]       (i < M, k < K, n in order)
//   dW[n, k] += sum_i dY[i, n] X[i, k]                                     (n < N, k < K, i in order)
void gemm_simple_dx(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* W, int64_t ldw, bool bf16,
                    float* dX, int64_t lddx, bool accumulate, Stream stream);
void gemm_simple_dw(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* X, int64_t ldx, bool bf16,
                    float* dW, int64_t lddw, Stream stream);

}  // namespace cuda
}  // namespace ln
