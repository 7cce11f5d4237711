// The CUDA trainer's kernels (train_kernels.h): backward twins of the runtime's forward kernels, the sparse
// weight-gradient helpers, the loss, and AdamW. Per-element math is kernels/math.h; the CPU twins are
// train/layers.cpp and train/trainer.cpp. Nothing here uses floating-point atomics: every output is written by one
// thread, and reductions over rows go through per-block partials added in a fixed order (resume is bit-identical).
//
// Where the CPU result is to be matched bit for bit (AdamW, RoPE's transpose rotation, the dropout, the embedding
// sums) the float operations are the _rn intrinsics, which nvcc never contracts into FMAs.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/train_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

using reduce::block_max;
using reduce::block_softmax;
using reduce::block_sum;

using elementwise::as_f32;
using elementwise::grid_for;
using elementwise::kThreads;

constexpr int kMaxHeadDim = 256;
// Rows per partial of the column reductions (norm weight gradients, bias gradients): the partial count is a
// function of the shape only, so the reduction order is too.
constexpr int64_t kRowsPerPartial = 64;
// Elements per block of the global-norm reduction, and the cap on its partials.
constexpr int64_t kSumsqPerBlock = kThreads * 16;
constexpr int64_t kSumsqMaxBlocks = 4096;

[[noreturn]] void bad(const char* fn, const std::string& what) {
  throw std::runtime_error(std::string("langneurons cuda: ") + fn + ": " + what);
}

// ---- norms ---------------------------------------------------------------------------------------------------

// LayerNorm (Cohere), one block per row as train/layers.cpp layernorm_backward: mean and r as the forward
// (math::layernorm_inv_std), sums of w dy and w dy xhat in double, then dx. Saves mean_t and r_t (the dw pass).
__global__ void layernorm_dx_kernel(int64_t n, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                                    int64_t lddy, float* dx, int64_t lddx, bool accumulate, float* mean_out,
                                    float* rstd) {
  __shared__ double shm[32];
  const int64_t t = blockIdx.x;
  const float* xr = x + t * ldx;
  const float* g = dy + t * lddy;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += double(xr[i]);
  sum = block_sum(sum, shm);
  const float mu = float(sum / double(n));
  double ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double d = double(xr[i] - mu);
    ss += d * d;
  }
  ss = block_sum(ss, shm);
  const float r = math::layernorm_inv_std(ss, n, eps);
  double sg = 0, sgx = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    const double gk = double(w[k]) * g[k];
    sg += gk;
    sgx += gk * double((xr[k] - mu) * r);
  }
  sg = block_sum(sg, shm);
  sgx = block_sum(sgx, shm);
  if (rstd && threadIdx.x == 0) {
    rstd[t] = r;
    mean_out[t] = mu;
  }
  const float mg = float(sg / double(n)), mgx = float(sgx / double(n));
  float* d = dx + t * lddx;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float xhat = __fmul_rn(__fsub_rn(xr[i], mu), r);
    const float v = __fmul_rn(r, __fsub_rn(__fsub_rn(__fmul_rn(w[i], g[i]), mg), __fmul_rn(xhat, mgx)));
    d[i] = accumulate ? __fadd_rn(d[i], v) : v;
  }
}

// partial[b, i] = sum over rows of its block of dy_ti xhat_ti (LayerNorm's dw; double sum, stored as float).
__global__ void layernorm_dw_partial_kernel(int64_t M, int64_t n, const float* x, int64_t ldx, const float* dy,
                                            int64_t lddy, const float* mean, const float* rstd, float* partial) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerPartial, r1 = min(M, r0 + kRowsPerPartial);
  double s = 0;
  for (int64_t t = r0; t < r1; ++t)
    s += double(dy[t * lddy + i]) * double(__fmul_rn(__fsub_rn(x[t * ldx + i], mean[t]), rstd[t]));
  partial[int64_t(blockIdx.y) * n + i] = float(s);
}

// One block per row: r from the double sum of squares (as the forward), c = sum_k w_k dy_k x_k in double, then
// dx as the CPU's rmsnorm_backward. Saves r_t into rstd (the dw pass reads it).
__global__ void rmsnorm_dx_kernel(int64_t n, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                                  int64_t lddy, float* dx, int64_t lddx, bool accumulate, float* rstd) {
  __shared__ double shm[32];
  const int64_t t = blockIdx.x;
  const float* xr = x + t * ldx;
  const float* g = dy + t * lddy;
  double ss = 0, c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    ss += double(xr[i]) * double(xr[i]);
    c += double(w[i]) * double(g[i]) * double(xr[i]);
  }
  ss = block_sum(ss, shm);
  c = block_sum(c, shm);
  const float r = math::rmsnorm_inv_rms(ss, n, eps);
  if (rstd && threadIdx.x == 0) rstd[t] = r;
  const float coef = float(c * double(r) * double(r) * double(r) / double(n));
  float* d = dx + t * lddx;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = __fsub_rn(__fmul_rn(r, __fmul_rn(w[i], g[i])), __fmul_rn(coef, xr[i]));
    d[i] = accumulate ? __fadd_rn(d[i], v) : v;
  }
}

