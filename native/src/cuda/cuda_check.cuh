// Error checks and the stream cast shared by the .cu files of the CUDA runtime: a failed CUDA call or launch
// becomes a std::runtime_error naming what failed (launch configuration errors are reported at once by
// cudaGetLastError; errors while a kernel runs surface at the next synchronize).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/cuda_backend.h"

namespace ln {
namespace cuda {

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("langneurons cuda: ") + what + ": " + cudaGetErrorString(e));
}

inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace cuda
}  // namespace ln
