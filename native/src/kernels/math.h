// The scalar math of the forward pass, shared by the CPU backend, the CUDA kernels (native/src/cuda/) and the
// tests (native/tests/test_math.cpp). Project rule: "keep the math of every CUDA kernel in functions the CPU
// backend shares and tests". Every function here is LN_HD (host+device under nvcc, plain inline otherwise), has no
// side effects, allocates nothing and touches no global state, so a kernel and a CPU loop that call it compute the
// same thing.
//
// Precision choices follow the CPU backend (kernels/ops.cpp), which follows transformers:
//   - float32 exp/sqrt/products for activations (silu, swiglu, rmsnorm apply, rope rotation, softmax terms);
//   - double where torch's result is computed in double or where it makes the result independent of the
//     accumulation order (inv_freq, rope cos/sin, the rmsnorm sum of squares).
// One caveat: nvcc contracts a*b + c into an FMA by default (-fmad=true), gcc on x86 without -mfma does not, so a
// CUDA kernel may differ from the CPU in the last bit of a rope rotation or a dot product. That is rounding, not a
// different formula; compile with -fmad=false for bit-exact comparisons.
//
// Everything lives in namespace ln::math (ln::silu in kernels/ops.h is the same formula; see docs/CUDA.md for the
// ops.cpp functions that should switch to these).
#pragma once
#include <math.h>

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace ln {
namespace math {

// ---- activations -------------------------------------------------------------------------------------------

// silu(x) = x * sigmoid(x) = x / (1 + exp(-x)), float32 (torch's F.silu). silu(+inf) = inf; silu(-inf) = NaN
// (-inf/inf; torch's x * sigmoid(x) = -inf * 0 is NaN as well).
LN_HD inline float silu(float x) { return x / (1.f + expf(-x)); }

// SwiGLU's neuron value: silu(gate) * up (the input of the down projection).
LN_HD inline float swiglu(float gate, float up) { return silu(gate) * up; }

// GELU in its tanh form (torch's gelu(approximate="tanh"), Hugging Face's gelu_pytorch_tanh, Gemma's FFN):
//   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the inner terms in float32 as torch, tanh in double.
// gelu_tanh(x) > 0 exactly when x > 0 (as silu), so "active" keeps its meaning for the gated FFN.
LN_HD inline float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  const float inner = k * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.f + float(tanh(double(inner))));
}
// d gelu_tanh / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(inner).
LN_HD inline float gelu_tanh_grad(float x) {
  const float k = 0.7978845608028654f;
  const float t = float(tanh(double(k * (x + 0.044715f * x * x * x))));
  return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * k * (1.f + 3.f * 0.044715f * x * x);
}
// d silu / dx = s (1 + x (1 - s)), s = sigmoid(x).
LN_HD inline float silu_grad(float x) {
  const float s = 1.f / (1.f + expf(-x));
  return s * (1.f + x * (1.f - s));
}

// The SwiGLU backward of one element (train/layers.h swiglu_backward; the CUDA trainer's swiglu_backward):
// with s = sigmoid(g), dg = da * u * (s (1 + g (1 - s))) and du = da * (g s), in this order of float operations.
LN_HD inline void swiglu_grads(float g, float u, float da, float* dg, float* du) {
  const float sg = 1.f / (1.f + expf(-g));
  const float si = g * sg;
  *dg = da * u * (sg * (1.f + g * (1.f - sg)));
  *du = da * si;
}

// ---- soft-capping (Gemma 2) --------------------------------------------------------------------------------

// cap * tanh(x / cap): attention scores (attn_logit_softcapping) and final logits (final_logit_softcapping).
LN_HD inline float softcap(float x, float cap) { return cap * float(tanh(double(x / cap))); }
// Its derivative expressed through the capped value y = softcap(x): 1 - (y / cap)^2.
LN_HD inline float softcap_grad_from_output(float y, float cap) {
  const float r = y / cap;
  return 1.f - r * r;
}

// ---- RMSNorm -----------------------------------------------------------------------------------------------

