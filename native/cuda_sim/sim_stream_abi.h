// How the cuBLASLt stand-in (fake_cublaslt.cpp, a library of its own, loaded with dlopen) queues its matmuls on
// the simulator's streams (sim_runtime.cpp) without linking to the simulator: a simulator stream (a cudaStream_t
// other than NULL) starts with this record. The real cuBLASLt runs a matmul in stream order on the device; so does
// the stand-in, through launch_host_func, which is cudaLaunchHostFunc on that stream (docs/CUDA-SIM.md,
// "Streams").
#pragma once
#include <cstdint>

struct LnSimStreamAbi {
  uint64_t magic;  // kLnSimStreamMagic
  // Runs fn(data) once the work queued on `stream` before it has run; returns a cudaError_t (0: queued).
  int (*launch_host_func)(void* stream, void (*fn)(void*), void* data);
};
constexpr uint64_t kLnSimStreamMagic = 0x4d41455254534e4cull;  // "LNSTREAM"
