// The CUDA backend's first kernels (see cuda_backend.h for the API and docs/CUDA.md for the status).
//
// Rule: the math of every kernel is a call into kernels/math.h (and core/dtype.h), the same inline functions the
// CPU backend uses and native/tests/test_math.cpp tests. What is written here is only the parallel structure:
// indexing, tiling, reductions. Kernels favour "simple and obviously correct" over speed; none has run on a GPU
// in this repository's CI (there is none), so keep them easy to review.
#include <dlfcn.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/block_reduce.cuh"
#include "core/oom.h"
#include "cuda/cuda_backend.h"
#include "cuda/runtime_kernels.h"
#include "cuda/train_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

using elementwise::as_f32;    // float32 / bf16 loads and stores (the norms' outputs, the attention's q/k/v/out)
using elementwise::grid_for;  // the launch shape of the element-wise kernels
using elementwise::kThreads;
using elementwise::put;

using namespace reduce;  // warp / block reductions (cuda/block_reduce.cuh)

// ---- kernels -------------------------------------------------------------------------------------------------

constexpr int kRowThreads = 256;  // row kernels (rmsnorm, log-softmax, embedding)

__global__ void embed_rows_kernel(const void* table, DType dtype, int64_t vocab, int64_t hidden,
                                  const int32_t* tokens, float* out, int64_t ldo, float scale) {
  const int64_t row = blockIdx.x;
  const int32_t tok = tokens[row];
  float* o = out + row * ldo;
  const bool ok = tok >= 0 && tok < vocab;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float e = ok ? math::load_f32(table, dtype, int64_t(tok) * hidden + i) : NAN;
    o[i] = scale == 1.f ? e : e * scale;  // Gemma's embedding scale (model.cpp), a plain float32 product
  }
}

// One row's norm by the whole block, yr = norm(xr) (yr may be xr: every read of xr comes before the last barrier).
// kLayer: Cohere's LayerNorm (mean-centred, no bias; ops.cpp layernorm), else RMSNorm (Gemma's (1 + w) is folded
// into w at upload). shm: 32 doubles of shared memory.
template <class TOut, bool kLayer>
__device__ inline void norm_row(const float* xr, const float* w, TOut* yr, int64_t n, float eps, double* shm) {
  float mean = 0.f;
  if (kLayer) {
    double sum = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += double(xr[i]);
    sum = block_sum(sum, shm);
    mean = float(sum / double(n));
  }
  double ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double d = kLayer ? double(xr[i] - mean) : double(xr[i]);
    ss += d * d;
  }
  ss = block_sum(ss, shm);  // every read of xr happens before this barrier, so y may alias x
  const float r = kLayer ? math::layernorm_inv_std(ss, n, eps) : math::rmsnorm_inv_rms(ss, n, eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    put(yr, i, kLayer ? math::layernorm_apply(xr[i], mean, r, w[i]) : math::rmsnorm_apply(xr[i], r, w[i]));
}

// Row blockIdx.x of the output is input row rows[blockIdx.x] (or blockIdx.x without rows).
template <class TOut, bool kLayer>
__global__ void norm_kernel(const float* x, int64_t ldx, const int64_t* rows, const float* w, TOut* y, int64_t ldy,
                            int64_t n, float eps) {
  __shared__ double shm[32];
  const int64_t src = rows ? rows[blockIdx.x] : int64_t(blockIdx.x);
  norm_row<TOut, kLayer>(x + src * ldx, w, y + int64_t(blockIdx.x) * ldy, n, eps, shm);
}

// One block per (token, head) of the q and k heads of a qkv row: Qwen3's RMSNorm over each head (weights
// [head_dim]: q_norm for the query heads, k_norm for the key heads), in place, as model/attention.cpp.
__global__ void head_rmsnorm_kernel(float* qkv, int64_t ld, int n_heads, int head_dim, const float* q_norm,
                                    const float* k_norm, float eps) {
  __shared__ double shm[32];
  const int h = blockIdx.y;
  float* x = qkv + int64_t(blockIdx.x) * ld + int64_t(h) * head_dim;  // k heads follow the q heads in the row
  norm_row<float, false>(x, h < n_heads ? q_norm : k_norm, x, head_dim, eps, shm);
}

