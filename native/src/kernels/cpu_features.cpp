// Which kernel family runs: the best one the CPU supports, unless LANGNEURONS_KERNEL=plain|avx2 asks otherwise.
// A request the CPU cannot honour is refused loudly on stderr (a silent fallback would make a benchmark or a bug
// report lie about what it measured).
#include "kernels/cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ln {

bool cpu_supports(CpuKernel k) {
  if (k == CpuKernel::Plain) return true;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports("avx2") also checks that the OS saves the ymm registers (XCR0), not only CPUID.
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return avx2;
#else
  return false;
#endif
}

const char* kernel_name(CpuKernel k) { return k == CpuKernel::Avx2 ? "avx2" : "plain"; }

static CpuKernel best_supported() { return cpu_supports(CpuKernel::Avx2) ? CpuKernel::Avx2 : CpuKernel::Plain; }

static CpuKernel initial_kernel() {
  const char* env = std::getenv("LANGNEURONS_KERNEL");
  CpuKernel best = best_supported();
  if (!env || !*env) return best;
  CpuKernel want;
  if (std::strcmp(env, "plain") == 0) {
    want = CpuKernel::Plain;
  } else if (std::strcmp(env, "avx2") == 0) {
    want = CpuKernel::Avx2;
  } else {
    std::fprintf(stderr, "langneurons: WARNING: LANGNEURONS_KERNEL=%s is not one of plain|avx2; using %s\n", env,
                 kernel_name(best));
    return best;
  }
  if (!cpu_supports(want)) {
    std::fprintf(stderr,
                 "langneurons: WARNING: LANGNEURONS_KERNEL=%s requested but this CPU lacks AVX2/FMA/F16C; "
                 "using %s\n",
                 env, kernel_name(best));
    return best;
  }
  return want;
}

// Read on every GEMM call, written only by set_kernel: relaxed atomics are enough (no data hangs off it).
static std::atomic<int32_t>& kernel_slot() {
  static std::atomic<int32_t> slot{static_cast<int32_t>(initial_kernel())};
  return slot;
}

CpuKernel active_kernel() { return static_cast<CpuKernel>(kernel_slot().load(std::memory_order_relaxed)); }

void set_kernel(CpuKernel k) {
  if (!cpu_supports(k)) {
    std::fprintf(stderr, "langneurons: WARNING: set_kernel(%s) ignored: not supported by this CPU (keeping %s)\n",
                 kernel_name(k), kernel_name(active_kernel()));
    return;
  }
  kernel_slot().store(static_cast<int32_t>(k), std::memory_order_relaxed);
}

}  // namespace ln
