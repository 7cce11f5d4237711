// Causal GQA attention on tensor cores for the bf16 mode (runtime_kernels.h flash_attention_bf16).
//
// Structure (flash-attention style, kept simple enough to review): one block of 4 warps per (tile of 64 query
// rows of one sequence, query head). Each warp owns 16 query rows. Keys are visited in tiles of 64: K and V
// tiles are staged in shared memory, S = Q K^T is one 16 x 64 WMMA product per warp (bf16 inputs, float32
// accumulation), written to the warp's shared scratch; each pair of lanes owns one query row (32 keys each) and
// runs the online softmax of kernels/math.h on it (softmax_weight for the tile's probabilities, softmax_merge to
// fold the tile into the row's running state and get the rescale factors); P (bf16) V is a second WMMA product,
// and the lane's half of the output row is rescaled and accumulated in registers. No T x T buffer exists.
// Rounding relative to the exact kernel: P is rounded to bf16 for the P V product (as FlashAttention does).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <stdexcept>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/runtime_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;


constexpr int kKeys = 64;   // keys per tile
constexpr int kWarps = 4;   // 16 query rows each: kFlashRows = 64

template <int HD>
struct Layout {
  static constexpr int ldq = HD + 8;  // bf16 rows padded by 16 bytes (bank spread; keeps WMMA's 32-byte alignment)
  static constexpr int ldk = HD + 8;
  static constexpr int ldv = HD + 8;
  static constexpr int lds = (HD > kKeys ? HD : kKeys) + 4;  // float32 scratch: S (16 x 64), then P V (16 x HD)
  static constexpr int ldp = kKeys + 8;
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_off + size_t(kFlashRows) * ldq * 2;
  static constexpr size_t v_off = k_off + size_t(kKeys) * ldk * 2;
  static constexpr size_t s_off = v_off + size_t(kKeys) * ldv * 2;
  static constexpr size_t p_off = s_off + size_t(kWarps) * 16 * lds * 4;
  static constexpr size_t bytes = p_off + size_t(kWarps) * 16 * ldp * 2;
  static_assert(k_off % 128 == 0 && v_off % 128 == 0 && s_off % 128 == 0 && p_off % 128 == 0, "region alignment");
  static_assert((16 * lds * 4) % 32 == 0 && (16 * ldp * 2) % 32 == 0, "per-warp regions 32-byte aligned");
};

template <int HD>
__global__ void __launch_bounds__(kWarps * 32) flash_kernel(const AttnTile* tiles, int group, const bf16* q,
                                                            int64_t ldq_g, const bf16* k, const bf16* v,
                                                            int64_t ldkv, float scale, uint16_t* out, int64_t ldo) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // bf16 WMMA needs sm_80+ (the build targets 80 and 90)
#else
  using L = Layout<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem + L::q_off);
  bf16* Ks = reinterpret_cast<bf16*>(smem + L::k_off);
  bf16* Vs = reinterpret_cast<bf16*>(smem + L::v_off);
  const AttnTile tile = tiles[blockIdx.x];
  const int h = blockIdx.y, kvh = h / group;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float* S = reinterpret_cast<float*>(smem + L::s_off) + warp * 16 * L::lds;
  bf16* P = reinterpret_cast<bf16*>(smem + L::p_off) + warp * 16 * L::ldp;
  constexpr int kChunks = HD / 8;  // 16-byte chunks per row

  // Q tile (rows past n_rows are zero).
  for (int e = tid; e < kFlashRows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = (e % kChunks) * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r < tile.n_rows)
      val = *reinterpret_cast<const uint4*>(q + (tile.q_row0 + r) * ldq_g + int64_t(h) * HD + c);
    *reinterpret_cast<uint4*>(Qs + r * L::ldq + c) = val;
  }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qf[HD / 16];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * L::ldq + kk * 16, L::ldq);

  // This lane's query row (a pair of lanes per row) and its half of the keys / output columns.
  const int r = lane >> 1, half = lane & 1;
  const int row = warp * 16 + r;
  const bool row_valid = row < tile.n_rows;
  const int row_keys = row_valid ? tile.nkeys0 + row : 0;
  const int kmax = tile.nkeys0 + tile.n_rows - 1;  // keys seen by the tile's last row
  float o[HD / 2];
#pragma unroll
  for (int c = 0; c < HD / 2; ++c) o[c] = 0.f;
  math::SoftmaxState run = math::softmax_init();

  for (int j0 = 0; j0 < kmax; j0 += kKeys) {
    __syncthreads();  // every warp is done with the previous K / V tile
    for (int e = tid; e < kKeys * kChunks; e += blockDim.x) {
      const int rr = e / kChunks, c = (e % kChunks) * 8;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);  // zero past the last key: 0 * garbage
      if (j0 + rr < kmax) {                                            // could be NaN in P V
        const int64_t off = (tile.key_row0 + j0 + rr) * ldkv + int64_t(kvh) * HD + c;
        kv = *reinterpret_cast<const uint4*>(k + off);
        vv = *reinterpret_cast<const uint4*>(v + off);
      }
      *reinterpret_cast<uint4*>(Ks + rr * L::ldk + c) = kv;
      *reinterpret_cast<uint4*>(Vs + rr * L::ldv + c) = vv;
    }
    __syncthreads();

    // S = Q K^T (16 x 64 per warp). K is [key][d] row-major = K^T column-major.