// partial[b, i] = sum over rows [b * kRowsPerPartial, ...) of dy_ti x_ti r_t (double sum, stored as float).
__global__ void rmsnorm_dw_partial_kernel(int64_t M, int64_t n, const float* x, int64_t ldx, const float* dy,
                                          int64_t lddy, const float* rstd, float* partial) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerPartial, r1 = min(M, r0 + kRowsPerPartial);
  double s = 0;
  for (int64_t t = r0; t < r1; ++t) s += double(dy[t * lddy + i]) * double(x[t * ldx + i]) * double(rstd[t]);
  partial[int64_t(blockIdx.y) * n + i] = float(s);
}

// out[i] += sum_b partial[b, i], b in order (double sum).
__global__ void column_partials_reduce_kernel(int64_t n, int64_t n_partials, const float* partial, float* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double s = 0;
  for (int64_t b = 0; b < n_partials; ++b) s += double(partial[b * n + i]);
  out[i] += float(s);
}

// ---- RoPE ----------------------------------------------------------------------------------------------------

// Thread per (row, head, pair): dx0 = d0 c + d1 s, dx1 = d1 c - d0 s (the CPU's order, no FMA).
__global__ void rope_backward_kernel(int64_t T, float* dx, int64_t ld, int n_heads, int head_dim, const int32_t* pos,
                                     const float* cos_tab, const float* sin_tab, bool interleaved) {
  const int half = head_dim / 2;
  const int64_t per_row = int64_t(n_heads) * half, total = T * per_row;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / per_row;
    const int h = int((e % per_row) / half), i = int(e % half);
    const float c = cos_tab[int64_t(pos[t]) * half + i], s = sin_tab[int64_t(pos[t]) * half + i];
    float* head = dx + t * ld + int64_t(h) * head_dim;
    float* p0 = head + (interleaved ? 2 * i : i);  // Cohere's pairs (2i, 2i + 1), else (i, i + half)
    float* p1 = interleaved ? p0 + 1 : p0 + half;
    const float d0 = *p0, d1 = *p1;
    *p0 = __fadd_rn(__fmul_rn(d0, c), __fmul_rn(d1, s));
    *p1 = __fsub_rn(__fmul_rn(d1, c), __fmul_rn(d0, s));
  }
}

// ---- attention -----------------------------------------------------------------------------------------------

constexpr int kAttnThreads = 128;

// D[t, h] = dout_t,h . out_t,h (one warp per (row, head), float32 lanes summed in a fixed tree).
__global__ void attention_d_rows_kernel(int64_t rows_heads, int n_heads, int head_dim, const float* out, int64_t ldo,
                                        const float* dout, int64_t lddo, float* d_rows) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= rows_heads) return;  // whole warps leave together (blockDim.x is a multiple of 32)
  const int64_t t = w / n_heads;
  const int h = int(w % n_heads);
  const float* o = out + t * ldo + int64_t(h) * head_dim;
  const float* g = dout + t * lddo + int64_t(h) * head_dim;
  const float s = reduce::warp_dot(o, g, head_dim);
  if (lane == 0) d_rows[w] = s;
}

// dq of one (query row t, head h): keys of t's sequence up to t, in tiles of blockDim.x. Each thread scores one key
// (p = exp(scale q.k - lse), dp = dout.v, ds = p (dp - D) scale) into shared memory; then each thread owns a
// feature d and adds ds_j k_j[d] in key order.
__global__ void attention_dq_kernel(int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                                    const float* k, const float* v, int64_t ldkv, const float* dout, int64_t lddo,
                                    const float* lse, const float* d_rows, const int64_t* seq_row0, float scale,
                                    float cap, int window, float* dq, int64_t lddq) {
  __shared__ float qs[kMaxHeadDim], gs[kMaxHeadDim], acc[kMaxHeadDim], ds[kAttnThreads];
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y, tid = threadIdx.x;
  const int kvh = h / (n_heads / n_kv_heads);
  for (int d = tid; d < head_dim; d += blockDim.x) {
    qs[d] = q[t * ldq + int64_t(h) * head_dim + d];
    gs[d] = dout[t * lddo + int64_t(h) * head_dim + d];
    acc[d] = 0.f;
  }
  __syncthreads();
  const float l = lse[t * n_heads + h], D = d_rows[t * n_heads + h];
  const int64_t skip = window > 0 ? max(int64_t(0), t - seq_row0[t] + 1 - window) : 0;  // keys before the window
  const int64_t r0 = seq_row0[t] + skip;
  const int64_t nk = t - r0 + 1;
  const float* kb = k + r0 * ldkv + int64_t(kvh) * head_dim;
  const float* vb = v + r0 * ldkv + int64_t(kvh) * head_dim;
  for (int64_t j0 = 0; j0 < nk; j0 += blockDim.x) {
    const int64_t j = j0 + tid;
    if (j < nk) {
      const float* kr = kb + j * ldkv;
      const float* vr = vb + j * ldkv;
      float sc = 0.f, dp = 0.f;
      for (int d = 0; d < head_dim; ++d) {
        sc += qs[d] * kr[d];
        dp += gs[d] * vr[d];
      }
      float y = sc * scale, chain = 1.f;
      if (cap > 0) {  // Gemma 2: y = cap tanh(s / cap), dy/ds = 1 - (y / cap)^2
        y = math::softcap(y, cap);
        chain = math::softcap_grad_from_output(y, cap);
      }
      const float p = expf(y - l);
      ds[tid] = p * (dp - D) * chain * scale;
    }
    __syncthreads();
    const int64_t nt = min(int64_t(blockDim.x), nk - j0);
    for (int d = tid; d < head_dim; d += blockDim.x) {
      float a = acc[d];
      for (int64_t jj = 0; jj < nt; ++jj) a += ds[jj] * kb[(j0 + jj) * ldkv + d];
      acc[d] = a;
    }
    __syncthreads();
  }
  float* o = dq + t * lddq + int64_t(h) * head_dim;
  for (int d = tid; d < head_dim; d += blockDim.x) o[d] = acc[d];
}

