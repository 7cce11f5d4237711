// CPU feature detection and the run-time choice of kernel family (CpuKernel in kernels/gemm.h; the functions of each
// family are gathered in one table, kernels/kernel_table.h). Kernels that need AVX2/FMA/F16C live in *_avx2.cpp
// files, AVX-512 ones in *_avx512.cpp / *_avx512bf16.cpp, each compiled with its own flags and only on x86; they may
// only be called after cpu_supports said yes for their family, otherwise the process dies with SIGILL.
#pragma once
#include <vector>

#include "kernels/gemm.h"

namespace ln {

// True when this CPU (and OS, for the ymm/zmm state) can run kernel family k. Plain is always supported; the x86
// families are never supported on other architectures (their sources are not even compiled there).
bool cpu_supports(CpuKernel k);

// Every family, from the most portable to the widest: Plain, Avx2, Avx512, Avx512Bf16.
const std::vector<CpuKernel>& all_kernels();
// The families this CPU supports (in that order), for tests and benchmarks that run each of them.
std::vector<CpuKernel> supported_kernels();
// What a family needs from the CPU, in words (for "skipped" and refusal messages).
const char* kernel_requirements(CpuKernel k);

}  // namespace ln
