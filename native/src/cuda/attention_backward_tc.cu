// Attention backward on tensor cores for the trainer's bf16 mode (train_kernels.h attention_backward_tc): the math
// of attention_backward (p = exp(scale q.k - lse), D = dout.out, ds = p (dout.v - D) scale, dq = sum ds k,
// dk = sum ds q, dv = sum p dout) with every product an mma.sync m16n8k16 (warp_mma.cuh): bf16 operands, float32
// accumulation. q, k, v and out are the bf16 tensors the forward's tensor-core attention read and wrote (the trainer
// keeps them so); dout, p and ds are rounded to bf16 for their products, as FlashAttention-2's backward does.
// FlashAttention-2's split, nothing atomic, every output written by one block:
//   dq_tc_kernel:  one block of 4 warps per (64 query rows, head); each warp owns 16 rows and keeps their dq in
//                  registers; key tiles of 32 from the start of the first row's sequence to the last row.
//   dkv_tc_kernel: one block per (64 key rows, kv head); each warp owns 16 keys and keeps their dk, dv in registers;
//                  for each head of the group, query tiles of 32 from the key tile's first row to the end of its
//                  last row's sequence. Here S^T = K Q^T, so the keys are the fragments' rows.
// head_dim 256 (Gemma 2) differs in two ways, both compile-time (kStepRows, kOutCols); 32 / 64 / 128 are untouched:
//   - tiles of 16 rows of the other side instead of 32: with 32 the four bf16 tiles (2 x 64 + 2 x 32 rows of 528
//     bytes) would take 100.25 KiB of shared memory, past the 99 KiB a block may opt in to on every sm_80+ GPU;
//   - each dkv block computes half of dk's and dv's columns (blockIdx.z picks which half): both accumulators over
//     all 256 columns would be 256 floats per thread, more than the 255 registers there are. S^T and dP^T are still
//     products over all 256 dimensions (from the full tiles in shared memory), so the two blocks of a key tile
//     compute them twice: the price of keeping every accumulator in registers.
// Operand tiles are staged in shared memory as bf16 (q, k, v copied, dout rounded) and read with ldmatrix; a pair
// (query i, key j) counts when both rows belong to one sequence (equal seq_row0) and j <= i.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/train_kernels.h"
#include "kernels/math.h"
#include "cuda/warp_mma.cuh"

namespace ln {
namespace cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kOwn = 16 * kWarps;  // rows a block owns (queries for dq, keys for dk / dv)
// Rows of the other side per tile (keys for dq, queries for dk / dv); 16 at head_dim 256 for shared memory (above).
template <int HD>
constexpr int kStepRows = HD == 256 ? 16 : 32;
// dk / dv columns per dkv block: half at head_dim 256, where both accumulators would not fit in registers (above).
template <int HD>
constexpr int kOutCols = HD == 256 ? HD / 2 : HD;

// Shared memory: two tiles of kOwn rows, two of kStep rows (bf16, rows padded by 16 bytes: ldmatrix alignment and
// conflict-free phases), then per owned and per stepped row: lse, D and the sequence's first row.
template <int HD>
struct Layout {
  static constexpr int kStep = kStepRows<HD>;
  static constexpr int ld = HD + 8;
  static constexpr size_t own_a = 0;
  static constexpr size_t own_b = own_a + size_t(kOwn) * ld * 2;
  static constexpr size_t step_a = own_b + size_t(kOwn) * ld * 2;
  static constexpr size_t step_b = step_a + size_t(kStep) * ld * 2;
  static constexpr size_t lse = step_b + size_t(kStep) * ld * 2;  // float[kOwn] (dq: own rows; dkv: step rows)
  static constexpr size_t dd = lse + kOwn * 4;                    // float[kOwn]
  static constexpr size_t own_seq = dd + kOwn * 4;                // int64[kOwn]
  static constexpr size_t step_seq = own_seq + kOwn * 8;          // int64[kStep]
  static constexpr size_t bytes = step_seq + kStep * 8;
  static_assert(own_b % 16 == 0 && step_a % 16 == 0 && step_b % 16 == 0 && own_seq % 8 == 0, "alignment");
};

// `rows` rows of HD values (row r at src + r * ld_src) into a bf16 tile (pitch L::ld); zeros past `rows`. float32
// rows (dout) are rounded to bf16; bf16 rows (q, k, v) are copied 16 bytes at a time.
__device__ inline uint4 load8_bf16(const float* p) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  const float4 b = *reinterpret_cast<const float4*>(p + 4);
  return make_uint4(pack_bf16(a.x, a.y), pack_bf16(a.z, a.w), pack_bf16(b.x, b.y), pack_bf16(b.z, b.w));
}
__device__ inline uint4 load8_bf16(const uint16_t* p) { return *reinterpret_cast<const uint4*>(p); }