// Cohere's logit_scale and Gemma 2's final soft-capping, in place (model.cpp finish_logits).
__global__ void finish_logits_kernel(int64_t M, int64_t n, float* x, int64_t ld, float scale, float cap) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    float* p = x + (e / n) * ld + e % n;
    float v = *p * scale;
    if (cap > 0) v = math::softcap(v, cap);
    *p = v;
  }
}

__global__ void rope_tables_kernel(const float* inv_freq, int half, int64_t p0, int64_t n_pos, float* cos_out,
                                   float* sin_out, float factor) {
  const int64_t total = n_pos * half;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = p0 + e / half;
    math::rope_cos_sin(p, inv_freq[e % half], cos_out + e, sin_out + e);
    if (factor != 1.f) {  // YaRN's attention factor: transformers multiplies cos and sin (float32) by it
      cos_out[e] *= factor;
      sin_out[e] *= factor;
    }
  }
}

__global__ void rope_apply_kernel(float* x, int64_t ldx, int n_heads, int head_dim, const int32_t* pos,
                                  const float* cos_tab, const float* sin_tab) {
  const int64_t t = blockIdx.x;
  const int half = head_dim / 2;
  float* row = x + t * ldx;
  const float* c = cos_tab + int64_t(pos[t]) * half;
  const float* s = sin_tab + int64_t(pos[t]) * half;
  for (int e = threadIdx.x; e < n_heads * half; e += blockDim.x) {
    const int h = e / half, i = e % half;
    float* a = row + int64_t(h) * head_dim + i;
    float* b = a + half;
    math::rope_rotate(*a, *b, c[i], s[i], a, b);
  }
}

__global__ void swiglu_kernel(int64_t M, int64_t n, float* g, int64_t ldg, const float* u, int64_t ldu) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    float* gp = g + i * ldg + j;
    *gp = math::swiglu(*gp, u[i * ldu + j]);
  }
}

__global__ void round_bf16_kernel(float* x, int64_t n) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    x[e] = ln::round_bf16(x[e]);
}

// Y = X W^T: a 32 x 32 output tile per block of 32 x 8 threads (each thread 4 rows of one column), K in steps of
// 32 through shared memory. W tiles are stored transposed-by-row ([n][k], padded) so that thread tx reads its own
// row of W without bank conflicts and all threads of a warp read the same X element (broadcast).
constexpr int kTile = 32, kTileRowsPerThread = 4, kTileThreadsY = kTile / kTileRowsPerThread;

__global__ void gemm_xwt_kernel(int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx, const void* W,
                                DType wt, float* Y, int64_t ldy, bool bf16, bool accumulate) {
  __shared__ float xs[kTile][kTile + 1];
  __shared__ float ws[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row0 = int64_t(blockIdx.y) * kTile, col0 = int64_t(blockIdx.x) * kTile;
  float acc[kTileRowsPerThread] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t k = k0 + tx;
    for (int r = ty; r < kTile; r += kTileThreadsY) {
      const int64_t i = row0 + r, n = col0 + r;
      float xv = (i < M && k < K) ? X[i * ldx + k] : 0.f;
      float wv = (n < N && k < K) ? math::load_f32(W, wt, n * K + k) : 0.f;
      if (bf16) {
        xv = ln::round_bf16(xv);
        wv = ln::round_bf16(wv);
      }
      xs[r][tx] = xv;
      ws[r][tx] = wv;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTile; ++kk) {
      const float wv = ws[tx][kk];
#pragma unroll
      for (int j = 0; j < kTileRowsPerThread; ++j) acc[j] += xs[ty + kTileThreadsY * j][kk] * wv;
    }
    __syncthreads();
  }
  const int64_t n = col0 + tx;
  if (n >= N) return;
#pragma unroll
  for (int j = 0; j < kTileRowsPerThread; ++j) {
    const int64_t i = row0 + ty + kTileThreadsY * j;
    if (i < M) {
      float* y = Y + i * ldy + n;
      *y = accumulate ? *y + acc[j] : acc[j];
    }
  }
}