#pragma unroll
    for (int nb = 0; nb < kKeys / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + nb * 16 * L::ldk + kk * 16, L::ldk);
        wmma::mma_sync(acc, qf[kk], kf, acc);
      }
      wmma::store_matrix_sync(S + nb * 16, acc, L::lds, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of this lane's 32 keys; the pair's max and sum through one shuffle each (a + b == b + a, so
    // both lanes hold identical states).
    float sc[kKeys / 2];
    float mt = -INFINITY;
#pragma unroll
    for (int c = 0; c < kKeys / 2; ++c) {
      const int col = half * (kKeys / 2) + c;
      const float x = (j0 + col < row_keys) ? S[r * L::lds + col] * scale : -INFINITY;
      sc[c] = x;
      mt = fmaxf(mt, x);
    }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    float st = 0.f;
#pragma unroll
    for (int c = 0; c < kKeys / 2; ++c) {
      const float p = math::softmax_weight(sc[c], mt);
      st += p;
      P[r * L::ldp + half * (kKeys / 2) + c] = __float2bfloat16_rn(p);
    }
    st += __shfl_xor_sync(0xffffffffu, st, 1);
    float ra, rb;
    run = math::softmax_merge(run, math::SoftmaxState{mt, st}, &ra, &rb);
    __syncwarp();  // S read and P written by every lane

    // P V (16 x HD per warp) into the scratch, then o = o * ra + (P V) * rb for the lane's half row.
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pf[kKeys / 16];
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) wmma::load_matrix_sync(pf[kk], P + kk * 16, L::ldp);
#pragma unroll
    for (int nb = 0; nb < HD / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vf;
        wmma::load_matrix_sync(vf, Vs + kk * 16 * L::ldv + nb * 16, L::ldv);
        wmma::mma_sync(acc, pf[kk], vf, acc);
      }
      wmma::store_matrix_sync(S + nb * 16, acc, L::lds, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < HD / 2; ++c) o[c] = o[c] * ra + S[r * L::lds + half * (HD / 2) + c] * rb;
    __syncwarp();  // the scratch is rewritten by the next tile's S
  }

  if (row_valid) {
    const float inv = 1.f / run.s;  // as the CPU's attend_row: multiply by the reciprocal of the sum
    uint16_t* orow = out + (tile.q_row0 + row) * ldo + int64_t(h) * HD + half * (HD / 2);
#pragma unroll
    for (int c = 0; c < HD / 2; ++c) orow[c] = ln::f32_to_bf16(o[c] * inv);
  }
#endif
}

template <int HD>
void launch(const AttnTile* tiles, int64_t n_tiles, int n_heads, int group, const uint16_t* q, int64_t ldq,
            const uint16_t* k, const uint16_t* v, int64_t ldkv, float scale, uint16_t* out, int64_t ldo,
            cudaStream_t stream) {
  using L = Layout<HD>;
  // The shared-memory opt-in is per kernel and device; setting it at every launch is cheap and race-free.
  check(cudaFuncSetAttribute(flash_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(L::bytes)),
        "flash_attention_bf16: shared memory opt-in");
  const dim3 grid{unsigned(n_tiles), unsigned(n_heads), 1u};
  flash_kernel<HD><<<grid, kWarps * 32, L::bytes, stream>>>(tiles, group, reinterpret_cast<const bf16*>(q), ldq,
                                                          reinterpret_cast<const bf16*>(k),
                                                          reinterpret_cast<const bf16*>(v), ldkv, scale, out, ldo);
  check(cudaGetLastError(), "flash_attention_bf16");
}

}  // namespace

bool flash_attention_supported(int head_dim) { return head_dim == 32 || head_dim == 64 || head_dim == 128; }

void flash_attention_bf16(const AttnTile* tiles, int64_t n_tiles, int n_heads, int n_kv_heads, int head_dim,
                          const uint16_t* q, int64_t ldq, const uint16_t* k, const uint16_t* v, int64_t ldkv,
                          float scale, uint16_t* out, int64_t ldo, Stream stream) {
  if (n_tiles <= 0) return;
  auto fail = [](const std::string& m) { throw std::runtime_error("langneurons cuda: flash_attention_bf16: " + m); };
  if (!flash_attention_supported(head_dim)) fail("head_dim " + std::to_string(head_dim) + " not supported (32, 64, 128)");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535) fail("n_heads must be a multiple of n_kv_heads");
  if (n_tiles > 2147483647) fail("too many tiles");
  // 16-byte vector loads of q / k / v rows.
  auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (ldq % 8 || ldkv % 8 || misaligned(q) || misaligned(k) || misaligned(v))
    fail("q / k / v must be 16-byte aligned with row strides that are multiples of 8");
  const int group = n_heads / n_kv_heads;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 32: launch<32>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, s); break;
    case 64: launch<64>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, s); break;
    default: launch<128>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, s); break;
  }
}

}  // namespace cuda
}  // namespace ln