// dk, dv of one (key row j, kv head): the (query head, query row) pairs that see key j, heads of the group outer,
// rows j .. end of the sequence inner (the CPU's order), in tiles of blockDim.x pairs.
__global__ void attention_dkv_kernel(int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                                     const float* k, const float* v, int64_t ldkv, const float* dout, int64_t lddo,
                                     const float* lse, const float* d_rows, const int64_t* seq_row0,
                                     const int32_t* seq_len, float scale, float cap, int window, float* dk,
                                     float* dv, int64_t lddkv) {
  __shared__ float ks[kMaxHeadDim], vs[kMaxHeadDim], dk_acc[kMaxHeadDim], dv_acc[kMaxHeadDim];
  __shared__ float ds[kAttnThreads], ps[kAttnThreads];
  const int64_t j = blockIdx.x;
  const int kvh = blockIdx.y, tid = threadIdx.x;
  const int group = n_heads / n_kv_heads;
  for (int d = tid; d < head_dim; d += blockDim.x) {
    ks[d] = k[j * ldkv + int64_t(kvh) * head_dim + d];
    vs[d] = v[j * ldkv + int64_t(kvh) * head_dim + d];
    dk_acc[d] = 0.f;
    dv_acc[d] = 0.f;
  }
  __syncthreads();
  const int64_t end = seq_row0[j] + seq_len[j];  // one past the sequence's last row
  int64_t nq = end - j;                           // query rows j .. end - 1 see key j,
  if (window > 0) nq = min(nq, int64_t(window));  // or only the first `window` of them
  const int64_t pairs = nq * group;
  for (int64_t e0 = 0; e0 < pairs; e0 += blockDim.x) {
    const int64_t e = e0 + tid;
    if (e < pairs) {
      const int h = kvh * group + int(e / nq);
      const int64_t t = j + e % nq;
      const float* qr = q + t * ldq + int64_t(h) * head_dim;
      const float* gr = dout + t * lddo + int64_t(h) * head_dim;
      float sc = 0.f, dp = 0.f;
      for (int d = 0; d < head_dim; ++d) {
        sc += qr[d] * ks[d];
        dp += gr[d] * vs[d];
      }
      float y = sc * scale, chain = 1.f;
      if (cap > 0) {
        y = math::softcap(y, cap);
        chain = math::softcap_grad_from_output(y, cap);
      }
      const float p = expf(y - lse[t * n_heads + h]);
      ps[tid] = p;
      ds[tid] = p * (dp - d_rows[t * n_heads + h]) * chain * scale;
    }
    __syncthreads();
    const int64_t nt = min(int64_t(blockDim.x), pairs - e0);
    for (int d = tid; d < head_dim; d += blockDim.x) {
      float a = dk_acc[d], b = dv_acc[d];
      for (int64_t ee = 0; ee < nt; ++ee) {
        const int h = kvh * group + int((e0 + ee) / nq);
        const int64_t t = j + (e0 + ee) % nq;
        a += ds[ee] * q[t * ldq + int64_t(h) * head_dim + d];
        b += ps[ee] * dout[t * lddo + int64_t(h) * head_dim + d];
      }
      dk_acc[d] = a;
      dv_acc[d] = b;
    }
    __syncthreads();
  }
  for (int d = tid; d < head_dim; d += blockDim.x) {
    dk[j * lddkv + int64_t(kvh) * head_dim + d] = dk_acc[d];
    dv[j * lddkv + int64_t(kvh) * head_dim + d] = dv_acc[d];
  }
}

// ---- FFN -----------------------------------------------------------------------------------------------------