// One block per (query row t, head h). Keys are processed in tiles of blockDim.x: each thread scores one key
// (q . k * scale), the tile's softmax state is the block-wide merge of the threads' one-key states, and it is
// merged into the running state with math::softmax_merge, which also gives the factors that rescale the value
// accumulator (acc = acc * ra + (sum_j p_j v_j) * rb). The output is acc * (1 / s); with `lse` (the trainer's
// forward, train_kernels.h attention_forward_lse) also the row's logsumexp, what the backward recomputes from.
constexpr int kAttnThreads = 128;
constexpr int kMaxHeadDim = 256;

template <class TIn, class TOut>
__global__ void attention_kernel(int n_heads, int n_kv_heads, int head_dim, const TIn* q, int64_t ldq,
                                 const TIn* k, const TIn* v, int64_t ldkv, const int64_t* key_row0,
                                 const int32_t* n_keys, float scale, TOut* out, int64_t ldo, float* lse,
                                 int32_t window, float cap) {
  __shared__ float qs[kMaxHeadDim], acc[kMaxHeadDim], ps[kAttnThreads];
  __shared__ float red_m[32], red_s[32];
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y, tid = threadIdx.x;
  const int kvh = h / (n_heads / n_kv_heads);
  const TIn* qr = q + t * ldq + int64_t(h) * head_dim;
  for (int d = tid; d < head_dim; d += blockDim.x) {
    qs[d] = as_f32(qr[d]);
    acc[d] = 0.f;
  }
  __syncthreads();
  // A sliding window keeps the row's last `window` keys (itself included): skip the ones before.
  const int32_t skip = window > 0 ? max(0, n_keys[t] - window) : 0;
  const int64_t r0 = key_row0[t] + skip;
  const int32_t nk = n_keys[t] - skip;
  const TIn* kb = k + r0 * ldkv + int64_t(kvh) * head_dim;
  const TIn* vb = v + r0 * ldkv + int64_t(kvh) * head_dim;

  math::SoftmaxState run = math::softmax_init();  // identical in every thread
  for (int32_t j0 = 0; j0 < nk; j0 += int32_t(blockDim.x)) {
    const int32_t j = j0 + tid;
    float score = -INFINITY;
    if (j < nk) {
      const TIn* kr = kb + int64_t(j) * ldkv;
      float dot = 0.f;
      for (int d = 0; d < head_dim; ++d) dot += qs[d] * as_f32(kr[d]);
      score = cap > 0 ? math::softcap(dot * scale, cap) : dot * scale;  // Gemma 2: capped before the mask
    }
    math::SoftmaxState mine = math::softmax_init();
    math::softmax_update(&mine, score);
    const math::SoftmaxState tile = block_softmax(mine, red_m, red_s);
    ps[tid] = math::softmax_weight(score, tile.m);  // 0 past the last key
    __syncthreads();
    float ra, rb;
    run = math::softmax_merge(run, tile, &ra, &rb);
    const int32_t nt = min(int32_t(blockDim.x), nk - j0);
    for (int d = tid; d < head_dim; d += blockDim.x) {
      float a = 0.f;
      for (int32_t jj = 0; jj < nt; ++jj) a += ps[jj] * as_f32(vb[int64_t(j0 + jj) * ldkv + d]);
      acc[d] = acc[d] * ra + a * rb;
    }
    __syncthreads();  // ps is rewritten by the next tile
  }
  TOut* o = out + t * ldo + int64_t(h) * head_dim;
  const float inv = 1.f / run.s;  // as the CPU's attend_row: multiply by the reciprocal of the sum
  for (int d = tid; d < head_dim; d += blockDim.x) put(o, d, acc[d] * inv);
  if (lse && tid == 0) lse[t * n_heads + h] = math::softmax_logsumexp(run);
}

__global__ void log_softmax_targets_kernel(const float* logits, int64_t ld, int64_t vocab, const int32_t* targets,
                                           float* out) {
  __shared__ float shm_f[32];
  __shared__ double shm_d[32];
  const int64_t row = blockIdx.x;
  const float* x = logits + row * ld;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, x[i]);
  m = block_max(m, shm_f);
  double s = 0;
  if (isfinite(m))
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) s += math::logsumexp_term(x[i], m);
  s = block_sum(s, shm_d);
  if (threadIdx.x == 0) {
    const int32_t tg = targets[row];
    out[row] = (tg >= 0 && tg < vocab) ? math::target_log_softmax(x[tg], m, s, vocab) : NAN;
  }
}

}  // namespace

