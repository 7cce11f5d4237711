// The CUDA runtime behind the runtime interface (implemented in native/src/cuda when the addon is built with
// nvcc; runtime/cuda_runtime_stub.cpp answers "built without CUDA" otherwise). Plain C++: no CUDA headers.
#pragma once
#include <memory>
#include <string>

#include "runtime/runtime.h"

namespace ln {

// True when this build contains the CUDA runtime (compiled with nvcc).
bool cuda_built();
// Usable CUDA devices: 0 when the build has no CUDA runtime, no driver or no GPU (never throws).
int cuda_device_count();
// Why cuda_device_count() is 0 ("" when a device is present), for the loud CPU fallback and for errors.
const char* cuda_unavailable_reason();
// Why this build cannot run on CUDA device `device_index` ("" when it can): no device, no such index, or a GPU whose
// compute capability this build's GPU code does not cover (runtime/cuda_archs.h). Never throws.
std::string cuda_device_problem(int device_index);

// Uploads the weights (host memory: the memory-mapped checkpoint) once to device `device_index` and returns the
// runtime. bf16: matrices held as bf16 (a BF16 checkpoint as stored; F16/F32 rounded to bf16, which is the CPU's
// Compute::BF16 rule W' = round_bf16(W)); f32: matrices as float32, exact float32 products. Throws
// std::invalid_argument (config or weights the runtime does not support, with the reason) or std::runtime_error
// (no device, no cuBLASLt — naming where it looked —, out of device memory with the bytes asked for).
std::unique_ptr<Runtime> make_cuda_runtime(const ModelConfig& config, const ModelWeights& weights, int device_index,
                                           Compute compute);

}  // namespace ln