template <typename G>
__global__ void swiglu_backward_kernel(int64_t M, int64_t I, const G* gu, int64_t ldgu, const float* da, int64_t ldda,
                                       float* dgu, uint16_t* dgu_bf16, int64_t lddgu, bool gelu) {
  const int64_t total = M * I;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / I, j = e % I;
    const G* row = gu + t * ldgu;
    const float g = as_f32(row[j]), u = as_f32(row[I + j]);
    float dg, du;
    if (gelu) {  // Gemma's GELU-tanh, as train/layers.cpp swiglu_backward
      const float d = da[t * ldda + j];
      dg = d * u * math::gelu_tanh_grad(g);
      du = d * math::gelu_tanh(g);
    } else {
      math::swiglu_grads(g, u, da[t * ldda + j], &dg, &du);
    }
    if (dgu) {
      dgu[t * lddgu + j] = dg;
      dgu[t * lddgu + I + j] = du;
    }
    if (dgu_bf16) {
      dgu_bf16[t * lddgu + j] = ln::f32_to_bf16(dg);
      dgu_bf16[t * lddgu + I + j] = ln::f32_to_bf16(du);
    }
  }
}

// ---- loss ----------------------------------------------------------------------------------------------------

// One block per row: lse as ops.cpp's logsumexp (float max, double sum of float exp), then the row becomes
// scale * softmax (exp in double, as the CPU) minus scale at the target.
__global__ void crossentropy_kernel(int64_t V, float* logits, int64_t ld, const int32_t* targets, float scale,
                                    double* row_loss) {
  __shared__ float shm_f[32];
  __shared__ double shm_d[32];
  const int64_t row = blockIdx.x;
  float* x = logits + row * ld;
  const int32_t tg = targets[row];
  if (tg < 0) {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) x[i] = 0.f;
    if (threadIdx.x == 0) row_loss[row] = 0;
    return;
  }
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = x[i] > m ? x[i] : m;
  m = block_max(m, shm_f);
  double s = 0;
  if (isfinite(m))
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) s += math::logsumexp_term(x[i], m);
  s = block_sum(s, shm_d);
  const double lse = math::logsumexp_finish(m, s);
  const float target_logit = x[tg];  // read by every thread before anyone writes (block_sum ends with a barrier)
  __syncthreads();
  if (threadIdx.x == 0) row_loss[row] = lse - double(target_logit);
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float p = __fmul_rn(float(exp(double(x[i]) - lse)), scale);
    x[i] = i == tg ? __fsub_rn(p, scale) : p;
  }
}

// dl = dl * (scale * (cap > 0 ? 1 - (y / cap)^2 : 1)): Cohere's logit_scale and Gemma 2's final soft-capping
// through the cross-entropy's gradient (y: the capped logits, read only when cap > 0), as train/trainer.cpp.
__global__ void logits_chain_kernel(int64_t M, int64_t V, float* dl, int64_t ld, const float* y, int64_t ldy,
                                    float scale, float cap) {
  const int64_t total = M * V;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / V, j = e % V;
    const float g = cap > 0 ? math::softcap_grad_from_output(y[i * ldy + j], cap) : 1.f;
    dl[i * ld + j] = __fmul_rn(dl[i * ld + j], __fmul_rn(scale, g));
  }
}

// ---- embedding -----------------------------------------------------------------------------------------------

// One block per token group; each thread owns columns and adds the group's rows in order, one float add per row
// into the dE value, as the CPU's serial loop over tokens (e += scale * d).
__global__ void embedding_backward_kernel(const int32_t* group_token, const int64_t* group_start,
                                          const int64_t* order, const float* dh, int64_t lddh, int64_t H, float* dE,
                                          int64_t lde, float scale) {
  const int64_t g = blockIdx.x;
  const int64_t b = group_start[g], e = group_start[g + 1];
  float* row = dE + int64_t(group_token[g]) * lde;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = row[c];
    for (int64_t r = b; r < e; ++r) acc = __fadd_rn(acc, __fmul_rn(scale, dh[order[r] * lddh + c]));
    row[c] = acc;
  }
}

// ---- gather / scatter / column sums --------------------------------------------------------------------------

template <typename T>
__global__ void gather_cols_kernel(int64_t M, int64_t n, const T* x, int64_t ldx, const int32_t* index, T* y,
                                   int64_t ldy) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, c = e % n;
    y[i * ldy + c] = x[i * ldx + index[c]];
  }
}

__global__ void scatter_cols_kernel(int64_t M, int64_t n, const float* x, int64_t ldx, const int32_t* index, float* y,
                                    int64_t ldy, bool accumulate) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, c = e % n;
    float* p = y + i * ldy + index[c];
    *p = accumulate ? __fadd_rn(*p, x[i * ldx + c]) : x[i * ldx + c];
  }
}

__global__ void colsum_partial_kernel(int64_t M, int64_t n, const float* dy, int64_t ld, float* partial) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerPartial, r1 = min(M, r0 + kRowsPerPartial);
  double s = 0;
  for (int64_t i = r0; i < r1; ++i) s += double(dy[i * ld + j]);
  partial[int64_t(blockIdx.y) * n + j] = float(s);
}

// ---- master weights ------------------------------------------------------------------------------------------

template <class T>
__device__ inline void store_as(T* W, int64_t i, float v);
template <>
__device__ inline void store_as<float>(float* W, int64_t i, float v) {
  W[i] = v;
}
template <>
__device__ inline void store_as<uint16_t>(uint16_t* W, int64_t i, float v) {
  W[i] = ln::f32_to_bf16(v);
}