// The scale 1/sqrt(mean(x^2) + eps) of a row of n values whose sum of squares is sum_sq (accumulated in double by
// the caller). As transformers' LlamaRMSNorm: variance rounded to float32, + eps in float32, rsqrt, rounded to float.
LN_HD inline float rmsnorm_inv_rms(double sum_sq, int64_t n, float eps) {
  const float var = float(sum_sq / double(n));
  return float(1.0 / sqrt(double(var + eps)));
}

// One normalized element: weight * (x * inv_rms), in that order (transformers multiplies the weight last).
LN_HD inline float rmsnorm_apply(float x, float inv_rms, float weight) { return weight * (x * inv_rms); }

// ---- LayerNorm (Cohere: mean-centred, weight, no bias) ----------------------------------------------------

// 1/sqrt(var + eps) of a row of n values whose centred sum of squares sum((x - mean)^2) is sum_sq (accumulated in
// double by the caller), variance rounded to float32 as torch's float32 LayerNorm.
LN_HD inline float layernorm_inv_std(double centred_sum_sq, int64_t n, float eps) {
  const float var = float(centred_sum_sq / double(n));
  return float(1.0 / sqrt(double(var + eps)));
}
// One normalized element: weight * ((x - mean) * inv_std).
LN_HD inline float layernorm_apply(float x, float mean, float inv_std, float weight) {
  return weight * ((x - mean) * inv_std);
}

// ---- RoPE --------------------------------------------------------------------------------------------------

// Unscaled inverse frequency of pair i of a head of head_dim: theta^(-2i/head_dim), in double.
LN_HD inline double rope_base_inv_freq(int i, int head_dim, double theta) {
  return pow(theta, -2.0 * double(i) / double(head_dim));
}

