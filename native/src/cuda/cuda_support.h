// What the CUDA runtime and the CUDA trainer both check before touching a device: valid weights, (for the trainer)
// a family whose special parts its backward implements (the others are refused by name: they train on the CPU
// engine), a known compute mode, head_dim even and <= 256, and an existing device. Plain C++ (defined in
// cuda_runtime.cpp).
#pragma once
#include "core/tensor_types.h"
#include "model/model.h"

namespace ln {

// Throws std::invalid_argument (the reason, prefixed by `what`: "CUDA runtime", "CUDA trainer") or
// std::runtime_error (no usable device). The runtime runs every family of model/model.h; with `training` the
// features whose backward the CUDA trainer does not have yet are refused by name.
void check_cuda_supported(const ModelConfig& config, const ModelWeights& weights, int device_index, Compute compute,
                          const char* what, bool training);

}  // namespace ln
