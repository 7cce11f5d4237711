// Element-wise kernels of the CUDA runtime and the device helpers of runtime_kernels.h. As in kernels.cu, the
// math is core/dtype.h / kernels/math.h; this file is indexing only.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/runtime_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

using elementwise::as_f32;
using elementwise::grid_for;
using elementwise::kThreads;
using elementwise::put;

__global__ void convert_bf16_kernel(const void* src, DType t, int64_t n, uint16_t* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = t == DType::BF16 ? static_cast<const uint16_t*>(src)[i] : ln::f32_to_bf16(math::load_f32(src, t, i));
}

__global__ void convert_f32_kernel(const void* src, DType t, int64_t n, float* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = math::load_f32(src, t, i);
}

// Row-wise kernels: grid-stride over M * n elements (rows are short enough that the division is cheap next to
// the memory traffic).
__global__ void f32_to_bf16_rows_kernel(int64_t M, int64_t n, const float* x, int64_t ldx, uint16_t* y, int64_t ldy) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    y[i * ldy + j] = ln::f32_to_bf16(x[i * ldx + j]);
  }
}

__global__ void add_rows_kernel(int64_t M, int64_t n, float* y, int64_t ldy, const float* x, int64_t ldx) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    y[i * ldy + j] += x[i * ldx + j];
  }
}

__global__ void bias_round_kernel(int64_t M, int64_t n, float* y, int64_t ldy, const float* bias, bool round) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    float v = y[i * ldy + j];
    if (bias) v += bias[j];
    if (round) v = ln::round_bf16(v);
    y[i * ldy + j] = v;
  }
}

__global__ void copy_rows_kernel(int64_t M, int64_t n, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const int64_t total = M * n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    y[i * ldy + j] = x[i * ldx + j];
  }
}

template <class T>
__global__ void gemm_simple_kernel(int64_t M, int64_t N, int64_t K, const T* X, int64_t ldx, const T* W, int64_t ldw,
                                   float* Y, int64_t ldy, bool accumulate) {
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  for (int64_t i = blockIdx.y; i < M; i += gridDim.y) {
    const T* x = X + i * ldx;
    const T* w = W + n * ldw;
    float acc = 0.f;
    for (int64_t k = 0; k < K; ++k) acc += as_f32(x[k]) * as_f32(w[k]);
    float* y = Y + i * ldy + n;
    *y = accumulate ? *y + acc : acc;
  }
}

// One block per token: rotate every (head, pair) of q and k with the token's table row (math::rope_rotate, the
// CPU's rope_apply), copy v, and store q / k / v in the output type (bf16 = round_bf16 of the float32 value).
template <class TOut>
__global__ void rope_qkv_kernel(const float* qkv, int64_t ld, const float* bias, bool round_pre, int n_heads,
                                int n_kv_heads, int head_dim, const int32_t* pos, const float* cos_tab,
                                const float* sin_tab, TOut* q_out, int64_t ldq, TOut* k_out, TOut* v_out, int64_t ldkv,
                                const int64_t* kv_row, bool interleaved) {
  const int64_t t = blockIdx.x;
  const int half = head_dim / 2;
  const float* row = qkv + t * ld;
  const float* c = cos_tab + int64_t(pos[t]) * half;
  const float* s = sin_tab + int64_t(pos[t]) * half;
  const int64_t qd = int64_t(n_heads) * head_dim, kvd = int64_t(n_kv_heads) * head_dim;
  TOut* qo = q_out + t * ldq;
  TOut* ko = k_out + kv_row[t] * ldkv;
  TOut* vo = v_out + kv_row[t] * ldkv;
  // The post-projection step (bias, bf16 rounding), when it was not run as a pass of its own.
  auto pre = [&](int64_t col) {
    float v = row[col];
    if (bias) v += bias[col];
    return round_pre ? ln::round_bf16(v) : v;
  };
  const int pairs = (n_heads + n_kv_heads) * half;
  for (int e = threadIdx.x; e < pairs; e += blockDim.x) {
    const int h = e / half, i = e % half;  // h < n_heads: a query head, else key head h - n_heads
    // The pair's two places within the head: (i, i + half), or (2i, 2i + 1) for Cohere's interleaved RoPE.
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const int64_t col = int64_t(h) * head_dim;  // q heads then k heads are adjacent in the qkv row
    float o0, o1;
    math::rope_rotate(pre(col + a), pre(col + b), c[i], s[i], &o0, &o1);
    if (h < n_heads) {
      put(qo, int64_t(h) * head_dim + a, o0);
      put(qo, int64_t(h) * head_dim + b, o1);
    } else {
      const int64_t kh = int64_t(h - n_heads) * head_dim;
      put(ko, kh + a, o0);
      put(ko, kh + b, o1);
    }
  }
  for (int64_t e = threadIdx.x; e < kvd; e += blockDim.x) put(vo, e, pre(qd + kvd + e));
}

}  // namespace

// ---- devices, streams, events, memory ------------------------------------------------------------------------

void set_device(int index) { check(cudaSetDevice(index), "cudaSetDevice"); }

DeviceInfo device_info(int index) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties");
  DeviceInfo d;
  d.name = p.name;
  d.major = p.major;
  d.minor = p.minor;
  d.total_bytes = int64_t(p.totalGlobalMem);
  d.sm_count = p.multiProcessorCount;
  d.smem_optin_bytes = int64_t(p.sharedMemPerBlockOptin);
  return d;
}

