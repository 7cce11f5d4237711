// Causal GQA attention on tensor cores for the bf16 mode (runtime_kernels.h flash_attention_bf16).
//
// Structure (FlashAttention-2 style, kept simple enough to review): one block of 4 warps per (tile of 64 query
// rows of one sequence, query head); each warp owns 16 query rows, whose Q fragments stay in registers. Keys are
// visited in tiles of 64: the K and V tile is staged in shared memory (row-major, as in global memory), then each
// warp computes S = Q K^T (16 x 64) with mma.sync m16n8k16 into registers (warp_mma.cuh gives the layout: a lane
// holds rows g and g + 8, columns 2t, 2t+1 of each 8-key block), masks and scales it, and runs the online
// softmax of kernels/math.h per row: the tile's max over the row's four lanes (two shuffles), the weights
// exp(x - max) (softmax_weight), their sum, and softmax_merge into the row's running state, which gives the
// factors for the old output (ra) and the tile's weights (rb). The output accumulators (16 x head_dim per warp,
// registers) are multiplied by ra, P = bf16(weight * rb) is already in the A-fragment layout of the next product,
// and O += P V reads V through ldmatrix.trans. No T x T buffer and no shared-memory round trip of S, P or O.
// Rounding relative to the exact kernel: P is rounded to bf16 for the P V product (as FlashAttention does).
// Family options: a sliding window (each row sees only its last `window` keys: the key loop starts at the first
// row's first key, and the mask also drops keys before a row's own first) and Gemma 2's soft-capping of the
// scaled scores (cap * tanh(s / cap), before the mask, as transformers).
// head_dim 256 (Gemma 2): Q's fragments (64 registers) and the output accumulators (128) would not fit in registers
// together with S, so, as FlashAttention-2 does for large head dims, Q's tile keeps a shared-memory region of its own
// and each warp reloads its fragments through ldmatrix for every key tile, and the key tiles are 32 keys (S is
// 16 x 32 per warp: 16 registers). The output stays in registers. Shared memory: Q 64 x 264, K and V 32 x 264 bf16
// = 66 KiB, above the default 48 KiB, so the launch opts in (every sm_80+ GPU allows at least 99 KiB).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/runtime_kernels.h"
#include "cuda/warp_mma.cuh"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

constexpr int kWarps = 4;   // 16 query rows each: kFlashRows = 64
static_assert(kFlashRows == kWarps * 16, "one warp per 16 query rows");

template <int HD>
struct Layout {
  // head_dim up to 128: Q's fragments live in registers for the whole key loop, so Q's tile is staged in the K
  // tile's place (keys == kFlashRows). head_dim 256: Q has a region of its own, reread per key tile (see above).
  static constexpr bool q_own = HD > 128;
  static constexpr int keys = q_own ? 32 : 64;  // keys per tile
  // bf16 rows padded by 16 bytes: 16-byte aligned rows for ldmatrix, and the 8 rows of one 8 x 8 matrix start 4
  // banks apart, so an ldmatrix phase touches all 32 banks once.
  static constexpr int ld = HD + 8;
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_own ? size_t(kFlashRows) * ld * 2 : 0;
  static constexpr size_t v_off = k_off + size_t(keys) * ld * 2;
  static constexpr size_t bytes = v_off + size_t(keys) * ld * 2;
  static_assert(q_own || keys == kFlashRows, "the Q tile is staged in the K tile's place");
  static_assert((ld * 2) % 16 == 0 && k_off % 128 == 0 && v_off % 128 == 0,
                "16-byte aligned rows, 128-byte aligned tiles");
};

