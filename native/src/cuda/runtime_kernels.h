// Host API of the CUDA runtime's own kernels (runtime_kernels.cu, flash_attention.cu, site_kernels.cu) and of
// the device helpers it needs (streams, events, device properties), beyond cuda_backend.h. Plain C++17: no CUDA
// headers. Same conventions as cuda_backend.h: device pointers unless the name ends in _host; bf16 values are
// uint16_t bit patterns (core/dtype.h f32_to_bf16 / bf16_to_f32); launchers are asynchronous on `stream` and
// throw std::runtime_error naming the kernel when a launch fails.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/cuda_backend.h"
#include "model/next_token.h"

namespace ln {
namespace cuda {

// ---- devices, streams, events, memory ------------------------------------------------------------------------

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;       // compute capability
  int64_t total_bytes = 0;
  int sm_count = 0;
  int64_t smem_optin_bytes = 0;   // largest dynamic shared memory a block may opt into
};
void set_device(int index);                 // throws
DeviceInfo device_info(int index);          // throws
void mem_get_info(int64_t* free_bytes, int64_t* total_bytes);  // current device; throws
Stream stream_create();                     // a non-blocking stream; throws
void stream_destroy(Stream s);
void* host_alloc_pinned(size_t bytes);      // page-locked host memory; throws
void host_free_pinned(void* p);
void memset_async(void* p, int value, size_t bytes, Stream stream);
void copy_device(void* dst, const void* src, size_t bytes, Stream stream);  // device to device
using Event = void*;
Event event_create();
void event_destroy(Event e);
void event_record(Event e, Stream s);
float event_elapsed_ms(Event start, Event end);  // synchronizes on `end`
void event_synchronize(Event e);                   // waits until the work before the event is done

// ---- element-wise and row kernels ----------------------------------------------------------------------------

// dst[i] = f32_to_bf16(src[i]) (round to nearest even, as core/dtype.h) for a tensor stored as t.
void convert_to_bf16(const void* src, DType t, int64_t n, uint16_t* dst, Stream stream);
// dst[i] = src[i] as float32 (exact for BF16/F16/F32).
void convert_to_f32(const void* src, DType t, int64_t n, float* dst, Stream stream);
// y[i, j] = bf16(x[i, j]) for M rows of n (the GEMM inputs of the bf16 mode).
void f32_to_bf16_rows(int64_t M, int64_t n, const float* x, int64_t ldx, uint16_t* y, int64_t ldy, Stream stream);
// y[i, j] += x[i, j] (the residual adds).
void add_rows(int64_t M, int64_t n, float* y, int64_t ldy, const float* x, int64_t ldx, Stream stream);
// y[i, j] = maybe_round_bf16(y[i, j] + bias[j]) (bias may be null): the q/k/v post-projection step.
void bias_round_rows(int64_t M, int64_t n, float* y, int64_t ldy, const float* bias, bool round, Stream stream);
// y[i, j] = x[i, j] (row-strided copy, e.g. a capture).
void copy_rows_f32(int64_t M, int64_t n, const float* x, int64_t ldx, float* y, int64_t ldy, Stream stream);

// Y[M, N] = (accumulate ? Y : 0) + X[M, K] W[N, K]^T, X and W both bf16 (bf16) or both float32; one thread per
// output, float32 accumulation in k order. The GEMM of last resort for shapes cuBLASLt offers no algorithm for
// (tiny models with unaligned rows); cuda::Gemm switches to it by itself.
void gemm_simple(int64_t M, int64_t N, int64_t K, const void* X, int64_t ldx, const void* W, int64_t ldw, bool bf16,
                 float* Y, int64_t ldy, bool accumulate, Stream stream);

// RMSNorm of M rows (row i of the output is input row rows[i], or i when rows is null), written as float32
// or, with y_bf16, as bf16 (the same float32 result rounded: the CPU rounds it inside the next GEMM).
void rmsnorm_rows_ex(int64_t M, const float* x, int64_t ldx, const int64_t* rows, const float* w, void* y,
                     bool y_bf16, int64_t ldy, int64_t n, float eps, Stream stream);
// The same with the model's norm: layer_norm = Cohere's LayerNorm (ops.h layernorm: mean-centred, weight, no
// bias), else RMSNorm (Gemma's (1 + w) form is an RMSNorm whose weights hold 1 + w). y may alias x without rows
// (each block reads and writes its own row); with rows it may not (a block could overwrite a row another block
// has still to read).
void norm_rows_ex(int64_t M, const float* x, int64_t ldx, const int64_t* rows, const float* w, void* y, bool y_bf16,
                  int64_t ldy, int64_t n, float eps, bool layer_norm, Stream stream);
// Qwen3's q/k norms: RMSNorm over each head_dim slice of the q heads (weights q_norm) and of the k heads that
// follow them (k_norm) in T rows of qkv (row stride ld), in place.
void head_rmsnorm(int64_t T, float* qkv, int64_t ld, int n_heads, int n_kv_heads, int head_dim, const float* q_norm,
                  const float* k_norm, float eps, Stream stream);
// logits = softcap(logits * scale, cap) on M rows of n (row stride ld); no soft-capping when cap == 0 (Cohere's
// logit_scale, Gemma 2's final_logit_softcapping; model.cpp finish_logits). Nothing when scale == 1 and cap == 0.
void finish_logits(int64_t M, int64_t n, float* logits, int64_t ld, float scale, float cap, Stream stream);

// RoPE of the projected q and k (qkv row t: q heads, then k heads, then v heads, row stride ld) at position
// pos[t]; writes q to q_out row t (stride ldq) and k, v to k_out / v_out row kv_row[t] (stride ldkv: the batch's
// own rows, or a cache slot's). Each value first gets the post-projection step bias_round_rows would apply
// (+ bias[col] when bias is given, round_bf16 when round_pre) unless that ran already (pass null / false).
// bf16_out: outputs are bf16 (q and k rounded after RoPE, as the CPU's bf16 mode; v is bf16-valued), else f32.
// interleaved: Cohere's RoPE on the pairs (2i, 2i + 1) of a head instead of (i, i + head_dim / 2).
void rope_qkv(int64_t T, const float* qkv, int64_t ld, const float* bias, bool round_pre, int n_heads, int n_kv_heads,
              int head_dim, const int32_t* pos, const float* cos_tab, const float* sin_tab, void* q_out, int64_t ldq,
              void* k_out, void* v_out, int64_t ldkv, const int64_t* kv_row, bool bf16_out, Stream stream,
              bool interleaved = false);

// attention_causal (cuda_backend.h) on bf16 inputs with a bf16 output (round_bf16 of the float32 result): the
// exact reference path of the bf16 mode for head sizes the tensor-core kernel does not take.
// window and cap as attention_causal's.
void attention_causal_bf16(int64_t T, int n_heads, int n_kv_heads, int head_dim, const uint16_t* q, int64_t ldq,
                           const uint16_t* k, const uint16_t* v, int64_t ldkv, const int64_t* key_row0,
                           const int32_t* n_keys, float scale, uint16_t* out, int64_t ldo, Stream stream,
                           int32_t window = 0, float cap = 0.f);

// ---- the next token (next_token.cu; LogitsMode::Greedy) -------------------------------------------------------

// Row r (of n_rows, stride ld) gets math::repetition_penalty(x, penalty) on its logits ids[offsets[r] ..
// offsets[r + 1]), which must be distinct within the row (plan_penalty_ids). Nothing when penalty == 1.
void penalize_logits(int64_t n_rows, float* logits, int64_t ld, double penalty, const int32_t* ids,
                     const int64_t* offsets, Stream stream);
// out[r] = row r's pick and checks (model/next_token.h), as pick_next_token on the host (V < 2^31).
void pick_next_tokens(int64_t n_rows, const float* logits, int64_t ld, int64_t V, NextToken* out, Stream stream);

// ---- tensor-core attention (flash_attention.cu) --------------------------------------------------------------

// A tile of up to kFlashRows consecutive query rows of one sequence: batch rows [q_row0, q_row0 + n_rows); row i
// attends to keys key_row0 .. key_row0 + nkeys0 + i - 1 (causal: nkeys0 = position of the first row + 1).
struct AttnTile {
  int64_t q_row0;
  int64_t key_row0;
  int32_t n_rows;
  int32_t nkeys0;
};
constexpr int kFlashRows = 64;
bool flash_attention_supported(int head_dim);  // 32, 64, 128, 256
// Causal GQA attention over bf16 q / k / v (see AttnTile), tiles of 64 queries x 64 keys (32 keys at head_dim 256,
// whose Q tile stays in shared memory) on tensor cores
// (mma.sync m16n8k16 bf16, float32 accumulation; sm_80+), online softmax in float32 (math.h), no T x T buffer.
// out (bf16) = round_bf16(softmax(q k^T * scale) v). head_dim must be flash_attention_supported; q / k / v
// 16-byte aligned with row strides (elements) that are multiples of 8. With lse (the trainer's bf16 forward),
// also each row's log-sum-exp of the scaled logits: lse[row * n_heads + head]. window and cap as
// attention_causal's (cuda_backend.h): a row sees only its last `window` keys; scores soft-capped when cap > 0.
void flash_attention_bf16(const AttnTile* tiles, int64_t n_tiles, int n_heads, int n_kv_heads, int head_dim,
                          const uint16_t* q, int64_t ldq, const uint16_t* k, const uint16_t* v, int64_t ldkv,
                          float scale, uint16_t* out, int64_t ldo, float* lse, Stream stream, int32_t window = 0,
                          float cap = 0.f);

}  // namespace cuda
}  // namespace ln
