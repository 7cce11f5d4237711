// Types shared by every backend (CPU kernels, the CUDA runtime, the trainer and the binding): a reference to a
// checkpoint tensor in its stored dtype, and the compute mode. They live here, not in a kernel header, so that
// a backend can name them without pulling in another backend's kernels.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace ln {

// A checkpoint tensor as stored (memory-mapped on the CPU; a device pointer inside the CUDA runtime).
// Linear weights are [N = out_features][K = in_features], row-major and contiguous.
struct WeightRef {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;  // N (out features), or the size of a 1-D tensor
  int64_t cols = 0;  // K (in features); 1 for 1-D tensors
  bool empty() const { return data == nullptr; }
};

// f32: float32 activations, products and accumulation.
// bf16: activations and weights rounded to bf16 before the product, float32 accumulation (what bf16 tensor-core
// and AVX512-BF16 dot products compute); the output stays float32.
enum class Compute : int32_t { F32 = 0, BF16 = 1 };

}  // namespace ln