// Llama-3 (3.1) scaling of one inverse frequency f, as transformers' _compute_llama3_parameters:
//   wavelen = 2 pi / f;
//   wavelen < orig / high_freq_factor  -> f (short wavelengths kept);
//   wavelen > orig / low_freq_factor   -> f / factor (long wavelengths slowed down);
//   otherwise smooth = (orig / wavelen - low) / (high - low), f' = (1 - smooth) f / factor + smooth f.
LN_HD inline double llama3_scale_inv_freq(double f, double factor, double low_freq_factor, double high_freq_factor,
                                          double original_max_positions) {
  const double pi = 3.14159265358979323846;
  const double low_wavelen = original_max_positions / low_freq_factor;
  const double high_wavelen = original_max_positions / high_freq_factor;
  const double wavelen = 2 * pi / f;
  if (wavelen < high_wavelen) return f;
  if (wavelen > low_wavelen) return f / factor;
  const double smooth = (original_max_positions / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
  return (1 - smooth) * f / factor + smooth * f;
}

// YaRN (transformers' _compute_yarn_parameters): pair i of a head of head_dim keeps its frequency (extrapolation)
// when it turns more than beta_fast times over the original context, is divided by factor (interpolation) when it
// turns fewer than beta_slow times, and blends linearly in between:
//   d(r) = head_dim ln(orig / (2 pi r)) / (2 ln theta);  low = max(floor(d(beta_fast)), 0), high = min(ceil(d(beta_slow)), head_dim - 1)
//   ramp_i = clamp((i - low) / (high - low), 0, 1)   (high += 0.001 when low == high)
//   f' = f / factor * ramp_i + f * (1 - ramp_i)
LN_HD inline double yarn_correction_dim(double rotations, int head_dim, double theta, double original_max_positions) {
  const double pi = 3.14159265358979323846;
  return double(head_dim) * log(original_max_positions / (rotations * 2 * pi)) / (2 * log(theta));
}
LN_HD inline double yarn_scale_inv_freq(double f, int i, int head_dim, double theta, double factor, double beta_fast,
                                        double beta_slow, double original_max_positions) {
  double low = floor(yarn_correction_dim(beta_fast, head_dim, theta, original_max_positions));
  double high = ceil(yarn_correction_dim(beta_slow, head_dim, theta, original_max_positions));
  low = low < 0 ? 0 : low;
  high = high > head_dim - 1 ? head_dim - 1 : high;
  if (low == high) high += 0.001;
  double ramp = (double(i) - low) / (high - low);
  ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
  return f / factor * ramp + f * (1 - ramp);
}
// The default YaRN attention factor (cos and sin are multiplied by it): 0.1 ln(factor) + 1 (1 for factor <= 1);
// with mscale and mscale_all_dim both set, get(factor, mscale) / get(factor, mscale_all_dim).
LN_HD inline double yarn_mscale(double factor, double mscale) {
  return factor <= 1 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

// cos/sin of the rotation angle of position pos for a float32 inv_freq. As in transformers, the angle is a float32
// product (its rounding is what dominates differences at long positions); cos/sin of it in double, rounded.
LN_HD inline void rope_cos_sin(int64_t pos, float inv_freq, float* c, float* s) {
  const float angle = float(pos) * inv_freq;
  *c = float(cos(double(angle)));
  *s = float(sin(double(angle)));
}

// Rotation of one pair (x_i, x_{i+half}) in the rotate_half convention of Hugging Face:
//   out_i = x_i cos - x_{i+half} sin,   out_{i+half} = x_{i+half} cos + x_i sin.
LN_HD inline void rope_rotate(float x0, float x1, float c, float s, float* out0, float* out1) {
  const float a = x0 * c - x1 * s;
  const float b = x1 * c + x0 * s;
  *out0 = a;
  *out1 = b;
}

// Cohere's interleaved convention rotates the adjacent pair (x_2i, x_2i+1) by the angle of frequency i with the
// same formula: out_2i = x_2i cos - x_2i+1 sin, out_2i+1 = x_2i+1 cos + x_2i sin (rope_rotate on that pair).

// ---- softmax -----------------------------------------------------------------------------------------------

// Online (streaming) softmax state over a sequence of logits: m = running max, s = sum exp(x - m).
// softmax(x_j) = exp(x_j - m) / s and logsumexp = m + log(s) once every x has been pushed.
struct SoftmaxState {
  float m;
  float s;
};
LN_HD inline SoftmaxState softmax_init() { return SoftmaxState{-INFINITY, 0.f}; }

// The unnormalized weight exp(x - m) of logit x under the (running or final) max m: softmax(x) = weight / s.
// A -inf logit (masked) weighs 0, also when m is -inf (an empty state), instead of exp(NaN).
LN_HD inline float softmax_weight(float x, float m) { return x == -INFINITY ? 0.f : expf(x - m); }

// Push logit x. Returns through *rescale the factor by which anything accumulated with the old max must be
// multiplied (exp(m_old - m_new), 1 when the max did not move) and through *p the weight exp(x - m_new) of x.
// An attention row keeps acc = acc * rescale + p * v_j; at the end out = acc / s.
// -inf logits (masked) contribute 0 and leave the state unchanged; NaN propagates into s.
LN_HD inline void softmax_push(SoftmaxState* st, float x, float* rescale, float* p) {
  if (x == -INFINITY) {
    *rescale = 1.f;
    *p = 0.f;
    return;
  }
  if (x > st->m) {
    const float r = expf(st->m - x);  // exp(-inf) = 0 for the first finite logit
    st->s = st->s * r + 1.f;
    st->m = x;
    *rescale = r;
    *p = 1.f;
  } else {
    const float e = softmax_weight(x, st->m);
    st->s += e;
    *rescale = 1.f;
    *p = e;
  }
}

// Push without the attention bookkeeping.
LN_HD inline void softmax_update(SoftmaxState* st, float x) {
  float r, p;
  softmax_push(st, x, &r, &p);
}

// Merge two partial states (e.g. two threads' halves of a row). Returns the combined state; *ra and *rb receive the
// factors for the accumulators that went with a and b: acc = acc_a * ra + acc_b * rb.
LN_HD inline SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b, float* ra, float* rb) {
  if (a.m == -INFINITY && b.m == -INFINITY) {  // both empty (also avoids exp(-inf - -inf) = NaN)
    *ra = 1.f;
    *rb = 1.f;
    return SoftmaxState{-INFINITY, a.s + b.s};
  }
  const float m = a.m > b.m ? a.m : b.m;
  *ra = expf(a.m - m);
  *rb = expf(b.m - m);
  return SoftmaxState{m, a.s * *ra + b.s * *rb};
}

// log(sum exp) of everything pushed: m + log(s). -inf for an empty (or all -inf) row.
LN_HD inline float softmax_logsumexp(SoftmaxState st) {
  if (st.m == -INFINITY) return -INFINITY;
  return st.m + logf(st.s);
}

// Two-pass logsumexp terms (what ops.cpp's logsumexp does, double accumulation): given the row max m,
// lse = m + log(sum_j exp(x_j - m)). These two helpers are its per-element term and its finish.
LN_HD inline double logsumexp_term(float x, float m) { return double(expf(x - m)); }
LN_HD inline double logsumexp_finish(float m, double sum) {
  if (!isfinite(m)) return double(m);  // all -inf (or a +inf/NaN logit): nothing sensible to shift by
  return double(m) + log(sum);
}

// log p(target) = logit[target] - logsumexp(logits).
LN_HD inline float log_softmax_of(float logit, double lse) { return float(double(logit) - lse); }

// log p(target) from a row's max m and sum of logsumexp_term over its n logits. A row whose logits are all
// (numerically) 0 gives NaN, not -log(n): the final norm's input overflowed float32 and the hidden state became 0,
// which predicts nothing (src/engine/finite.ts reports it, as it reports such rows of returned logits).
LN_HD inline float target_log_softmax(float logit, float m, double sum, int64_t n) {
  if (m == 0.f && sum == double(n)) return NAN;
  return log_softmax_of(logit, logsumexp_finish(m, sum));
}

// ---- the next token (LogitsMode::Greedy; model/next_token.h) ----------------------------------------------------

// Hugging Face's RepetitionPenaltyLogitsProcessor on one logit: positive / p, otherwise * p, in double and rounded
// once to float (as src/generate/sampling.ts on a Float32Array).
LN_HD inline float repetition_penalty(float x, double p) { return float(x < 0.f ? double(x) * p : double(x) / p); }

// Whether logit a at index ia is picked over logit b at index ib (torch.argmax): the larger wins, a NaN wins over
// any number, and between equals (or two NaNs) the lower index. A total order, so a parallel reduction in any
// order picks the same index as the loop from 0.
LN_HD inline bool next_token_beats(float a, int64_t ia, float b, int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na || nb) return na && (!nb || ia < ib);
  return a > b || (a == b && ia < ib);
}

