// A minimal test runner for the native engine (no framework: it must build under ASan/UBSan and run under
// valgrind without extra dependencies). Each test file registers cases with LN_TEST; failures are counted and the
// closing line reads "N passed, M failed". The one argument selects tests: a substring of their names, or "=name" for
// exactly one (scripts/sanitize.sh runs each test in a process of its own).
#include "test_util.h"

#include <cstdio>
#include <cstring>

namespace lntest {
std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
int g_failures = 0;
}  // namespace lntest

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  const bool exact = filter && filter[0] == '=';
  int passed = 0, failed = 0;
  for (auto& c : lntest::registry()) {
    if (exact ? std::strcmp(c.name, filter + 1) != 0 : filter && !std::strstr(c.name, filter)) continue;
    int before = lntest::g_failures;
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::printf("  exception: %s\n", e.what());
      ++lntest::g_failures;
    }
    bool ok = lntest::g_failures == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
