// Tiled attention backward (train_kernels.h attention_backward_tiled): the simple kernels' math (train_kernels.cu
// attention_backward) on tiles of 32 query rows x 32 key rows held in shared memory, float32, for head_dim 64 and
// 128. FlashAttention-2's split: one block per (query tile, head) accumulates dq in registers, one block per
// (key tile, kv head) accumulates dk and dv; every output is written by one block, nothing atomic.
//
// A tile may straddle two packed sequences: query i sees key j when both rows belong to the same sequence
// (equal seq_row0) and j <= i. Sequences are packed in order, so the first row of a query tile starts the earliest
// sequence it touches and the last row of a key tile ends the latest.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/train_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

constexpr int kTile = 32;      // query rows and key rows per tile
constexpr int kThreads = 256;  // 8 warps
constexpr int kPitchPad = 1;   // row pitch head_dim + 1: the score loop reads 32 different rows per warp

// Shared memory of one block: four [32][HD + 1] row tiles (q, dout, k, v), the [32][33] p and ds tiles, and per
// row lse, D and the sequence's first row.
template <int HD>
constexpr size_t smem_bytes() {
  return sizeof(float) * (4 * kTile * (HD + kPitchPad) + 2 * kTile * (kTile + 1) + 2 * kTile) +
         sizeof(int64_t) * 2 * kTile;
}

template <int HD>
struct Smem {
  float* q;
  float* g;
  float* k;
  float* v;
  float* p;
  float* ds;
  float* lse;
  float* D;
  int64_t* q_seq;
  int64_t* k_seq;
  __device__ explicit Smem(float* base) {
    constexpr int P = HD + kPitchPad;
    q = base;
    g = q + kTile * P;
    k = g + kTile * P;
    v = k + kTile * P;
    p = v + kTile * P;
    ds = p + kTile * (kTile + 1);
    lse = ds + kTile * (kTile + 1);
    D = lse + kTile;
    q_seq = reinterpret_cast<int64_t*>(D + kTile);  // 2 * kTile floats before: 8-byte aligned
    k_seq = q_seq + kTile;
  }
};

// `rows` rows of head_dim HD from src (row r at src + r * ld) into the tile (pitch HD + 1); zeros past `rows`.
template <int HD>
__device__ inline void load_tile(float* tile, const float* src, int64_t ld, int rows) {
  for (int e = threadIdx.x; e < kTile * HD; e += blockDim.x) {
    const int r = e / HD, d = e % HD;
    tile[r * (HD + kPitchPad) + d] = r < rows ? src[int64_t(r) * ld + d] : 0.f;
  }
}

// p and ds of the 32 x 32 pairs (query ii, key jj) of the current tiles:
//   p = exp(scale q.k - lse), ds = p (dout.v - D) scale, both 0 for pairs that do not attend. With cap > 0
//   (Gemma 2) the score is y = cap tanh(scale q.k / cap): p = exp(y - lse), ds gets the factor 1 - (y / cap)^2.
template <int HD>
__device__ inline void scores(const Smem<HD>& s, int64_t i0, int ni, int64_t j0, int nj, float scale, float cap,
                              int window) {
  constexpr int P = HD + kPitchPad;
  for (int e = threadIdx.x; e < kTile * kTile; e += blockDim.x) {
    const int ii = e / kTile, jj = e % kTile;
    float p = 0.f, ds = 0.f;
    if (ii < ni && jj < nj && s.q_seq[ii] == s.k_seq[jj] && j0 + jj <= i0 + ii &&
        (window == 0 || i0 + ii - (j0 + jj) < window)) {  // rows of a sequence are consecutive positions
      const float* qr = s.q + ii * P;
      const float* gr = s.g + ii * P;
      const float* kr = s.k + jj * P;
      const float* vr = s.v + jj * P;
      float sc = 0.f, dp = 0.f;
#pragma unroll 8
      for (int d = 0; d < HD; ++d) {
        sc += qr[d] * kr[d];
        dp += gr[d] * vr[d];
      }
      float y = sc * scale, chain = 1.f;
      if (cap > 0) {
        y = math::softcap(y, cap);
        chain = math::softcap_grad_from_output(y, cap);
      }
      p = expf(y - s.lse[ii]);
      ds = p * (dp - s.D[ii]) * chain * scale;
    }
    s.p[ii * (kTile + 1) + jj] = p;
    s.ds[ii * (kTile + 1) + jj] = ds;
  }
}