// Thread per master value: its place in W by the layout.
template <class T>
__global__ void write_master_kernel(MasterLayout layout, const float* master, int64_t rows, int64_t cols,
                                    const int32_t* index, int64_t n, T* W, float add) {
  const int64_t total = layout == MasterLayout::Dense ? rows * cols : layout == MasterLayout::Rows ? n * cols : rows * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t dst = e;
    if (layout == MasterLayout::Rows) dst = int64_t(index[e / cols]) * cols + e % cols;
    if (layout == MasterLayout::Cols) dst = (e / n) * cols + index[e % n];
    store_as(W, dst, add == 0.f ? master[e] : add + master[e]);
  }
}

// ---- optimizer -----------------------------------------------------------------------------------------------

// Block b sums the squares of elements [b * kSumsqPerBlock, ...) strided by the grid (fixed grid for a given n).
__global__ void sumsq_partial_kernel(const float* x, int64_t n, double* partials) {
  __shared__ double shm[32];
  double s = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(x[i]) * double(x[i]);
  s = block_sum(s, shm);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void sumsq_finish_kernel(const double* partials, int64_t n_partials, double* out) {
  double s = 0;
  for (int64_t b = 0; b < n_partials; ++b) s += partials[b];
  *out = s;
}

// The CPU trainer's AdamW (trainer.cpp Trainer::step), operation by operation, rounded as the CPU rounds.
__global__ void adamw_kernel(int64_t n, float* master, const float* grad, float* m, float* v, float b1, float b2,
                             float eps, float step_size, float bc2_sqrt, float decay, float clip_scale) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    math::adamw_update(__fmul_rn(grad[i], clip_scale), b1, b2, eps, step_size, bc2_sqrt, decay, &master[i], &m[i],
                       &v[i]);
}

__global__ void lora_dropout_kernel(int64_t M, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy,
                                    uint64_t key, float p, bool accumulate) {
  const float keep_scale = __fdiv_rn(1.f, __fsub_rn(1.f, p));
  const int64_t total = M * K;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / K, k = e % K;
    const float val = math::lora_keep(key, i, k, K, p) ? __fmul_rn(x[i * ldx + k], keep_scale) : 0.f;
    float* out = y + i * ldy + k;
    *out = accumulate ? __fadd_rn(*out, val) : val;
  }
}

// ---- backward GEMMs of last resort ---------------------------------------------------------------------------

// Thread per dX[i, k] (k across threads: W and dX rows read coalesced), n in order.
template <class T>
__global__ void gemm_simple_dx_kernel(int64_t M, int64_t N, int64_t K, const T* dY, int64_t lddy, const T* W,
                                      int64_t ldw, float* dX, int64_t lddx, bool accumulate) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= K) return;
  for (int64_t i = blockIdx.y; i < M; i += gridDim.y) {
    const T* g = dY + i * lddy;
    float acc = 0.f;
    for (int64_t n = 0; n < N; ++n) acc += as_f32(g[n]) * as_f32(W[n * ldw + k]);
    float* d = dX + i * lddx + k;
    *d = accumulate ? *d + acc : acc;
  }
}

// Thread per dW[n, k] (k across threads), i in order.
template <class T>
__global__ void gemm_simple_dw_kernel(int64_t M, int64_t N, int64_t K, const T* dY, int64_t lddy, const T* X,
                                      int64_t ldx, float* dW, int64_t lddw) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= K) return;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    float acc = 0.f;
    for (int64_t i = 0; i < M; ++i) acc += as_f32(dY[i * lddy + n]) * as_f32(X[i * ldx + k]);
    dW[n * lddw + k] += acc;
  }
}

dim3 column_grid(int64_t n, int64_t partials) { return dim3{unsigned((n + kThreads - 1) / kThreads), unsigned(partials)}; }

}  // namespace

// ---- norms ---------------------------------------------------------------------------------------------------

int64_t rmsnorm_dw_partials(int64_t M, int64_t n) {
  // the partial sums of every row block, then r_t of every row
  return ((M + kRowsPerPartial - 1) / kRowsPerPartial) * n + M;
}
int64_t layernorm_dw_partials(int64_t M, int64_t n) { return rmsnorm_dw_partials(M, n) + M; }  // and the means

