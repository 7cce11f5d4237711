// CPU feature detection and the run-time choice of kernel family (see CpuKernel in kernels/gemm.h).
// Kernels that need AVX2/FMA/F16C live in *_avx2.cpp files compiled with those flags; they may only be called
// after cpu_supports(CpuKernel::Avx2) said yes, otherwise the process dies with SIGILL on older CPUs.
#pragma once
#include "kernels/gemm.h"

namespace ln {

// True when this CPU (and OS, for the ymm state) can run kernel family k. Plain is always supported.
bool cpu_supports(CpuKernel k);

}  // namespace ln