// ---- neuron statistics and interventions (CUDA site kernels; twins of model/site_pass.cpp, intervention.*) ---

// Histogram bin of x over bins + 1 ascending edges, as site_pass.cpp: bin b holds [edges[b], edges[b+1]); below
// edges[0] counts in bin 0, at or above edges[bins] (and NaN) in bin bins - 1. The search is std::upper_bound's.
LN_HD inline int64_t histogram_bin(double x, const double* edges, int64_t bins) {
  int64_t lo = 0, n = bins + 1;  // first edge > x, in [0, bins + 1]
  while (n > 0) {
    const int64_t half = n / 2;
    if (!(x < edges[lo + half])) {
      lo += half + 1;
      n -= half + 1;
    } else {
      n = half;
    }
  }
  const int64_t b = lo - 1;
  return b < 0 ? 0 : (b > bins - 1 ? bins - 1 : b);
}

// One intervention edit (model/intervention.h InterveneOp: 0 set, 1 add, 2 scale) applied to value y.
LN_HD inline float apply_edit_op(uint8_t op, float y, float v) {
  return op == 0 ? v : (op == 1 ? y + v : y * v);
}

// The q-quantile (q in [0, 1]) of n ascending values, interpolating linearly between order statistics as
// intervention.cpp's quantile (numpy.quantile's default).
LN_HD inline float quantile_sorted(const float* s, int64_t n, double q) {
  const double pos = q * double(n - 1);
  const int64_t lo = int64_t(floor(pos));
  const float a = s[lo];
  if (lo + 1 >= n) return a;
  const float b = s[lo + 1];
  return float(double(a) + (pos - double(lo)) * (double(b) - double(a)));
}

