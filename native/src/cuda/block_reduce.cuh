// Warp and block reductions shared by the CUDA kernels (kernels.cu, site_kernels.cu). Device code only: include
// from .cu files. blockDim.x must be a multiple of 32 and <= 1024, and every thread of the block must call.
#pragma once
#include <cuda_runtime.h>

#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace reduce {

template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
// a . b over n floats: lane-strided products, then the warp tree; the result in lane 0. The attention backward's
// D_i = dout_i . out_i, in one order wherever it is computed (simple, tiled and tensor-core kernels).
__device__ inline float warp_dot(const float* a, const float* b, int n) {
  float s = 0.f;
  for (int d = threadIdx.x & 31; d < n; d += 32) s += a[d] * b[d];
  return warp_sum(s);
}
// The same with a in bf16 (the tensor-core backward's saved output; widened exactly, so the same sums as above on
// the widened values).
__device__ inline float warp_dot(const uint16_t* a_bf16, const float* b, int n) {
  float s = 0.f;
  for (int d = threadIdx.x & 31; d < n; d += 32) s += ln::bf16_to_f32(a_bf16[d]) * b[d];
  return warp_sum(s);
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline math::SoftmaxState warp_softmax(math::SoftmaxState st) {
  for (int o = 16; o > 0; o >>= 1) {
    math::SoftmaxState other{__shfl_down_sync(0xffffffffu, st.m, o), __shfl_down_sync(0xffffffffu, st.s, o)};
    float ra, rb;
    st = math::softmax_merge(st, other, &ra, &rb);
  }
  return st;
}

// Sum over the block; the result is returned to every thread. `shm` holds >= 32 T.
template <class T>
__device__ inline T block_sum(T v, T* shm) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // shm may still be read from a previous reduction
  if (lane == 0) shm[wid] = v;
  __syncthreads();
  if (wid == 0) {
    T r = lane < nw ? shm[lane] : T(0);
    r = warp_sum(r);
    if (lane == 0) shm[0] = r;
  }
  __syncthreads();
  return shm[0];
}

// Max over the block (NaN ignored, like the CPU's `x > m ? x : m` scan); -inf for an all -inf block.
__device__ inline float block_max(float v, float* shm) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shm[wid] = v;
  __syncthreads();
  if (wid == 0) {
    float r = lane < nw ? shm[lane] : -INFINITY;
    r = warp_max(r);
    if (lane == 0) shm[0] = r;
  }
  __syncthreads();
  return shm[0];
}

// Online-softmax state of the whole block, merged with math::softmax_merge. shm_m/shm_s hold >= 32 floats.
__device__ inline math::SoftmaxState block_softmax(math::SoftmaxState st, float* shm_m, float* shm_s) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  st = warp_softmax(st);
  __syncthreads();
  if (lane == 0) {
    shm_m[wid] = st.m;
    shm_s[wid] = st.s;
  }
  __syncthreads();
  if (wid == 0) {
    math::SoftmaxState r = lane < nw ? math::SoftmaxState{shm_m[lane], shm_s[lane]} : math::softmax_init();
    r = warp_softmax(r);
    if (lane == 0) {
      shm_m[0] = r.m;
      shm_s[0] = r.s;
    }
  }
  __syncthreads();
  return math::SoftmaxState{shm_m[0], shm_s[0]};
}

}  // namespace reduce
}  // namespace cuda
}  // namespace ln