template <int HD>
__global__ void __launch_bounds__(kWarps * 32) flash_kernel(const AttnTile* tiles, int group, const uint16_t* q,
                                                            int64_t ldq_g, const uint16_t* k, const uint16_t* v,
                                                            int64_t ldkv, float scale, uint16_t* out, int64_t ldo,
                                                            float* lse, int window, float cap) {
  using L = Layout<HD>;
  constexpr int ld = L::ld, kKeys = L::keys;
  extern __shared__ __align__(128) unsigned char smem[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem + L::q_off);
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem + L::k_off);
  uint16_t* Vs = reinterpret_cast<uint16_t*>(smem + L::v_off);
  const AttnTile tile = tiles[blockIdx.x];
  const int h = blockIdx.y, kvh = h / group;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  constexpr int kChunks = HD / 8;  // 16-byte chunks per row

  // The Q tile (rows past n_rows are zero), staged where the K tiles go (or in its own region), then, up to
  // head_dim 128, this warp's A fragments. With its own region, the barrier after the first K / V tile is the one
  // that makes Q visible to every warp.
  for (int e = tid; e < kFlashRows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = (e % kChunks) * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r < tile.n_rows) val = *reinterpret_cast<const uint4*>(q + (tile.q_row0 + r) * ldq_g + int64_t(h) * HD + c);
    *reinterpret_cast<uint4*>(Qs + r * ld + c) = val;
  }
  uint32_t qa[L::q_own ? 1 : HD / 16][4];  // not used at head_dim 256
  if constexpr (!L::q_own) {
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) ldmatrix_a(qa[kk], Qs + warp * 16 * ld, ld, kk * 16);
  }

  // This lane's rows: g and g + 8 of the warp's 16 (index 0 and 1 below), and the keys each sees: [row_first,
  // row_keys).
  int row_keys[2], row_first[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = warp * 16 + g + 8 * i;
    row_keys[i] = row < tile.n_rows ? tile.nkeys0 + row : 0;
    row_first[i] = window > 0 ? max(0, row_keys[i] - window) : 0;
  }
  const int kmax = tile.nkeys0 + tile.n_rows - 1;  // keys seen by the tile's last row
  const int kfirst = window > 0 ? max(0, tile.nkeys0 - window) : 0;  // the first key of the tile's first row
  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  math::SoftmaxState run[2] = {math::softmax_init(), math::softmax_init()};

  for (int j0 = kfirst; j0 < kmax; j0 += kKeys) {
    __syncthreads();  // every warp is done with the Q tile (in K's place) or the previous K / V tile
    for (int e = tid; e < kKeys * kChunks; e += blockDim.x) {
      const int rr = e / kChunks, c = (e % kChunks) * 8;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);  // zero past the last key: 0 * garbage
      if (j0 + rr < kmax) {                                            // could be NaN in P V
        const int64_t off = (tile.key_row0 + j0 + rr) * ldkv + int64_t(kvh) * HD + c;
        kv = *reinterpret_cast<const uint4*>(k + off);
        vv = *reinterpret_cast<const uint4*>(v + off);
      }
      *reinterpret_cast<uint4*>(Ks + rr * ld + c) = kv;
      *reinterpret_cast<uint4*>(Vs + rr * ld + c) = vv;
    }
    __syncthreads();

    // S = Q K^T: s[n] is the 16 x 8 block of keys 8n .. 8n+7 (as mma_rows_times_rows, with Q's fragments kept in
    // registers since Q's tile was overwritten by K's; at head_dim 256, mma_rows_times_rows itself, which reloads
    // Q's fragments from its region, one 16-column block at a time).
    float s[kKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    if constexpr (L::q_own) {
      mma_rows_times_rows<HD, kKeys>(s, Qs + warp * 16 * ld, ld, Ks, ld);
    } else {
#pragma unroll
      for (int nb = 0; nb < kKeys / 16; ++nb) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
          uint32_t b[4];
          ldmatrix_b_rows(b, Ks, ld, nb * 16, kk * 16);
          mma_bf16_16816(s[2 * nb], qa[kk], b[0], b[1]);
          mma_bf16_16816(s[2 * nb + 1], qa[kk], b[2], b[3]);
        }
      }
    }

    // Online softmax per row: s[n][0..1] belong to row g, s[n][2..3] to row g + 8; key j0 + 8n + 2t + (e & 1).
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        const int key = j0 + 8 * n + 2 * t + (e & 1);
        float x = s[n][e] * scale;
        if (cap > 0) x = math::softcap(x, cap);
        x = (key < row_keys[i] && key >= row_first[i]) ? x : -INFINITY;
        s[n][e] = x;
        mt[i] = fmaxf(mt[i], x);
      }
    float st[2] = {0.f, 0.f}, ra[2], rb[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // the row's four lanes: max through two shuffles (the same value in each lane)
      mt[i] = fmaxf(mt[i], __shfl_xor_sync(0xffffffffu, mt[i], 1));
      mt[i] = fmaxf(mt[i], __shfl_xor_sync(0xffffffffu, mt[i], 2));
    }
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = math::softmax_weight(s[n][e], mt[e >> 1]);
        s[n][e] = p;
        st[e >> 1] += p;
      }
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // (a + b) + (c + d) in every lane of the four: identical sums, identical states
      st[i] += __shfl_xor_sync(0xffffffffu, st[i], 1);
      st[i] += __shfl_xor_sync(0xffffffffu, st[i], 2);
      run[i] = math::softmax_merge(run[i], math::SoftmaxState{mt[i], st[i]}, &ra[i], &rb[i]);
    }
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      o[n][0] *= ra[0];
      o[n][1] *= ra[0];
      o[n][2] *= ra[1];
      o[n][3] *= ra[1];
    }
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {  // P = weight * rb, rounded to bf16 as the next product's A fragments
      s[n][0] *= rb[0];
      s[n][1] *= rb[0];
      s[n][2] *= rb[1];
      s[n][3] *= rb[1];
    }
    // O += P V: V is [key][d] row-major, read through ldmatrix.trans.
    mma_acc_times_rows<kKeys, HD>(o, s, Vs, ld);
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = warp * 16 + g + 8 * i;
    if (row >= tile.n_rows) continue;
    const float inv = 1.f / run[i].s;  // as the CPU's attend_row: multiply by the reciprocal of the sum
    if (lse && t == 0) lse[(tile.q_row0 + row) * int64_t(gridDim.y) + h] = math::softmax_logsumexp(run[i]);
    uint16_t* orow = out + (tile.q_row0 + row) * ldo + int64_t(h) * HD + 2 * t;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      orow[8 * n] = ln::f32_to_bf16(o[n][2 * i] * inv);
      orow[8 * n + 1] = ln::f32_to_bf16(o[n][2 * i + 1] * inv);
    }
  }
}