// ---- AdamW (the trainers' optimizer step) --------------------------------------------------------------------

// Float products, sums and quotients rounded one by one: on the device the _rn intrinsics, which nvcc never
// contracts into an FMA (it would otherwise fuse b * m + c * g); on the host plain operators (the project builds
// without FP contraction: no -mfma on x86, -ffp-contract=off on arm64). What lets the CUDA trainer's AdamW match
// the CPU's bit for bit.
LN_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
LN_HD inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
LN_HD inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
LN_HD inline float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
LN_HD inline float sqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return sqrtf(a);
#endif
}

// One AdamW update (torch.optim.AdamW, decoupled weight decay) of parameter *p with moments *m, *v and the
// (already clipped) gradient g. The caller computes per step, in this way: step_size = float(lr / (1 - b1^t)),
// bc2_sqrt = float(sqrt(1 - b2^t)) (both in double), decay = 1 - lr * weight_decay (float).
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  p = p decay - step_size m / (sqrt(v) / bc2_sqrt + eps)
LN_HD inline void adamw_update(float g, float b1, float b2, float eps, float step_size, float bc2_sqrt, float decay,
                               float* p, float* m, float* v) {
  const float mi = add_rn(mul_rn(b1, *m), mul_rn(sub_rn(1.f, b1), g));
  const float vi = add_rn(mul_rn(b2, *v), mul_rn(mul_rn(sub_rn(1.f, b2), g), g));
  *m = mi;
  *v = vi;
  const float pd = mul_rn(*p, decay);
  *p = sub_rn(pd, div_rn(mul_rn(step_size, mi), add_rn(div_rn(sqrt_rn(vi), bc2_sqrt), eps)));
}

// ---- counter-based random numbers (the trainer's LoRA init, dropout masks, head init) -----------------------

// A random number is a pure function of a key and an element index (splitmix64's finaliser), never the state of a
// generator: the CPU trainer (train/lora.h), the CUDA trainer's dropout kernel and the float64 test reference
// draw the same numbers for any thread count, and a resumed run draws what an uninterrupted one would.
LN_HD inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Key of one stream of random numbers: `domain` separates uses (train/lora.h RngDomain), a..d their coordinates.
LN_HD inline uint64_t rng_key(uint64_t seed, uint64_t domain, int64_t a, int64_t b, int64_t c, int64_t d) {
  uint64_t k = mix64(seed ^ (domain << 56));
  k = mix64(k ^ uint64_t(a));
  k = mix64(k ^ uint64_t(b));
  k = mix64(k ^ uint64_t(c));
  return mix64(k ^ uint64_t(d));
}

// Uniform in [0, 1) with 24 random bits (exact in float) for element i of stream `key`.
LN_HD inline float rng_uniform(uint64_t key, int64_t i) {
  return float(mix64(key ^ (uint64_t(i) * 0xD1B54A32D192ED03ull)) >> 40) * (1.0f / 16777216.0f);
}

// LoRA dropout: element (row, col) of an adapter input [M, K] is kept when this is true (probability 1 - p).
LN_HD inline bool lora_keep(uint64_t key, int64_t row, int64_t col, int64_t K, float p) {
  return rng_uniform(key, row * K + col) >= p;
}

// ---- storage loads -----------------------------------------------------------------------------------------

// Element i of a tensor stored as t, as float32 (device-callable twin of ln::load_as_f32; same conversions).
// On the host the read goes through memcpy (checkpoint pointers may be misaligned); device buffers come from
// cudaMalloc and are aligned, so the device path reads typed.
LN_HD inline float load_f32(const void* p, DType t, int64_t i) {
#if defined(__CUDA_ARCH__)
  if (t == DType::F32) return static_cast<const float*>(p)[i];
  const uint16_t h = static_cast<const uint16_t*>(p)[i];
#else
  if (t == DType::F32) {
    float f;
    std::memcpy(&f, static_cast<const char*>(p) + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const char*>(p) + 2 * i, 2);
#endif
  return t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

}  // namespace math
}  // namespace ln