// The launches of both norms' backward (rmsnorm_backward, layernorm_backward): dx, then dw from block partials
// reduced in order; the rows' r (and LayerNorm's means) live behind the partials.
static void norm_backward_rows(const char* fn, bool layer, int64_t M, int64_t n, const float* x, int64_t ldx,
                               const float* w, float eps, const float* dy, int64_t lddy, float* dx, int64_t lddx,
                               bool accumulate, float* dw, float* dw_partials, Stream stream) {
  if (M <= 0 || n <= 0) return;
  if (M > 2147483647) bad(fn, "too many rows");
  if (dw && !dw_partials) bad(fn, "dw needs the dw_partials scratch");
  const int64_t nb = (M + kRowsPerPartial - 1) / kRowsPerPartial;
  if (nb > 65535) bad(fn, "too many rows for the dw partials (at most 65535 * 64)");
  float* rstd = dw ? dw_partials + nb * n : nullptr;
  float* mean = dw && layer ? rstd + M : nullptr;
  cudaStream_t s = as_stream(stream);
  if (layer)
    layernorm_dx_kernel<<<unsigned(M), kThreads, 0, s>>>(n, x, ldx, w, eps, dy, lddy, dx, lddx, accumulate, mean, rstd);
  else
    rmsnorm_dx_kernel<<<unsigned(M), kThreads, 0, s>>>(n, x, ldx, w, eps, dy, lddy, dx, lddx, accumulate, rstd);
  check_launch(fn);
  if (!dw) return;
  if (layer)
    layernorm_dw_partial_kernel<<<column_grid(n, nb), kThreads, 0, s>>>(M, n, x, ldx, dy, lddy, mean, rstd,
                                                                        dw_partials);
  else
    rmsnorm_dw_partial_kernel<<<column_grid(n, nb), kThreads, 0, s>>>(M, n, x, ldx, dy, lddy, rstd, dw_partials);
  check_launch(fn);
  column_partials_reduce_kernel<<<column_grid(n, 1), kThreads, 0, s>>>(n, nb, dw_partials, dw);
  check_launch(fn);
}

void layernorm_backward(int64_t M, int64_t n, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                        int64_t lddy, float* dx, int64_t lddx, bool accumulate, float* dw, float* dw_partials,
                        Stream stream) {
  norm_backward_rows("layernorm_backward", true, M, n, x, ldx, w, eps, dy, lddy, dx, lddx, accumulate, dw,
                     dw_partials, stream);
}

void rmsnorm_backward(int64_t M, int64_t n, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                      int64_t lddy, float* dx, int64_t lddx, bool accumulate, float* dw, float* dw_partials,
                      Stream stream) {
  norm_backward_rows("rmsnorm_backward", false, M, n, x, ldx, w, eps, dy, lddy, dx, lddx, accumulate, dw,
                     dw_partials, stream);
}

// ---- RoPE ----------------------------------------------------------------------------------------------------

void rope_backward(int64_t T, float* dx, int64_t ld, int n_heads, int head_dim, const int32_t* pos,
                   const float* cos_tab, const float* sin_tab, Stream stream, bool interleaved) {
  if (T <= 0 || n_heads <= 0) return;
  if (head_dim <= 0 || head_dim % 2) bad("rope_backward", "head_dim must be even and positive");
  rope_backward_kernel<<<grid_for(T * n_heads * (head_dim / 2)), kThreads, 0, as_stream(stream)>>>(
      T, dx, ld, n_heads, head_dim, pos, cos_tab, sin_tab, interleaved);
  check_launch("rope_backward");
}

// ---- attention -----------------------------------------------------------------------------------------------

static void check_attn(const char* fn, int64_t T, int n_heads, int n_kv_heads, int head_dim) {
  if (head_dim <= 0 || head_dim > kMaxHeadDim) bad(fn, "head_dim must be in [1, 256]");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_heads > 65535)
    bad(fn, "n_heads must be a multiple of n_kv_heads (and <= 65535)");
  if (T > 2147483647) bad(fn, "too many rows");
}

void attention_backward(int64_t T, int n_heads, int n_kv_heads, int head_dim, const float* q, int64_t ldq,
                        const float* k, const float* v, int64_t ldkv, const float* out, int64_t ldo,
                        const float* dout, int64_t lddo, const float* lse, const int64_t* seq_row0,
                        const int32_t* seq_len, const int32_t* pos, float scale, float* dq, int64_t lddq, float* dk,
                        float* dv, int64_t lddkv, float* d_rows, Stream stream, int window, float cap) {
  (void)pos;  // packed sequences without a cache: row t's position is t - seq_row0[t]
  if (T <= 0) return;
  check_attn("attention_backward", T, n_heads, n_kv_heads, head_dim);
  const int64_t rows_heads = T * n_heads;
  attention_d_rows_kernel<<<unsigned((rows_heads * 32 + kThreads - 1) / kThreads), kThreads, 0, as_stream(stream)>>>(
      rows_heads, n_heads, head_dim, out, ldo, dout, lddo, d_rows);
  check_launch("attention_backward (D rows)");
  attention_dq_kernel<<<dim3{unsigned(T), unsigned(n_heads)}, kAttnThreads, 0, as_stream(stream)>>>(
      n_heads, n_kv_heads, head_dim, q, ldq, k, v, ldkv, dout, lddo, lse, d_rows, seq_row0, scale, cap, window, dq,
      lddq);
  check_launch("attention_backward (dq)");
  attention_dkv_kernel<<<dim3{unsigned(T), unsigned(n_kv_heads)}, kAttnThreads, 0, as_stream(stream)>>>(
      n_heads, n_kv_heads, head_dim, q, ldq, k, v, ldkv, dout, lddo, lse, d_rows, seq_row0, seq_len, scale, cap, window,
      dk, dv, lddkv);
  check_launch("attention_backward (dk, dv)");
}