template <int HD>
void launch(const AttnTile* tiles, int64_t n_tiles, int n_heads, int group, const uint16_t* q, int64_t ldq,
            const uint16_t* k, const uint16_t* v, int64_t ldkv, float scale, uint16_t* out, int64_t ldo, float* lse,
            int window, float cap, cudaStream_t stream) {
  using L = Layout<HD>;
  // Up to head_dim 128 within the default 48 KiB; head_dim 256 opts in (sm_86 / sm_89 allow 99 KiB, the least of
  // the GPUs with mma.sync bf16).
  static_assert(L::bytes <= 48 * 1024 || L::q_own, "within the default dynamic shared memory: no opt-in needed");
  static_assert(L::bytes <= 99 * 1024, "within every sm_80+ GPU's opt-in shared memory");
  if constexpr (L::bytes > 48 * 1024)
    check(cudaFuncSetAttribute(flash_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(L::bytes)),
          "flash_attention_bf16: shared memory opt-in");
  const dim3 grid{unsigned(n_tiles), unsigned(n_heads), 1u};
  flash_kernel<HD><<<grid, kWarps * 32, L::bytes, stream>>>(tiles, group, q, ldq, k, v, ldkv, scale, out, ldo, lse, window,
                                                                     cap);
  check(cudaGetLastError(), "flash_attention_bf16");
}

}  // namespace

bool flash_attention_supported(int head_dim) {
  return head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

void flash_attention_bf16(const AttnTile* tiles, int64_t n_tiles, int n_heads, int n_kv_heads, int head_dim,
                          const uint16_t* q, int64_t ldq, const uint16_t* k, const uint16_t* v, int64_t ldkv,
                          float scale, uint16_t* out, int64_t ldo, float* lse, Stream stream, int32_t window,
                          float cap) {
  if (n_tiles <= 0) return;
  auto fail = [](const std::string& m) { throw std::runtime_error("langneurons cuda: flash_attention_bf16: " + m); };
  if (!flash_attention_supported(head_dim))
    fail("head_dim " + std::to_string(head_dim) + " not supported (32, 64, 128, 256)");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535) fail("n_heads must be a multiple of n_kv_heads");
  if (n_tiles > 2147483647) fail("too many tiles");
  // 16-byte vector loads of q / k / v rows.
  auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (ldq % 8 || ldkv % 8 || misaligned(q) || misaligned(k) || misaligned(v))
    fail("q / k / v must be 16-byte aligned with row strides that are multiples of 8");
  const int group = n_heads / n_kv_heads;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 32: launch<32>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, lse, window, cap, s); break;
    case 64: launch<64>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, lse, window, cap, s); break;
    case 128: launch<128>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, lse, window, cap, s); break;
    default: launch<256>(tiles, n_tiles, n_heads, group, q, ldq, k, v, ldkv, scale, out, ldo, lse, window, cap, s); break;
  }
}

}  // namespace cuda
}  // namespace ln