// ---- host API ------------------------------------------------------------------------------------------------

static std::string g_unavailable;

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    // Without an NVIDIA driver the runtime says "driver version is insufficient": name the real cause.
    void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!driver) g_unavailable = "no NVIDIA driver on this machine (libcuda.so.1 not found)";
    else {
      dlclose(driver);
      g_unavailable = std::string("CUDA runtime: ") + cudaGetErrorString(e);
#if !defined(LN_CUDA_SIM)
      // Common on clusters: a toolkit newer than the nodes' driver. Say both versions and the two ways out.
      int driver_version = 0;
      if (e == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver_version) == cudaSuccess && driver_version > 0) {
        const auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
        g_unavailable = "the NVIDIA driver supports CUDA " + version(driver_version) + " at most, and this build's CUDA " +
                        "runtime is " + version(CUDART_VERSION) + " (nvcc's): update the driver, or rebuild with the " +
                        "CUDA toolkit the driver supports on the PATH (npm rebuild langneurons)";
      }
#endif
    }
    cudaGetLastError();  // clear the sticky error so later calls are not confused by it
  } else if (n == 0) {
    g_unavailable = "no CUDA device found";
  } else {
    g_unavailable.clear();
    return n;
  }
  // Devices hidden by CUDA_VISIBLE_DEVICES (empty, or naming none there is) look like none at all: say so.
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"))
    g_unavailable += std::string(" (CUDA_VISIBLE_DEVICES=\"") + visible + "\")";
  return 0;
}

const char* unavailable_reason() { return g_unavailable.c_str(); }

// Out of device memory is a std::bad_alloc (core/oom.h: the callers' `allocating` names what was being allocated);
// any other failure a std::runtime_error naming the CUDA error.
void* device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // reset the last error, so that a later launch check does not report this one
    throw OutOfDeviceMemory(bytes);
  }
  check(e, "cudaMalloc");
  return p;
}
void device_free(void* p) {
  if (p) cudaFree(p);
}
void copy_to_device(void* dst, const void* src_host, size_t bytes, Stream stream) {
  check(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, as_stream(stream)), "copy_to_device");
}
void copy_to_host(void* dst_host, const void* src, size_t bytes, Stream stream) {
  check(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)), "copy_to_host");
}
void synchronize(Stream stream) { check(cudaStreamSynchronize(as_stream(stream)), "synchronize"); }
void memset_zero(void* p, size_t bytes) {
  if (!bytes) return;
  check(cudaMemset(p, 0, bytes), "cudaMemset");
  // cudaMemset of device memory returns before the zeros are written, on the legacy default stream, which the
  // runtime's streams (cudaStreamNonBlocking) do not wait for: without this wait, work queued next on such a
  // stream (a copy of initial values into the buffer) could run first and be overwritten by the zeros.
  check(cudaStreamSynchronize(nullptr), "cudaMemset (synchronize)");
}

void embed_rows(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* tokens, int64_t n,
                float* out, int64_t ldo, Stream stream, float scale) {
  if (n <= 0) return;
  embed_rows_kernel<<<unsigned(n), kRowThreads, 0, as_stream(stream)>>>(table, dtype, vocab, hidden, tokens, out,
                                                                         ldo, scale);
  check_launch("embed_rows");
}

void rmsnorm_rows(int64_t M, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                  float eps, Stream stream) {
  if (M <= 0) return;
  norm_kernel<float, false><<<unsigned(M), kRowThreads, 0, as_stream(stream)>>>(x, ldx, nullptr, w, y, ldy, n, eps);
  check_launch("rmsnorm_rows");
}

void rope_tables(const float* inv_freq, int half, int64_t p0, int64_t p1, float* cos_out, float* sin_out,
                 Stream stream, float attention_factor) {
  const int64_t n_pos = p1 - p0;
  if (n_pos <= 0 || half <= 0) return;
  rope_tables_kernel<<<grid_for(n_pos * half), kThreads, 0, as_stream(stream)>>>(inv_freq, half, p0, n_pos, cos_out,
                                                                                 sin_out, attention_factor);
  check_launch("rope_tables");
}

