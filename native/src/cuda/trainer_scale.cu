// See trainer_scale.h.
#include <algorithm>

#include "cuda/cuda_check.cuh"
#include "cuda/trainer_scale.h"

namespace ln {
namespace cuda {

namespace {
constexpr int kThreads = 256;

__global__ void scale_kernel(float* x, int64_t n, float s) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __fmul_rn(x[i], s);
}
}  // namespace

void scale_inplace(float* x, int64_t n, float s, Stream stream) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  scale_kernel<<<unsigned(blocks), kThreads, 0, as_stream(stream)>>>(x, n, s);
  check_launch("scale_inplace");
}

}  // namespace cuda
}  // namespace ln