// ---- FFN -----------------------------------------------------------------------------------------------------

void swiglu_backward(int64_t M, int64_t I, const void* gu, DType gu_dtype, int64_t ldgu, const float* da, int64_t ldda,
                     float* dgu, uint16_t* dgu_bf16, int64_t lddgu, Stream stream, bool gelu) {
  if (M <= 0 || I <= 0) return;
  if (!dgu && !dgu_bf16) bad("swiglu_backward", "no output");
  if (gu_dtype == DType::BF16)
    swiglu_backward_kernel<uint16_t><<<grid_for(M * I), kThreads, 0, as_stream(stream)>>>(
        M, I, static_cast<const uint16_t*>(gu), ldgu, da, ldda, dgu, dgu_bf16, lddgu, gelu);
  else if (gu_dtype == DType::F32)
    swiglu_backward_kernel<float><<<grid_for(M * I), kThreads, 0, as_stream(stream)>>>(
        M, I, static_cast<const float*>(gu), ldgu, da, ldda, dgu, dgu_bf16, lddgu, gelu);
  else
    bad("swiglu_backward", "gate/up must be float32 or bf16");
  check_launch("swiglu_backward");
}

// ---- loss ----------------------------------------------------------------------------------------------------

void crossentropy_backward(int64_t rows, int64_t V, float* logits, int64_t ld, const int32_t* targets, float scale,
                           double* row_loss, Stream stream) {
  if (rows <= 0) return;
  if (V <= 0) bad("crossentropy_backward", "vocabulary size must be positive");
  if (rows > 2147483647) bad("crossentropy_backward", "too many rows");
  crossentropy_kernel<<<unsigned(rows), kThreads, 0, as_stream(stream)>>>(V, logits, ld, targets, scale, row_loss);
  check_launch("crossentropy_backward");
}

void logits_chain(int64_t M, int64_t V, float* dlogits, int64_t ld, const float* capped, int64_t ldy, float scale,
                  float cap, Stream stream) {
  if (M <= 0 || V <= 0 || (scale == 1.f && cap == 0.f)) return;
  if (cap > 0 && !capped) bad("logits_chain", "soft-capping needs the capped logits");
  logits_chain_kernel<<<grid_for(M * V), kThreads, 0, as_stream(stream)>>>(M, V, dlogits, ld, capped, ldy, scale, cap);
  check_launch("logits_chain");
}

// ---- embedding -----------------------------------------------------------------------------------------------

void embedding_backward(int64_t n_groups, const int32_t* group_token, const int64_t* group_start,
                        const int64_t* order, const float* dh, int64_t lddh, int64_t H, float* dE, int64_t lde,
                        float scale, Stream stream) {
  if (n_groups <= 0 || H <= 0) return;
  if (n_groups > 2147483647) bad("embedding_backward", "too many token groups");
  embedding_backward_kernel<<<unsigned(n_groups), kThreads, 0, as_stream(stream)>>>(group_token, group_start, order,
                                                                                   dh, lddh, H, dE, lde, scale);
  check_launch("embedding_backward");
}

// ---- sparse weight gradients ---------------------------------------------------------------------------------

void gather_cols(int64_t M, int64_t n, const float* x, int64_t ldx, const int32_t* index, float* y, int64_t ldy,
                 Stream stream) {
  if (M <= 0 || n <= 0) return;
  gather_cols_kernel<float><<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, x, ldx, index, y, ldy);
  check_launch("gather_cols");
}

void gather_cols(int64_t M, int64_t n, const void* x, int64_t ldx, const int32_t* index, void* y, int64_t ldy,
                 DType dtype, Stream stream) {
  if (dtype == DType::F32) {
    gather_cols(M, n, static_cast<const float*>(x), ldx, index, static_cast<float*>(y), ldy, stream);
    return;
  }
  if (dtype != DType::BF16) bad("gather_cols", "values must be BF16 or F32");
  if (M <= 0 || n <= 0) return;
  gather_cols_kernel<uint16_t><<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(
      M, n, static_cast<const uint16_t*>(x), ldx, index, static_cast<uint16_t*>(y), ldy);
  check_launch("gather_cols (bf16)");
}

void scatter_cols(int64_t M, int64_t n, const float* x, int64_t ldx, const int32_t* index, float* y, int64_t ldy,
                  bool accumulate, Stream stream) {
  if (M <= 0 || n <= 0) return;
  scatter_cols_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, x, ldx, index, y, ldy, accumulate);
  check_launch("scatter_cols");
}

int64_t colsum_partials(int64_t M, int64_t n) { return ((M + kRowsPerPartial - 1) / kRowsPerPartial) * n; }

