#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace lntest {
struct Case {
  const char* name;
  std::function<void()> fn;
};
std::vector<Case>& registry();
extern int g_failures;
struct Register {
  Register(const char* n, std::function<void()> f) { registry().push_back({n, std::move(f)}); }
};
}  // namespace lntest

#define LN_CONCAT2(a, b) a##b
#define LN_CONCAT(a, b) LN_CONCAT2(a, b)
#define LN_TEST(name)                                                      \
  static void name();                                                      \
  static lntest::Register LN_CONCAT(reg_, name)(#name, name);              \
  static void name()

#define LN_CHECK(cond)                                                                 \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
      ++lntest::g_failures;                                                            \
    }                                                                                  \
  } while (0)

#define LN_CHECK_MSG(cond, ...)                                                        \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);          \
      std::printf(__VA_ARGS__);                                                        \
      std::printf("\n");                                                               \
      ++lntest::g_failures;                                                            \
    }                                                                                  \
  } while (0)

// Runs f and checks that it throws std::invalid_argument whose message contains `fragment`.
template <class F>
void expect_invalid(F&& f, const char* fragment) {
  try {
    f();
    LN_CHECK_MSG(false, "expected std::invalid_argument containing '%s'", fragment);
  } catch (const std::invalid_argument& e) {
    LN_CHECK_MSG(std::string(e.what()).find(fragment) != std::string::npos, "message '%s' lacks '%s'", e.what(),
                 fragment);
  }
}