// One block per (query tile, head): D of its rows (written to d_rows for the dk/dv pass), then dq over the key
// tiles from the start of its first row's sequence to its last row.
template <int HD>
__global__ void __launch_bounds__(kThreads) dq_tiled_kernel(int64_t T, int n_heads, int n_kv_heads, const float* q,
                                                            int64_t ldq, const float* k, const float* v,
                                                            int64_t ldkv, const float* out, int64_t ldo,
                                                            const float* dout, int64_t lddo, const float* lse,
                                                            const int64_t* seq_row0, float scale, float cap,
                                                            int window, float* dq, int64_t lddq, float* d_rows) {
  extern __shared__ __align__(16) float smem[];
  const Smem<HD> s(smem);
  constexpr int P = HD + kPitchPad, kRowsPerPass = kThreads / HD, R = kTile / kRowsPerPass;
  const int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
  const int64_t i0 = int64_t(blockIdx.x) * kTile;
  const int ni = int(min(int64_t(kTile), T - i0));
  load_tile<HD>(s.q, q + i0 * ldq + int64_t(h) * HD, ldq, ni);
  load_tile<HD>(s.g, dout + i0 * lddo + int64_t(h) * HD, lddo, ni);
  for (int ii = threadIdx.x; ii < kTile; ii += blockDim.x) {
    s.lse[ii] = ii < ni ? lse[(i0 + ii) * n_heads + h] : 0.f;
    s.q_seq[ii] = ii < ni ? seq_row0[i0 + ii] : -1;
  }
  // D_i = dout_i . out_i, one warp per row, as train_kernels.cu's D-rows kernel (lane-strided, then the warp tree).
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int ii = warp; ii < ni; ii += kThreads / 32) {
    const float* o = out + (i0 + ii) * ldo + int64_t(h) * HD;
    const float* gr = dout + (i0 + ii) * lddo + int64_t(h) * HD;
    const float a = reduce::warp_dot(o, gr, HD);
    if (lane == 0) {
      s.D[ii] = a;
      d_rows[(i0 + ii) * n_heads + h] = a;
    }
  }
  __syncthreads();
  const int d = threadIdx.x % HD, r0 = threadIdx.x / HD;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  const int64_t key_begin = s.q_seq[0], key_end = i0 + ni;  // keys [key_begin, key_end)
  for (int64_t j0 = key_begin; j0 < key_end; j0 += kTile) {
    const int nj = int(min(int64_t(kTile), key_end - j0));
    load_tile<HD>(s.k, k + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
    load_tile<HD>(s.v, v + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
    for (int jj = threadIdx.x; jj < kTile; jj += blockDim.x) s.k_seq[jj] = jj < nj ? seq_row0[j0 + jj] : -2;
    __syncthreads();
    scores<HD>(s, i0, ni, j0, nj, scale, cap, window);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int ii = r0 + r * kRowsPerPass;
      float a = acc[r];
      for (int jj = 0; jj < nj; ++jj) a += s.ds[ii * (kTile + 1) + jj] * s.k[jj * P + d];
      acc[r] = a;
    }
    __syncthreads();  // k, v, ds are rewritten by the next key tile
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int ii = r0 + r * kRowsPerPass;
    if (ii < ni) dq[(i0 + ii) * lddq + int64_t(h) * HD + d] = acc[r];
  }
}

