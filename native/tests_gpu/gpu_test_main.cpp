// native_gpu_tests: the GPU tests (native/tests_gpu/*.cpp), on the LN_TEST framework of native/tests. Without a
// usable CUDA device every test is reported as SKIPPED (never as passed) and the binary exits 0.
//   native_gpu_tests [filter] [--fixtures <dir>] [--kernels-only]
// --fixtures (default $LANGNEURONS_FIXTURES, then ../shared/fixtures/models): the fixture checkpoints.
// --kernels-only: only the launcher tests (not gpu_model_* / gpu_fixtures_*), e.g. under compute-sanitizer.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gpu_test_util.h"
#include "runtime/cuda_runtime.h"

namespace lntest {
std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
int g_failures = 0;
}  // namespace lntest

namespace lngpu {
std::string g_fixtures = "../shared/fixtures/models";
}

int main(int argc, char** argv) {
  const char* filter = nullptr;
  bool kernels_only = false;
  if (const char* env = std::getenv("LANGNEURONS_FIXTURES")) lngpu::g_fixtures = env;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--fixtures") == 0 && i + 1 < argc)
      lngpu::g_fixtures = argv[++i];
    else if (std::strcmp(argv[i], "--kernels-only") == 0)
      kernels_only = true;
    else
      filter = argv[i];
  }
  // Device 0 runs the tests: without one, or on a GPU this build has no code for, each is reported SKIPPED.
  const std::string device_problem = ln::cuda_device_problem(0);
#if defined(LN_CUDA_SIM)
  // Built on native/cuda_sim (scripts/cuda-sim-check.sh): the kernels ran on the CPU. Say so on every summary.
  const char* where = " on the CUDA simulator (CPU, not a GPU)";
  std::printf("native_gpu_tests%s: checks the CUDA code's logic; GPU results come from scripts/gpu-check.sh\n", where);
#else
  const char* where = "";
#endif
  int passed = 0, failed = 0, skipped = 0;
  for (auto& c : lntest::registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    if (kernels_only && (std::strncmp(c.name, "gpu_model_", 10) == 0 || std::strncmp(c.name, "gpu_fixtures_", 13) == 0))
      continue;
    if (!device_problem.empty()) {
      std::printf("SKIPPED %s (%s)\n", c.name, device_problem.c_str());
      ++skipped;
      continue;
    }
    const int before = lntest::g_failures;
    try {
      c.fn();
    } catch (const lngpu::Skip& s) {
      std::printf("SKIPPED %s (%s)\n", c.name, s.what());
      ++skipped;
      continue;
    } catch (const std::exception& e) {
      std::printf("  exception: %s\n", e.what());
      ++lntest::g_failures;
    }
    const bool ok = lntest::g_failures == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
    (ok ? passed : failed)++;
    std::fflush(stdout);
  }
  std::printf("gpu tests%s: %d passed, %d failed, %d skipped\n", where, passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}
