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

// A failed call's error stays the thread's last error until read: it is read (cleared) here, so that a caller that
// catches this and goes on (a smaller batch, a fallback) does not get it again from the next check_launch, blamed on
// a kernel that did not fail. (A sticky error, from a kernel that faulted, still fails every later call.)
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("langneurons cuda: ") + what + ": " + cudaGetErrorString(e));
  }
}

inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace cuda
}  // namespace ln
