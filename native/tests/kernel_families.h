// The CPU kernel families a test runs: every family this CPU supports; the others are named as skipped (an AVX2
// machine skips the AVX-512 families, an arm64 one every x86 family), so a test log says what was checked.
#pragma once
#include <cstdio>
#include <vector>

#include "kernels/cpu_features.h"

namespace ln {

inline std::vector<CpuKernel> kernel_families_to_test() {
  std::vector<CpuKernel> run;
  for (CpuKernel k : all_kernels()) {
    if (cpu_supports(k))
      run.push_back(k);
    else
      std::printf("    skipped kernel family %s: needs %s\n", kernel_name(k), kernel_requirements(k));
  }
  std::printf("    kernel families tested:");
  for (CpuKernel k : run) std::printf(" %s", kernel_name(k));
  std::printf("\n");
  return run;
}

// Restores the process-wide kernel family a test found when it ends.
struct KernelFamilyRestore {
  CpuKernel saved = active_kernel();
  ~KernelFamilyRestore() { set_kernel(saved); }
};

}  // namespace ln