void rope_apply(int64_t T, float* x, int64_t ldx, int n_heads, int head_dim, const int32_t* pos,
                const float* cos_tab, const float* sin_tab, Stream stream) {
  if (T <= 0) return;
  rope_apply_kernel<<<unsigned(T), 128, 0, as_stream(stream)>>>(x, ldx, n_heads, head_dim, pos, cos_tab, sin_tab);
  check_launch("rope_apply");
}

void swiglu_rows(int64_t M, int64_t n, float* g, int64_t ldg, const float* u, int64_t ldu, Stream stream) {
  if (M <= 0 || n <= 0) return;
  swiglu_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, g, ldg, u, ldu);
  check_launch("swiglu_rows");
}

void round_bf16(float* x, int64_t n, Stream stream) {
  if (n <= 0) return;
  round_bf16_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(x, n);
  check_launch("round_bf16");
}

void gemm_xwt(int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx, const void* W, DType w_dtype, float* Y,
              int64_t ldy, bool bf16_compute, bool accumulate, Stream stream) {
  if (M <= 0 || N <= 0) return;
  if ((M + kTile - 1) / kTile > 65535) throw std::runtime_error("langneurons cuda: gemm_xwt: M too large for one launch");
  const dim3 grid(unsigned((N + kTile - 1) / kTile), unsigned((M + kTile - 1) / kTile));
  const dim3 block(kTile, kTileThreadsY);
  gemm_xwt_kernel<<<grid, block, 0, as_stream(stream)>>>(M, N, K, X, ldx, W, w_dtype, Y, ldy, bf16_compute,
                                                         accumulate);
  check_launch("gemm_xwt");
}

static void check_attention_args(int n_heads, int n_kv_heads, int head_dim, const char* name) {
  if (head_dim > kMaxHeadDim || head_dim <= 0)
    throw std::runtime_error(std::string("langneurons cuda: ") + name + ": head_dim must be in [1, 256]");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535)
    throw std::runtime_error(std::string("langneurons cuda: ") + name + ": n_heads must be a multiple of n_kv_heads");
}

void attention_causal(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                      const float* k, const float* v, int64_t ldkv, const int64_t* key_row0, const int32_t* n_keys,
                      float scale, float* out, int64_t ldo, Stream stream, int32_t window, float cap) {
  if (T <= 0) return;
  if (head_dim > kMaxHeadDim || head_dim <= 0)
    throw std::runtime_error("langneurons cuda: attention_causal: head_dim must be in [1, 256]");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535)
    throw std::runtime_error("langneurons cuda: attention_causal: n_heads must be a multiple of n_kv_heads");
  const dim3 grid{unsigned(T), unsigned(n_heads)};
  attention_kernel<float, float><<<grid, kAttnThreads, 0, as_stream(stream)>>>(n_heads, n_kv_heads, head_dim, q, ldq, k,
                                                                               v, ldkv, key_row0, n_keys, scale, out,
                                                                               ldo, nullptr, window, cap);
  check_launch("attention_causal");
}

void attention_forward_lse(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                           const float* k, const float* v, int64_t ldkv, const int64_t* key_row0, const int32_t* n_keys,
                           float scale, float* out, int64_t ldo, float* lse, Stream stream, int window, float cap) {
  if (T <= 0) return;
  check_attention_args(n_heads, n_kv_heads, head_dim, "attention_forward_lse");
  if (T > 2147483647) throw std::runtime_error("langneurons cuda: attention_forward_lse: too many rows");
  const dim3 grid{unsigned(T), unsigned(n_heads)};
  attention_kernel<float, float><<<grid, kAttnThreads, 0, as_stream(stream)>>>(n_heads, n_kv_heads, head_dim, q, ldq, k,
                                                                               v, ldkv, key_row0, n_keys, scale, out,
                                                                               ldo, lse, window, cap);
  check_launch("attention_forward_lse");
}

