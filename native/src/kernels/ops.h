// Elementwise and row operations of the decoder forward (everything that is not a matrix product).
// Mostly plain scalar code: these are O(tokens x width) next to the O(tokens x width^2) projections. The
// exceptions have AVX2 versions (ops_avx2.cpp, attention_kernels_avx2.cpp): attention, and silu, one exp per FFN
// neuron per token, which took 1-2% of a Llama-3.2-1B-shaped forward in scalar code (benchmarks/profile).
// Activation buffers are owned float arrays (aligned); weights are read only through convert_to_f32 /
// load_as_f32 (memcpy), so misaligned checkpoint pointers are fine.
#pragma once
#include "kernels/math.h"
#include <cmath>
#include <cstdint>

#include "kernels/gemm.h"

namespace ln {

// Hugging Face LlamaRMSNorm on M rows of n floats: y = (x * 1/sqrt(mean(x^2) + eps)) * w, in float32 (the mean
// of squares is accumulated in double, which is at least as exact as torch's float32 reduction).
// y may alias x (in-place) when ldy == ldx.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps);
void rmsnorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                  float eps);

// Cohere's LayerNorm (mean-centred, weight, no bias) on M rows of n floats, in float32 with double sums:
// y = w * ((x - mean) / sqrt(var + eps)). y may alias x when ldy == ldx.
void layernorm(const float* x, const float* w, float* y, int64_t n, float eps);
void layernorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                    float eps);

// RoPE frequencies. Llama-3 scaling follows transformers' _compute_llama3_parameters, YaRN _compute_yarn_parameters,
// linear _compute_linear_scaling_rope_parameters (every frequency / factor).
struct RopeScaling {
  bool llama3 = false, yarn = false, linear = false;
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  double original_max_positions = 8192;
  double beta_fast = 32, beta_slow = 1;  // yarn
};
// inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2 (then scaled), computed in double.
void rope_inv_freq(int head_dim, double theta, const RopeScaling& s, double* inv_freq);
// cos/sin tables for positions [p0, p1): row (p - p0) holds half = head_dim/2 values. As in transformers,
// inv_freq is a float32 tensor and the angle p * inv_freq is a float32 product (at long positions the rounding
// of the angle is the largest difference between implementations, so we reproduce it); cos/sin of that float
// angle are computed in double and rounded to float.
void rope_tables(const float* inv_freq, int half, int64_t p0, int64_t p1, float* cos_out, float* sin_out);
// rotate_half RoPE, in place, on n_heads heads of head_dim floats stored back to back:
//   out[i] = x[i] cos_i - x[i+half] sin_i,  out[i+half] = x[i+half] cos_i + x[i] sin_i   (i < half)
void rope_apply(float* x, int n_heads, int head_dim, const float* cos_row, const float* sin_row);
// Cohere's interleaved RoPE, in place: pair (x[2i], x[2i+1]) rotated by frequency i (same formula).
void rope_apply_interleaved(float* x, int n_heads, int head_dim, const float* cos_row, const float* sin_row);

// silu(g) = g / (1 + exp(-g)) in float32 (torch's F.silu).
inline float silu(float g) { return math::silu(g); }
// x = silu(x): the active kernel table's (kernels/kernel_table.h). The AVX2 version computes exp by its own polynomial and agrees with
// the exact value within 4e-7 relative (not bit for bit), the same for every element of a row whatever its position.
void silu_inplace(float* x, int64_t n);
void silu_inplace_plain(float* x, int64_t n);
void silu_inplace_avx2(float* x, int64_t n);  // only after cpu_supports(Avx2)
void gelu_tanh_inplace(float* x, int64_t n);  // x = gelu_tanh(x) (math.h)
void silu_inplace_avx512(float* x, int64_t n);  // only after cpu_supports(Avx512): the avx2 bits, 16 lanes
void mul_inplace(float* x, const float* y, int64_t n);  // x *= y
void add_inplace(float* x, const float* y, int64_t n);  // x += y
void round_bf16_inplace(float* x, int64_t n);           // x = round_bf16(x)

