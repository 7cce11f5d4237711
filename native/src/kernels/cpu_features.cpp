// Which kernel family runs: the widest one the CPU supports, unless LANGNEURONS_KERNEL=plain|avx2|avx512|avx512bf16
// asks otherwise. A request the CPU cannot honour is refused loudly on stderr (a silent fallback would make a
// benchmark or a bug report lie about what it measured).
#include "kernels/cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/kernel_table.h"

namespace ln {

namespace {
struct X86Features {
  bool avx2 = false, avx512 = false, avx512bf16 = false;
};

const X86Features& x86_features() {
  static const X86Features f = [] {
    X86Features r;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    // __builtin_cpu_supports also checks that the OS saves the ymm / zmm and mask registers (XCR0), not only CPUID.
    __builtin_cpu_init();
    r.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    r.avx512 = r.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    r.avx512bf16 = r.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
    return r;
  }();
  return f;
}
}  // namespace

bool cpu_supports(CpuKernel k) {
  const X86Features& f = x86_features();
  switch (k) {
    case CpuKernel::Plain: return true;
    case CpuKernel::Avx2: return f.avx2;
    case CpuKernel::Avx512: return f.avx512;
    case CpuKernel::Avx512Bf16: return f.avx512bf16;
  }
  return false;
}

const std::vector<CpuKernel>& all_kernels() {
  static const std::vector<CpuKernel> all{CpuKernel::Plain, CpuKernel::Avx2, CpuKernel::Avx512,
                                          CpuKernel::Avx512Bf16};
  return all;
}

std::vector<CpuKernel> supported_kernels() {
  std::vector<CpuKernel> out;
  for (CpuKernel k : all_kernels())
    if (cpu_supports(k)) out.push_back(k);
  return out;
}

const char* kernel_name(CpuKernel k) {
  switch (k) {
    case CpuKernel::Plain: return "plain";
    case CpuKernel::Avx2: return "avx2";
    case CpuKernel::Avx512: return "avx512";
    case CpuKernel::Avx512Bf16: return "avx512bf16";
  }
  return "?";
}

const char* kernel_requirements(CpuKernel k) {
  switch (k) {
    case CpuKernel::Plain: return "nothing";
    case CpuKernel::Avx2: return "an x86-64 CPU with AVX2, FMA and F16C";
    case CpuKernel::Avx512: return "an x86-64 CPU with AVX2/FMA/F16C and AVX-512 F, BW, VL and DQ";
    case CpuKernel::Avx512Bf16: return "an x86-64 CPU with AVX-512 F, BW, VL, DQ and AVX512_BF16";
  }
  return "?";
}

static CpuKernel best_supported() {
  CpuKernel best = CpuKernel::Plain;
  for (CpuKernel k : all_kernels())
    if (cpu_supports(k)) best = k;
  return best;
}

static CpuKernel initial_kernel() {
  const char* env = std::getenv("LANGNEURONS_KERNEL");
  const CpuKernel best = best_supported();
  if (!env || !*env) return best;
  for (CpuKernel want : all_kernels()) {
    if (std::strcmp(env, kernel_name(want)) != 0) continue;
    if (cpu_supports(want)) return want;
    std::fprintf(stderr,
                 "langneurons: WARNING: LANGNEURONS_KERNEL=%s refused: it needs %s, which this CPU is not; "
                 "using %s\n",
                 env, kernel_requirements(want), kernel_name(best));
    return best;
  }
  std::fprintf(stderr,
               "langneurons: WARNING: LANGNEURONS_KERNEL=%s is not one of plain|avx2|avx512|avx512bf16; using %s\n",
               env, kernel_name(best));
  return best;
}

// Read on every dispatch, written only by set_kernel: relaxed atomics are enough (the tables are constants).
static std::atomic<const CpuKernelTable*>& table_slot() {
  static std::atomic<const CpuKernelTable*> slot{&kernel_table(initial_kernel())};
  return slot;
}

const CpuKernelTable& cpu_kernels() { return *table_slot().load(std::memory_order_relaxed); }

CpuKernel active_kernel() { return cpu_kernels().family; }

void set_kernel(CpuKernel k) {
  if (!cpu_supports(k)) {
    std::fprintf(stderr, "langneurons: WARNING: set_kernel(%s) refused: it needs %s (keeping %s)\n", kernel_name(k),
                 kernel_requirements(k), kernel_name(active_kernel()));
    return;
  }
  table_slot().store(&kernel_table(k), std::memory_order_relaxed);
}

}  // namespace ln