void attention_causal_bf16(int64_t T, int n_heads, int n_kv_heads, int head_dim, const uint16_t* q, int64_t ldq,
                           const uint16_t* k, const uint16_t* v, int64_t ldkv, const int64_t* key_row0,
                           const int32_t* n_keys, float scale, uint16_t* out, int64_t ldo, Stream stream,
                           int32_t window, float cap) {
  if (T <= 0) return;
  check_attention_args(n_heads, n_kv_heads, head_dim, "attention_causal_bf16");
  if (T > 2147483647) throw std::runtime_error("langneurons cuda: attention_causal_bf16: too many rows");
  const dim3 grid{unsigned(T), unsigned(n_heads)};
  attention_kernel<uint16_t, uint16_t><<<grid, kAttnThreads, 0, as_stream(stream)>>>(
      n_heads, n_kv_heads, head_dim, q, ldq, k, v, ldkv, key_row0, n_keys, scale, out, ldo, nullptr, window, cap);
  check_launch("attention_causal_bf16");
}

void norm_rows_ex(int64_t M, const float* x, int64_t ldx, const int64_t* rows, const float* w, void* y, bool y_bf16,
                  int64_t ldy, int64_t n, float eps, bool layer_norm, Stream stream) {
  if (M <= 0) return;
  if (M > 2147483647) throw std::runtime_error("langneurons cuda: norm_rows_ex: too many rows");
  if (rows && y == x) throw std::invalid_argument("langneurons cuda: norm_rows_ex: a row gather cannot be in place");
  const unsigned grid = unsigned(M);
  cudaStream_t s = as_stream(stream);
  uint16_t* yb = static_cast<uint16_t*>(y);
  float* yf = static_cast<float*>(y);
  if (layer_norm && y_bf16) norm_kernel<uint16_t, true><<<grid, kRowThreads, 0, s>>>(x, ldx, rows, w, yb, ldy, n, eps);
  else if (layer_norm) norm_kernel<float, true><<<grid, kRowThreads, 0, s>>>(x, ldx, rows, w, yf, ldy, n, eps);
  else if (y_bf16) norm_kernel<uint16_t, false><<<grid, kRowThreads, 0, s>>>(x, ldx, rows, w, yb, ldy, n, eps);
  else norm_kernel<float, false><<<grid, kRowThreads, 0, s>>>(x, ldx, rows, w, yf, ldy, n, eps);
  check_launch("norm_rows_ex");
}

void rmsnorm_rows_ex(int64_t M, const float* x, int64_t ldx, const int64_t* rows, const float* w, void* y,
                     bool y_bf16, int64_t ldy, int64_t n, float eps, Stream stream) {
  norm_rows_ex(M, x, ldx, rows, w, y, y_bf16, ldy, n, eps, false, stream);
}

void head_rmsnorm(int64_t T, float* qkv, int64_t ld, int n_heads, int n_kv_heads, int head_dim, const float* q_norm,
                  const float* k_norm, float eps, Stream stream) {
  if (T <= 0) return;
  if (T > 2147483647 || n_heads + n_kv_heads > 65535)
    throw std::runtime_error("langneurons cuda: head_rmsnorm: too many rows");
  const dim3 grid{unsigned(T), unsigned(n_heads + n_kv_heads), 1u};
  head_rmsnorm_kernel<<<grid, 64, 0, as_stream(stream)>>>(qkv, ld, n_heads, head_dim, q_norm, k_norm, eps);
  check_launch("head_rmsnorm");
}

void finish_logits(int64_t M, int64_t n, float* logits, int64_t ld, float scale, float cap, Stream stream) {
  if (M <= 0 || n <= 0 || (scale == 1.f && cap == 0.f)) return;
  finish_logits_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, logits, ld, scale, cap);
  check_launch("finish_logits");
}

void log_softmax_targets(int64_t M, const float* logits, int64_t ld, int64_t vocab, const int32_t* targets,
                         float* out, Stream stream) {
  if (M <= 0) return;
  log_softmax_targets_kernel<<<unsigned(M), kRowThreads, 0, as_stream(stream)>>>(logits, ld, vocab, targets, out);
  check_launch("log_softmax_targets");
}

}  // namespace cuda
}  // namespace ln
