// The one element-wise step the CUDA trainer needs beyond train_kernels.h: x *= s (the LoRA scale alpha / r on
// the adapter's hidden rows and their gradient, as train/lora.cpp scale_inplace). Plain C++ (trainer_scale.cu).
#pragma once
#include <cstdint>

#include "cuda/cuda_backend.h"

namespace ln {
namespace cuda {

// x[i] = x[i] * s for n contiguous floats (one float multiplication, as the CPU).
void scale_inplace(float* x, int64_t n, float s, Stream stream);

}  // namespace cuda
}  // namespace ln
