// Host-side API of the CUDA backend's kernels (native/src/cuda/kernels.cu, static library langneurons_cuda).
// Plain C++: no CUDA types or headers here, so the (future) CUDA model runtime, the Node binding and tests can
// include it with any C++17 compiler. Streams are passed as opaque pointers (a cudaStream_t; nullptr = the legacy
// default stream).
//
// Status: these kernels are compiled whenever nvcc is found (see docs/CUDA.md) but have never run in this
// repository's CI, which has no GPU. Their math is the shared, CPU-tested code of kernels/math.h.
//
// Conventions, identical to the CPU backend (kernels/ops.h, kernels/gemm.h):
//   - activations are row-major float32 with an explicit row stride (ld*) in elements;
//   - Linear weights are [N = out][K = in], row-major, in their stored dtype (BF16, F16 or F32);
//   - every pointer argument is a DEVICE pointer unless its name ends in _host;
//   - launchers are asynchronous on `stream`; they throw std::runtime_error (message names the kernel and the
//     CUDA error) when the launch fails. Errors raised while a kernel runs surface at the next synchronize().
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace ln {
namespace cuda {

using Stream = void*;  // cudaStream_t

// ---- devices and memory ------------------------------------------------------------------------------------

// Number of usable CUDA devices; 0 when there is no GPU, no driver, or the runtime fails (never throws).
int device_count();
// Why device_count() is 0, for the "falling back to the CPU backend" message ("" when a device is present).
const char* unavailable_reason();

void* device_alloc(size_t bytes);  // throws on failure
void device_free(void* p);         // nullptr is fine
void copy_to_device(void* dst, const void* src_host, size_t bytes, Stream stream);
void copy_to_host(void* dst_host, const void* src, size_t bytes, Stream stream);
void synchronize(Stream stream);   // waits for `stream`; throws if a kernel failed
void memset_zero(void* p, size_t bytes);  // synchronous (returns once zeroed), for tests and set-up

// ---- kernels -------------------------------------------------------------------------------------------------

// out row i = table[tokens[i]] converted to float32 (table: [vocab, hidden] stored as `dtype`), times `scale`
// when it is not 1 (Gemma's embedding scale). Token ids outside [0, vocab) produce a row of NaN (the caller
// validates ids first, as the CPU model does).
void embed_rows(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* tokens, int64_t n,
                float* out, int64_t ldo, Stream stream, float scale = 1.f);

// LlamaRMSNorm on M rows of n floats: y = w * (x * inv_rms(x)). y may alias x when ldy == ldx.
void rmsnorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                  float eps, Stream stream);

// cos/sin tables for positions [p0, p1) from float32 inv_freq[half] (math::rope_cos_sin): row p - p0 holds half
// values, as ops.cpp's rope_tables; both multiplied by attention_factor when it is not 1 (YaRN, as model.cpp).
void rope_tables(const float* inv_freq, int half, int64_t p0, int64_t p1, float* cos_out, float* sin_out,
                 Stream stream, float attention_factor = 1.f);

// rotate_half RoPE in place on T rows; row t holds n_heads heads of head_dim floats (row stride ldx) and is
// rotated by the table row pos[t] (tables indexed from position 0).
void rope_apply(int64_t T, float* x, int64_t ldx, int n_heads, int head_dim, const int32_t* pos,
                const float* cos_tab, const float* sin_tab, Stream stream);

// SwiGLU in place: g[i, j] = silu(g[i, j]) * u[i, j] for i < M, j < n.
void swiglu_rows(int64_t M, int64_t n, float* g, int64_t ldg, const float* u, int64_t ldu, Stream stream);

// x = round_bf16(x) on n contiguous floats (the bf16-compute rounding points of the CPU model).
void round_bf16(float* x, int64_t n, Stream stream);

// Y[i, n] = (accumulate ? Y[i, n] : 0) + sum_k X'[i, k] * W'[n, k], float32 accumulation, for i < M, n < N, k < K.
// W is [N, K] contiguous in `w_dtype` (BF16 is the intended case; F16/F32 work too). With bf16_compute (the CPU
// backend's Compute::BF16) X' = round_bf16(X) and W' = round_bf16(W) (a no-op for bf16 weights); otherwise X, W.
// Shared-memory tiled; no cuBLAS. M <= 65535 * 32 rows per call.
void gemm_xwt(int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx, const void* W, DType w_dtype, float* Y,
              int64_t ldy, bool bf16_compute, bool accumulate, Stream stream);

// Causal attention over packed sequences, one block per (query row, head), online softmax.
//   q:   [T, n_heads * head_dim] (row stride ldq), already RoPE'd;
//   k,v: key/value rows (row stride ldkv = n_kv_heads * head_dim for a packed batch or a cache slot);
//   query t attends to key rows key_row0[t] .. key_row0[t] + n_keys[t] - 1 (for a packed batch without cache:
//   its sequence's first row, and its position + 1), query head h reads kv head h / (n_heads / n_kv_heads);
//   out: [T, n_heads * head_dim] (row stride ldo) = softmax(q k^T * scale) v per head.
// head_dim <= 256. n_keys[t] >= 1. Family options: window > 0 keeps only each row's last `window` keys (a sliding
// window: Mistral v0.1, Gemma 2's even layers); cap > 0 soft-caps the scaled scores, cap * tanh(s / cap) (Gemma 2).
void attention_causal(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                      const float* k, const float* v, int64_t ldkv, const int64_t* key_row0, const int32_t* n_keys,
                      float scale, float* out, int64_t ldo, Stream stream, int32_t window = 0, float cap = 0.f);

// out[i] = log_softmax(logits row i)[targets[i]] for M rows of vocab logits (row stride ld): the target
// log-probabilities of scoring, with the same logsumexp as the CPU (float exp, double sum).
// A target outside [0, vocab) gives NaN.
void log_softmax_targets(int64_t M, const float* logits, int64_t ld, int64_t vocab, const int32_t* targets,
                         float* out, Stream stream);

}  // namespace cuda
}  // namespace ln