void colsum_accumulate(int64_t M, int64_t n, const float* dy, int64_t ld, float* db, float* partials, Stream stream) {
  if (M <= 0 || n <= 0) return;
  const int64_t nb = (M + kRowsPerPartial - 1) / kRowsPerPartial;
  if (nb > 65535) bad("colsum_accumulate", "too many rows (at most 65535 * 64)");
  colsum_partial_kernel<<<column_grid(n, nb), kThreads, 0, as_stream(stream)>>>(M, n, dy, ld, partials);
  check_launch("colsum_accumulate (partials)");
  column_partials_reduce_kernel<<<column_grid(n, 1), kThreads, 0, as_stream(stream)>>>(n, nb, partials, db);
  check_launch("colsum_accumulate");
}

// ---- weights from master copies ------------------------------------------------------------------------------

void write_master(MasterLayout layout, const float* master, int64_t rows, int64_t cols, const int32_t* index,
                  int64_t n, void* W, DType w_dtype, Stream stream, float add) {
  if (layout != MasterLayout::Dense && !index) bad("write_master", "rows/cols layouts need the index");
  const int64_t total = layout == MasterLayout::Dense ? rows * cols : layout == MasterLayout::Rows ? n * cols : rows * n;
  if (total <= 0) return;
  if (w_dtype == DType::BF16)
    write_master_kernel<uint16_t><<<grid_for(total), kThreads, 0, as_stream(stream)>>>(
        layout, master, rows, cols, index, n, static_cast<uint16_t*>(W), add);
  else if (w_dtype == DType::F32)
    write_master_kernel<float><<<grid_for(total), kThreads, 0, as_stream(stream)>>>(layout, master, rows, cols, index,
                                                                                    n, static_cast<float*>(W), add);
  else
    bad("write_master", "the weight dtype must be BF16 or F32");
  check_launch("write_master");
}

// ---- optimizer -----------------------------------------------------------------------------------------------

int64_t sumsq_partials(int64_t n) {
  const int64_t b = (n + kSumsqPerBlock - 1) / kSumsqPerBlock;
  return std::max<int64_t>(1, std::min(b, kSumsqMaxBlocks));
}

void sum_of_squares(const float* x, int64_t n, double* partials, double* out, Stream stream) {
  const int64_t nb = sumsq_partials(n);
  sumsq_partial_kernel<<<unsigned(nb), kThreads, 0, as_stream(stream)>>>(x, n < 0 ? 0 : n, partials);
  check_launch("sum_of_squares (partials)");
  sumsq_finish_kernel<<<1, 1, 0, as_stream(stream)>>>(partials, nb, out);
  check_launch("sum_of_squares");
}

void adamw_step(int64_t n, float* master, const float* grad, float* m, float* v, float beta1, float beta2, float eps,
                float step_size, float bc2_sqrt, float decay, float clip_scale, Stream stream) {
  if (n <= 0) return;
  adamw_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(n, master, grad, m, v, beta1, beta2, eps, step_size,
                                                                bc2_sqrt, decay, clip_scale);
  check_launch("adamw_step");
}

void lora_dropout(int64_t M, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, uint64_t key, float p,
                  bool accumulate, Stream stream) {
  if (M <= 0 || K <= 0) return;
  if (!(p >= 0.f && p < 1.f)) bad("lora_dropout", "p must be in [0, 1)");
  lora_dropout_kernel<<<grid_for(M * K), kThreads, 0, as_stream(stream)>>>(M, K, x, ldx, y, ldy, key, p, accumulate);
  check_launch("lora_dropout");
}

// ---- backward GEMMs of last resort ---------------------------------------------------------------------------

void gemm_simple_dx(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* W, int64_t ldw, bool bf16,
                    float* dX, int64_t lddx, bool accumulate, Stream stream) {
  if (M <= 0 || K <= 0) return;
  const dim3 grid{unsigned((K + 127) / 128), unsigned(std::min<int64_t>(M, 65535)), 1u};
  if (bf16)
    gemm_simple_dx_kernel<uint16_t><<<grid, 128, 0, as_stream(stream)>>>(
        M, N, K, static_cast<const uint16_t*>(dY), lddy, static_cast<const uint16_t*>(W), ldw, dX, lddx, accumulate);
  else
    gemm_simple_dx_kernel<float><<<grid, 128, 0, as_stream(stream)>>>(
        M, N, K, static_cast<const float*>(dY), lddy, static_cast<const float*>(W), ldw, dX, lddx, accumulate);
  check_launch("gemm_simple_dx");
}

void gemm_simple_dw(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* X, int64_t ldx, bool bf16,
                    float* dW, int64_t lddw, Stream stream) {
  if (N <= 0 || K <= 0) return;
  const dim3 grid{unsigned((K + 127) / 128), unsigned(std::min<int64_t>(N, 65535)), 1u};
  if (bf16)
    gemm_simple_dw_kernel<uint16_t><<<grid, 128, 0, as_stream(stream)>>>(
        M, N, K, static_cast<const uint16_t*>(dY), lddy, static_cast<const uint16_t*>(X), ldx, dW, lddw);
  else
    gemm_simple_dw_kernel<float><<<grid, 128, 0, as_stream(stream)>>>(
        M, N, K, static_cast<const float*>(dY), lddy, static_cast<const float*>(X), ldx, dW, lddw);
  check_launch("gemm_simple_dw");
}

}  // namespace cuda
}  // namespace ln