void mem_get_info(int64_t* free_bytes, int64_t* total_bytes) {
  size_t f = 0, t = 0;
  check(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
  *free_bytes = int64_t(f);
  *total_bytes = int64_t(t);
}

Stream stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  return s;
}
void stream_destroy(Stream s) {
  if (s) cudaStreamDestroy(as_stream(s));
}
void* host_alloc_pinned(size_t bytes) {
  void* p = nullptr;
  check(cudaMallocHost(&p, bytes), "cudaMallocHost");
  return p;
}
void host_free_pinned(void* p) {
  if (p) cudaFreeHost(p);
}
void memset_async(void* p, int value, size_t bytes, Stream stream) {
  if (bytes) check(cudaMemsetAsync(p, value, bytes, as_stream(stream)), "cudaMemsetAsync");
}
void copy_device(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)), "copy_device");
}
Event event_create() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  return e;
}
void event_destroy(Event e) {
  if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}
void event_record(Event e, Stream s) { check(cudaEventRecord(static_cast<cudaEvent_t>(e), as_stream(s)), "cudaEventRecord"); }
void event_synchronize(Event e) { check(cudaEventSynchronize(static_cast<cudaEvent_t>(e)), "cudaEventSynchronize"); }
float event_elapsed_ms(Event start, Event end) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(end)), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)), "cudaEventElapsedTime");
  return ms;
}

// ---- launchers -------------------------------------------------------------------------------------------------

void convert_to_bf16(const void* src, DType t, int64_t n, uint16_t* dst, Stream stream) {
  if (n <= 0) return;
  convert_bf16_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(src, t, n, dst);
  check_launch("convert_to_bf16");
}

void convert_to_f32(const void* src, DType t, int64_t n, float* dst, Stream stream) {
  if (n <= 0) return;
  convert_f32_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(src, t, n, dst);
  check_launch("convert_to_f32");
}

void f32_to_bf16_rows(int64_t M, int64_t n, const float* x, int64_t ldx, uint16_t* y, int64_t ldy, Stream stream) {
  if (M <= 0 || n <= 0) return;
  f32_to_bf16_rows_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, x, ldx, y, ldy);
  check_launch("f32_to_bf16_rows");
}

void add_rows(int64_t M, int64_t n, float* y, int64_t ldy, const float* x, int64_t ldx, Stream stream) {
  if (M <= 0 || n <= 0) return;
  add_rows_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, y, ldy, x, ldx);
  check_launch("add_rows");
}

void bias_round_rows(int64_t M, int64_t n, float* y, int64_t ldy, const float* bias, bool round, Stream stream) {
  if (M <= 0 || n <= 0 || (!bias && !round)) return;
  bias_round_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, y, ldy, bias, round);
  check_launch("bias_round_rows");
}

void copy_rows_f32(int64_t M, int64_t n, const float* x, int64_t ldx, float* y, int64_t ldy, Stream stream) {
  if (M <= 0 || n <= 0) return;
  copy_rows_kernel<<<grid_for(M * n), kThreads, 0, as_stream(stream)>>>(M, n, x, ldx, y, ldy);
  check_launch("copy_rows_f32");
}

void gemm_simple(int64_t M, int64_t N, int64_t K, const void* X, int64_t ldx, const void* W, int64_t ldw, bool bf16,
                 float* Y, int64_t ldy, bool accumulate, Stream stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid{unsigned((N + 127) / 128), unsigned(std::min<int64_t>(M, 65535)), 1u};
  if (bf16)
    gemm_simple_kernel<uint16_t><<<grid, 128, 0, as_stream(stream)>>>(M, N, K, static_cast<const uint16_t*>(X), ldx,
                                                                       static_cast<const uint16_t*>(W), ldw, Y, ldy,
                                                                       accumulate);
  else
    gemm_simple_kernel<float><<<grid, 128, 0, as_stream(stream)>>>(M, N, K, static_cast<const float*>(X), ldx,
                                                                    static_cast<const float*>(W), ldw, Y, ldy, accumulate);
  check_launch("gemm_simple");
}

void rope_qkv(int64_t T, const float* qkv, int64_t ld, const float* bias, bool round_pre, int n_heads, int n_kv_heads,
              int head_dim, const int32_t* pos, const float* cos_tab, const float* sin_tab, void* q_out, int64_t ldq,
              void* k_out, void* v_out, int64_t ldkv, const int64_t* kv_row, bool bf16_out, Stream stream,
              bool interleaved) {
  if (T <= 0) return;
  if (head_dim <= 0 || head_dim % 2 != 0) throw std::runtime_error("langneurons cuda: rope_qkv: head_dim must be even");
  if (T > 2147483647) throw std::runtime_error("langneurons cuda: rope_qkv: too many rows");
  if (bf16_out)
    rope_qkv_kernel<uint16_t><<<unsigned(T), 128, 0, as_stream(stream)>>>(
        qkv, ld, bias, round_pre, n_heads, n_kv_heads, head_dim, pos, cos_tab, sin_tab, static_cast<uint16_t*>(q_out), ldq,
        static_cast<uint16_t*>(k_out), static_cast<uint16_t*>(v_out), ldkv, kv_row, interleaved);
  else
    rope_qkv_kernel<float><<<unsigned(T), 128, 0, as_stream(stream)>>>(
        qkv, ld, bias, round_pre, n_heads, n_kv_heads, head_dim, pos, cos_tab, sin_tab, static_cast<float*>(q_out), ldq,
        static_cast<float*>(k_out), static_cast<float*>(v_out), ldkv, kv_row, interleaved);
  check_launch("rope_qkv");
}

}  // namespace cuda
}  // namespace ln