template <int HD, typename Src>
__device__ inline void stage(uint16_t* tile, int tile_rows, const Src* src, int64_t ld_src, int rows) {
  constexpr int kChunks = HD / 8;
  for (int e = threadIdx.x; e < tile_rows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = (e % kChunks) * 8;
    const uint4 out = r < rows ? load8_bf16(src + int64_t(r) * ld_src + c) : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(tile + r * (HD + 8) + c) = out;
  }
}

template <int HD>
__global__ void __launch_bounds__(kWarps * 32) dq_tc_kernel(int64_t T, int n_heads, int n_kv_heads, const uint16_t* q,
                                                            int64_t ldq, const uint16_t* k, const uint16_t* v,
                                                            int64_t ldkv, const uint16_t* out, int64_t ldo,
                                                            const float* dout, int64_t lddo, const float* lse,
                                                            const int64_t* seq_row0, float scale, float cap,
                                                            int window, float* dq, int64_t lddq, float* d_rows) {
  using L = Layout<HD>;
  constexpr int kStep = kStepRows<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem + L::own_a);
  uint16_t* Gs = reinterpret_cast<uint16_t*>(smem + L::own_b);
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem + L::step_a);
  uint16_t* Vs = reinterpret_cast<uint16_t*>(smem + L::step_b);
  float* lse_s = reinterpret_cast<float*>(smem + L::lse);
  float* D_s = reinterpret_cast<float*>(smem + L::dd);
  int64_t* q_seq = reinterpret_cast<int64_t*>(smem + L::own_seq);
  int64_t* k_seq = reinterpret_cast<int64_t*>(smem + L::step_seq);
  const int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
  const int64_t i0 = int64_t(blockIdx.x) * kOwn;
  const int ni = int(min(int64_t(kOwn), T - i0));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  stage<HD>(Qs, kOwn, q + i0 * ldq + int64_t(h) * HD, ldq, ni);
  stage<HD>(Gs, kOwn, dout + i0 * lddo + int64_t(h) * HD, lddo, ni);
  for (int ii = threadIdx.x; ii < kOwn; ii += blockDim.x) {
    lse_s[ii] = ii < ni ? lse[(i0 + ii) * n_heads + h] : 0.f;
    q_seq[ii] = ii < ni ? seq_row0[i0 + ii] : -1;
  }
  // D_i = dout_i . out_i in float32 (one warp per row, lane-strided, then the warp tree), also for the dk/dv pass.
  for (int ii = warp; ii < ni; ii += kWarps) {
    const uint16_t* o = out + (i0 + ii) * ldo + int64_t(h) * HD;
    const float* gr = dout + (i0 + ii) * lddo + int64_t(h) * HD;
    const float a = reduce::warp_dot(o, gr, HD);
    if (lane == 0) {
      D_s[ii] = a;
      d_rows[(i0 + ii) * n_heads + h] = a;
    }
  }
  float acc[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  __syncthreads();
  const int64_t key_begin = q_seq[0], key_end = i0 + ni;  // keys [key_begin, key_end)
  for (int64_t j0 = key_begin; j0 < key_end; j0 += kStep) {
    const int nj = int(min(int64_t(kStep), key_end - j0));
    __syncthreads();  // every warp is done with the previous K / V tile
    stage<HD>(Ks, kStep, k + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
    stage<HD>(Vs, kStep, v + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
    for (int jj = threadIdx.x; jj < kStep; jj += blockDim.x) k_seq[jj] = jj < nj ? seq_row0[j0 + jj] : -2;
    __syncthreads();
    float s[kStep / 8][4], dp[kStep / 8][4];
#pragma unroll
    for (int n = 0; n < kStep / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
    mma_rows_times_rows<HD, kStep>(s, Qs + warp * 16 * L::ld, L::ld, Ks, L::ld);   // S = Q K^T
    mma_rows_times_rows<HD, kStep>(dp, Gs + warp * 16 * L::ld, L::ld, Vs, L::ld);  // dP = dO V^T
#pragma unroll
    for (int n = 0; n < kStep / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ii = warp * 16 + g + 8 * (e >> 1), jj = 8 * n + 2 * t + (e & 1);
        float ds = 0.f;
        if (ii < ni && jj < nj && q_seq[ii] == k_seq[jj] && j0 + jj <= i0 + ii &&
            (window == 0 || i0 + ii - (j0 + jj) < window)) {  // rows of a sequence are consecutive positions
          float y = s[n][e] * scale, chain = 1.f;
          if (cap > 0) {  // Gemma 2's soft-capped scores (train_kernels.h attention_backward)
            y = math::softcap(y, cap);
            chain = math::softcap_grad_from_output(y, cap);
          }
          const float p = expf(y - lse_s[ii]);
          ds = p * (dp[n][e] - D_s[ii]) * chain * scale;
        }
        s[n][e] = ds;
      }
    mma_acc_times_rows<kStep, HD>(acc, s, Ks, L::ld);  // dQ += dS K
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int ii = warp * 16 + g + 8 * i;
    if (ii < ni) mma_acc_store_row<HD>(acc, i, dq + (i0 + ii) * lddq + int64_t(h) * HD);
  }
}

template <int HD>
__global__ void __launch_bounds__(kWarps * 32) dkv_tc_kernel(int64_t T, int n_heads, int n_kv_heads, const uint16_t* q,
                                                             int64_t ldq, const uint16_t* k, const uint16_t* v,
                                                             int64_t ldkv, const float* dout, int64_t lddo,
                                                             const float* lse, const float* d_rows,
                                                             const int64_t* seq_row0, const int32_t* seq_len,
                                                             float scale, float cap, int window, float* dk,
                                                             float* dv, int64_t lddkv) {
  using L = Layout<HD>;
  constexpr int kStep = kStepRows<HD>, DO = kOutCols<HD>;  // DO: the dk / dv columns of this block
  extern __shared__ __align__(128) unsigned char smem[];
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem + L::own_a);
  uint16_t* Vs = reinterpret_cast<uint16_t*>(smem + L::own_b);
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem + L::step_a);
  uint16_t* Gs = reinterpret_cast<uint16_t*>(smem + L::step_b);
  float* lse_s = reinterpret_cast<float*>(smem + L::lse);
  float* D_s = reinterpret_cast<float*>(smem + L::dd);
  int64_t* k_seq = reinterpret_cast<int64_t*>(smem + L::own_seq);
  int64_t* q_seq = reinterpret_cast<int64_t*>(smem + L::step_seq);
  const int kvh = blockIdx.y, group = n_heads / n_kv_heads;
  const int64_t j0 = int64_t(blockIdx.x) * kOwn;
  const int nj = int(min(int64_t(kOwn), T - j0));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int c0 = DO == HD ? 0 : int(blockIdx.z) * DO;  // the first of them
  stage<HD>(Ks, kOwn, k + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
  stage<HD>(Vs, kOwn, v + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
  for (int jj = threadIdx.x; jj < kOwn; jj += blockDim.x) k_seq[jj] = jj < nj ? seq_row0[j0 + jj] : -2;
  const int64_t q_end = seq_row0[j0 + nj - 1] + seq_len[j0 + nj - 1];
  float acc_k[DO / 8][4], acc_v[DO / 8][4];
#pragma unroll
  for (int n = 0; n < DO / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_k[n][e] = acc_v[n][e] = 0.f;
  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    for (int64_t i0 = j0; i0 < q_end; i0 += kStep) {
      const int ni = int(min(int64_t(kStep), q_end - i0));
      __syncthreads();  // every warp is done with the previous Q / dO tile (and K / V are staged)
      stage<HD>(Qs, kStep, q + i0 * ldq + int64_t(h) * HD, ldq, ni);
      stage<HD>(Gs, kStep, dout + i0 * lddo + int64_t(h) * HD, lddo, ni);
      for (int ii = threadIdx.x; ii < kStep; ii += blockDim.x) {
        lse_s[ii] = ii < ni ? lse[(i0 + ii) * n_heads + h] : 0.f;
        D_s[ii] = ii < ni ? d_rows[(i0 + ii) * n_heads + h] : 0.f;
        q_seq[ii] = ii < ni ? seq_row0[i0 + ii] : -1;
      }
      __syncthreads();
      float st[kStep / 8][4], dpt[kStep / 8][4];  // S^T and dP^T: this warp's 16 keys x the tile's queries
#pragma unroll
      for (int n = 0; n < kStep / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.f;
      mma_rows_times_rows<HD, kStep>(st, Ks + warp * 16 * L::ld, L::ld, Qs, L::ld);   // S^T = K Q^T
      mma_rows_times_rows<HD, kStep>(dpt, Vs + warp * 16 * L::ld, L::ld, Gs, L::ld);  // dP^T = V dO^T
#pragma unroll
      for (int n = 0; n < kStep / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int jj = warp * 16 + g + 8 * (e >> 1), ii = 8 * n + 2 * t + (e & 1);
          float p = 0.f, ds = 0.f;
          if (jj < nj && ii < ni && k_seq[jj] == q_seq[ii] && j0 + jj <= i0 + ii &&
              (window == 0 || i0 + ii - (j0 + jj) < window)) {
            float y = st[n][e] * scale, chain = 1.f;
            if (cap > 0) {
              y = math::softcap(y, cap);
              chain = math::softcap_grad_from_output(y, cap);
            }
            p = expf(y - lse_s[ii]);
            ds = p * (dpt[n][e] - D_s[ii]) * chain * scale;
          }
          st[n][e] = p;
          dpt[n][e] = ds;
        }
      mma_acc_times_rows<kStep, DO>(acc_v, st, Gs + c0, L::ld);   // dV += P^T dO (columns c0 .. c0 + DO)
      mma_acc_times_rows<kStep, DO>(acc_k, dpt, Qs + c0, L::ld);  // dK += dS^T Q
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int jj = warp * 16 + g + 8 * i;
    if (jj >= nj) continue;
    mma_acc_store_row<DO>(acc_k, i, dk + (j0 + jj) * lddkv + int64_t(kvh) * HD + c0);
    mma_acc_store_row<DO>(acc_v, i, dv + (j0 + jj) * lddkv + int64_t(kvh) * HD + c0);
  }
}

template <int HD>
void launch(int64_t T, int n_heads, int n_kv_heads, const uint16_t* q, int64_t ldq, const uint16_t* k,
            const uint16_t* v, int64_t ldkv, const uint16_t* out, int64_t ldo, const float* dout, int64_t lddo,
            const float* lse, const int64_t* seq_row0, const int32_t* seq_len, float scale, float cap, int window,
            float* dq, int64_t lddq, float* dk, float* dv, int64_t lddkv, float* d_rows, Stream stream) {
  constexpr size_t bytes = Layout<HD>::bytes;
  static_assert(bytes <= 99 * 1024, "past the least opt-in shared memory of sm_80+ GPUs");
  if (bytes > 48 * 1024) {  // head_dim 128: about 54 KiB, 256: about 84 KiB (every sm_80+ GPU allows the opt-in)
    check(cudaFuncSetAttribute(dq_tc_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
          "attention_backward_tc: shared memory (dq)");
    check(cudaFuncSetAttribute(dkv_tc_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
          "attention_backward_tc: shared memory (dk, dv)");
  }
  const unsigned tiles = unsigned((T + kOwn - 1) / kOwn);
  dq_tc_kernel<HD><<<dim3{tiles, unsigned(n_heads)}, kWarps * 32, bytes, as_stream(stream)>>>(
      T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, scale, cap, window, dq, lddq,
      d_rows);
  check_launch("attention_backward_tc (dq)");
  constexpr unsigned col_blocks = HD / kOutCols<HD>;  // 2 at head_dim 256: the halves of dk's and dv's columns
  dkv_tc_kernel<HD><<<dim3{tiles, unsigned(n_kv_heads), col_blocks}, kWarps * 32, bytes, as_stream(stream)>>>(
      T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, dout, lddo, lse, d_rows, seq_row0, seq_len, scale, cap, window,
      dk, dv, lddkv);
  check_launch("attention_backward_tc (dk, dv)");
}

}  // namespace

bool attention_backward_tc_supported(int head_dim) {
  return head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

void attention_backward_tc(int64_t T, int n_heads, int n_kv_heads, int head_dim, const uint16_t* q, int64_t ldq,
                           const uint16_t* k, const uint16_t* v, int64_t ldkv, const uint16_t* out, int64_t ldo,
                           const float* dout, int64_t lddo, const float* lse, const int64_t* seq_row0,
                           const int32_t* seq_len, float scale, float* dq, int64_t lddq, float* dk, float* dv,
                           int64_t lddkv, float* d_rows, Stream stream, int window, float cap) {
  if (T <= 0) return;
  auto fail = [](const std::string& m) { throw std::runtime_error("langneurons cuda: attention_backward_tc: " + m); };
  if (!attention_backward_tc_supported(head_dim))
    fail("head_dim must be 32, 64, 128 or 256 (got " + std::to_string(head_dim) + "); use attention_backward");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535) fail("n_heads must be a multiple of n_kv_heads");
  auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (ldq % 8 || ldkv % 8 || lddo % 4 || misaligned(q) || misaligned(k) || misaligned(v) || misaligned(dout))
    fail("q / k / v (bf16) and dout (float32) must be 16-byte aligned with rows of 16-byte multiples");
  switch (head_dim) {
    case 32:
      launch<32>(T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, seq_len, scale, cap,
                 window, dq, lddq, dk, dv, lddkv, d_rows, stream);
      break;
    case 64:
      launch<64>(T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, seq_len, scale, cap,
                 window, dq, lddq, dk, dv, lddkv, d_rows, stream);
      break;
    case 128:
      launch<128>(T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, seq_len, scale, cap,
                  window, dq, lddq, dk, dv, lddkv, d_rows, stream);
      break;
    default:
      launch<256>(T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, seq_len, scale, cap,
                  window, dq, lddq, dk, dv, lddkv, d_rows, stream);
      break;
  }
}

}  // namespace cuda
}  // namespace ln