// One block per (key tile, kv head): dk and dv over the heads of the group and the query tiles from the key tile's
// first row to the end of its last row's sequence. Needs d_rows from dq_tiled_kernel.
template <int HD>
__global__ void __launch_bounds__(kThreads) dkv_tiled_kernel(int64_t T, int n_heads, int n_kv_heads, const float* q,
                                                             int64_t ldq, const float* k, const float* v,
                                                             int64_t ldkv, const float* dout, int64_t lddo,
                                                             const float* lse, const float* d_rows,
                                                             const int64_t* seq_row0, const int32_t* seq_len,
                                                             float scale, float cap, int window, float* dk,
                                                             float* dv, int64_t lddkv) {
  extern __shared__ __align__(16) float smem[];
  const Smem<HD> s(smem);
  constexpr int P = HD + kPitchPad, kRowsPerPass = kThreads / HD, R = kTile / kRowsPerPass;
  const int kvh = blockIdx.y, group = n_heads / n_kv_heads;
  const int64_t j0 = int64_t(blockIdx.x) * kTile;
  const int nj = int(min(int64_t(kTile), T - j0));
  load_tile<HD>(s.k, k + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
  load_tile<HD>(s.v, v + j0 * ldkv + int64_t(kvh) * HD, ldkv, nj);
  for (int jj = threadIdx.x; jj < kTile; jj += blockDim.x) s.k_seq[jj] = jj < nj ? seq_row0[j0 + jj] : -2;
  const int64_t q_end = seq_row0[j0 + nj - 1] + seq_len[j0 + nj - 1];
  const int d = threadIdx.x % HD, r0 = threadIdx.x / HD;
  float acc_k[R], acc_v[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc_k[r] = acc_v[r] = 0.f;
  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    for (int64_t i0 = j0; i0 < q_end; i0 += kTile) {
      const int ni = int(min(int64_t(kTile), q_end - i0));
      load_tile<HD>(s.q, q + i0 * ldq + int64_t(h) * HD, ldq, ni);
      load_tile<HD>(s.g, dout + i0 * lddo + int64_t(h) * HD, lddo, ni);
      for (int ii = threadIdx.x; ii < kTile; ii += blockDim.x) {
        s.lse[ii] = ii < ni ? lse[(i0 + ii) * n_heads + h] : 0.f;
        s.D[ii] = ii < ni ? d_rows[(i0 + ii) * n_heads + h] : 0.f;
        s.q_seq[ii] = ii < ni ? seq_row0[i0 + ii] : -1;
      }
      __syncthreads();
      scores<HD>(s, i0, ni, j0, nj, scale, cap, window);
      __syncthreads();
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int jj = r0 + r * kRowsPerPass;
        float a = acc_k[r], b = acc_v[r];
        for (int ii = 0; ii < ni; ++ii) {
          a += s.ds[ii * (kTile + 1) + jj] * s.q[ii * P + d];
          b += s.p[ii * (kTile + 1) + jj] * s.g[ii * P + d];
        }
        acc_k[r] = a;
        acc_v[r] = b;
      }
      __syncthreads();  // q, dout, p, ds are rewritten by the next query tile
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int jj = r0 + r * kRowsPerPass;
    if (jj < nj) {
      dk[(j0 + jj) * lddkv + int64_t(kvh) * HD + d] = acc_k[r];
      dv[(j0 + jj) * lddkv + int64_t(kvh) * HD + d] = acc_v[r];
    }
  }
}

template <int HD>
void launch(int64_t T, int n_heads, int n_kv_heads, const float* q, int64_t ldq, const float* k, const float* v,
            int64_t ldkv, const float* out, int64_t ldo, const float* dout, int64_t lddo, const float* lse,
            const int64_t* seq_row0, const int32_t* seq_len, float scale, float cap, int window, float* dq,
            int64_t lddq, float* dk, float* dv, int64_t lddkv, float* d_rows, Stream stream) {
  constexpr size_t bytes = smem_bytes<HD>();
  // Above 48 KiB a block must opt in (head_dim 128: about 75 KiB; every GPU CUDA 13 targets allows it).
  check(cudaFuncSetAttribute(dq_tiled_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
        "attention_backward_tiled: shared memory (dq)");
  check(cudaFuncSetAttribute(dkv_tiled_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
        "attention_backward_tiled: shared memory (dk, dv)");
  const unsigned tiles = unsigned((T + kTile - 1) / kTile);
  dq_tiled_kernel<HD><<<dim3{tiles, unsigned(n_heads)}, kThreads, bytes, as_stream(stream)>>>(
      T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, scale, cap, window, dq, lddq,
      d_rows);
  check_launch("attention_backward_tiled (dq)");
  dkv_tiled_kernel<HD><<<dim3{tiles, unsigned(n_kv_heads)}, kThreads, bytes, as_stream(stream)>>>(
      T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, dout, lddo, lse, d_rows, seq_row0, seq_len, scale, cap, window,
      dk, dv, lddkv);
  check_launch("attention_backward_tiled (dk, dv)");
}

}  // namespace

bool attention_backward_tiled_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

void attention_backward_tiled(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                              const float* k, const float* v, int64_t ldkv, const float* out, int64_t ldo,
                              const float* dout, int64_t lddo, const float* lse, const int64_t* seq_row0,
                              const int32_t* seq_len, float scale, float* dq, int64_t lddq, float* dk, float* dv,
                              int64_t lddkv, float* d_rows, Stream stream, int window, float cap) {
  if (T <= 0) return;
  if (!attention_backward_tiled_supported(head_dim))
    throw std::runtime_error("langneurons cuda: attention_backward_tiled: head_dim must be 64 or 128 (got " +
                             std::to_string(head_dim) + "); use attention_backward");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535)
    throw std::runtime_error("langneurons cuda: attention_backward_tiled: n_heads must be a multiple of n_kv_heads");
  if (head_dim == 64)
    launch<64>(T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, seq_len, scale, cap,
               window, dq, lddq, dk, dv, lddkv, d_rows, stream);
  else
    launch<128>(T, n_heads, n_kv_heads, q, ldq, k, v, ldkv, out, ldo, dout, lddo, lse, seq_row0, seq_len, scale,
                cap, window, dq, lddq, dk, dv, lddkv, d_rows, stream);
}

}  // namespace cuda
}  // namespace ln
