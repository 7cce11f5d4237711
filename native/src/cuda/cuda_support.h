// What the CUDA runtime and the CUDA trainer both check before touching a device: valid weights (every family of
// model/model.h runs), a known compute mode, head_dim even and <= 256, and an existing device. Plain C++ (defined
// in cuda_runtime.cpp).
#pragma once
#include "core/tensor_types.h"
#include "model/model.h"

namespace ln {

// Throws std::invalid_argument (the reason, prefixed by `what`: "CUDA runtime", "CUDA trainer") or
// std::runtime_error (no usable device, or a GPU this build has no code for: cuda_device_problem).
void check_cuda_supported(const ModelConfig& config, const ModelWeights& weights, int device_index, Compute compute,
                          const char* what);

}  // namespace ln