// Causal attention of one query row of one head (attention.cpp's decode path: blocks of fewer than
// kAttnMinTileVectors query vectors; the prefill path is attend_causal below): against keys/values
// 0..n_keys-1 with row stride ld, p[j] = (q . k_j) * scale, p = softmax(p), out = sum_j p[j] v_j.
// p is scratch for n_keys floats. Runs the active kernel table's version (kernels/kernel_table.h).
void attend_row(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd, float scale,
                float* p, float* out);
void attend_row_plain(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                      float scale, float* p, float* out);
void attend_row_avx2(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                     float scale, float* p, float* out);  // only after cpu_supports(Avx2)

// attend_row with Gemma 2's score soft-capping: p[j] = cap tanh((q . k_j) * scale / cap), then as attend_row.
// Scalar (plain) code for every kernel choice.
void attend_row_capped(const float* q, const float* k, const float* v, int64_t ld, int32_t n_keys, int hd,
                       float scale, float cap, float* p, float* out);

// Causal attention of a block of query rows for the query heads that share one KV head (grouped-query attention),
// the prefill kernel of attention.cpp. Query row r (0 <= r < n_rows) of head g (0 <= g < n_q) is
// q + r*ldq + g*hd; its output goes to out + r*ldo + g*hd. It sits at sequence position key0 + r and attends to
// keys/values 0..key0+r (k + j*ldkv, v + j*ldkv): out = softmax((q . k_j) * scale) . v.
//
// The n_rows*n_q query vectors are taken kAttnTile at a time (row-major: the heads of a row are adjacent, so a tile
// spans few rows and little of the causal diagonal is wasted) and run against blocks of kAttnKeyBlock keys with an
// online softmax (flash-attention): scores of the block for the whole tile, then per query the running max m,
// the rescale exp(m_old - m_new) of what was accumulated, p = exp(s - m_new), l += sum p, acc += p . v; at the end
// out = acc * (1/l). Every key and value loaded is used by the whole tile, and the scratch is bounded:
// attend_causal_scratch_floats(hd) floats (64-byte aligned), whatever the number of keys.
// attend_causal runs the active kernel table's version; every version takes the scratch (a task gets its worker's from
// ThreadPool::scratch(thread, Scratch::Attention, attend_causal_scratch_floats(hd))).
constexpr int kAttnTile = 24;      // query vectors per tile
constexpr int kAttnKeyBlock = 64;  // keys per online-softmax block
// Below this many query vectors (n_rows * n_q) a tile is mostly empty lanes: the row kernel is faster there
// (decoding one token; benchmarks/attention), and attention.cpp uses attend_row instead.
constexpr int kAttnMinTileVectors = 8;
int64_t attend_causal_scratch_floats(int hd);
void attend_causal(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v, int64_t ldkv,
                   int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch);
void attend_causal_plain(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                         int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch);
void attend_causal_avx2(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                        int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo,
                        float* scratch);  // only after cpu_supports(Avx2)
// x86 only, after cpu_supports(Avx512): the same tile on 16 lanes of zmm (attention_kernels_avx512.cpp), the same bits.
void attend_causal_avx512(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                          int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch);

// log(sum(exp(x))) over n floats: max-shifted, float exp, double accumulation.
double logsumexp(const float* x, int64_t n);

// log p(target) of a logits row: logit[target] - logsumexp(row); NaN for a row of all-zero logits
// (math::target_log_softmax).
float target_logprob(const float* x, int64_t n, int32_t target);

// out row i = embed[tokens[i]] converted to float32 from the stored dtype (embed: [vocab, hidden]).
void embed_rows(const WeightRef& embed, const int32_t* tokens, int64_t n, float* out, int64_t ldo);

}  // namespace ln

