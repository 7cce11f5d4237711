// Forward/backward pairs of the layer types of a Llama-family decoder, for training (llm.c style): each forward
// writes what its backward needs into caller-owned arrays (the trainer's activation arena), each backward reads
// them and the output gradient and produces the input gradient and the parameter gradients.
// Conventions follow the inference engine (native/src/model/*, kernels/ops.h, kernels/math.h): RMSNorm as
// transformers (double sum of squares, weight applied last), rotate_half RoPE from float tables, causal softmax
// attention with 1/sqrt(head_dim) scaling and grouped-query heads (query head h reads kv head h / group).
//
// Gradients: every backward ACCUMULATES parameter gradients (dw += ...). Input gradients: documented per function.
// All arrays are row-major float32, rows = packed tokens of the batch (sequences back to back, no padding).
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace ln {
namespace train {

struct SeqSpan {
  int64_t row0;  // first row of the sequence in the packed batch
  int32_t len;   // its tokens (positions 0..len-1)
};

// y = w * (x * r) with r = 1/sqrt(mean(x^2) + eps) per row; rstd[t] = r. x, y: T x n.
void rmsnorm_forward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, float eps, float* y,
                     float* rstd);
// dx (+)= d/dx of y given dy (accumulate selects += vs =); dw += sum_t dy * x * r (dw may be null: frozen).
//   dx_i = r (w_i dy_i) - r^3 / n * x_i * sum_k w_k dy_k x_k
void rmsnorm_backward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, const float* rstd,
                      const float* dy, float* dx, bool accumulate, float* dw);

// Cohere's LayerNorm: y = w * (x - mean) * r, r = 1/sqrt(var + eps); mean[t], rstd[t] saved. x, y: T x n.
void layernorm_forward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, float eps, float* y,
                       float* mean, float* rstd);
// dx (+)= d/dx given dy; dw += sum_t dy * xhat (dw may be null). With g = w dy and xhat = (x - mean) r:
//   dx_i = r (g_i - mean_k g_k - xhat_i mean_k g_k xhat_k)
void layernorm_backward(ThreadPool& pool, int64_t T, int64_t n, const float* x, const float* w, const float* mean,
                        const float* rstd, const float* dy, float* dx, bool accumulate, float* dw);

// RoPE in place on rows of n_heads * head_dim values; row t uses the table row pos[t] (half = head_dim / 2).
// interleaved: Cohere's pairs (2i, 2i+1) instead of (i, i + half).
void rope_forward(ThreadPool& pool, int64_t T, float* x, int n_heads, int head_dim, const int32_t* pos,
                  const float* cos_tab, const float* sin_tab, bool interleaved = false);
// The transpose (inverse) rotation, applied in place to the gradient.
void rope_backward(ThreadPool& pool, int64_t T, float* dx, int n_heads, int head_dim, const int32_t* pos,
                   const float* cos_tab, const float* sin_tab, bool interleaved = false);

struct AttnShape {
  int n_heads, n_kv_heads, head_dim;
  float scale = 0.f;    // scores = q . k * scale (0: 1/sqrt(head_dim))
  float softcap = 0.f;  // > 0: scores -> softcap tanh(scores / softcap) (Gemma 2)
  int32_t window = 0;   // > 0: row i sees keys max(0, i - window + 1)..i
};
// Causal attention per sequence: out[t, h] = sum_{j <= i} softmax_j(s(q_i . k_j)) v_j with s the scaling (and
// soft-capping), keys limited to the window when there is one; lse[t * n_heads + h]
// = logsumexp of the scores of row t, head h (what the backward needs to recompute the probabilities).
// q, out: T x (n_heads * hd); k, v: T x (n_kv_heads * hd). scratch: pool.size() * max_len floats.
void attention_forward(ThreadPool& pool, const std::vector<SeqSpan>& seqs, const AttnShape& a, const float* q,
                       const float* k, const float* v, float* out, float* lse, float* scratch);
// dq = ..., dk = ..., dv = ... (all overwritten). Work is split by (sequence, kv head), so every task owns the
// dk/dv rows it writes. scratch: pool.size() * 3 * max_len floats.
void attention_backward(ThreadPool& pool, const std::vector<SeqSpan>& seqs, const AttnShape& a, const float* q,
                        const float* k, const float* v, const float* lse, const float* dout, float* dq, float* dk,
                        float* dv, float* scratch);

// a = act(g) * u over n values (act: silu, or gelu_tanh with `gelu`).
void swiglu_forward(ThreadPool& pool, int64_t n, const float* g, const float* u, float* a, bool gelu = false);
// dg = da * u * act'(g), du = da * act(g) (overwritten). silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
void swiglu_backward(ThreadPool& pool, int64_t n, const float* g, const float* u, const float* da, float* dg,
                     float* du, bool gelu = false);

// Cross-entropy of `rows` logit rows (V each) against targets (all >= 0 here), in place: logits become
// d(scale * sum_rows CE)/d(logits) = scale * (softmax - onehot). Returns sum_rows CE (double).
double crossentropy_forward_backward(ThreadPool& pool, int64_t rows, int64_t V, float* logits, const int32_t* targets,
                                     float scale, double* row_loss_scratch);

// dE[tokens[t]] += scale * dh[t] (rows of H; scale: Gemma's embedding scale). Serial over tokens (repeated tokens
// write the same row).
void embedding_backward(int64_t T, int64_t H, const int32_t* tokens, const float* dh, float* dE, float scale = 1.f);

}  // namespace train
}  // namespace ln
