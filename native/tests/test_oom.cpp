// Tests of core/oom.h: sizes written as the CLI prints them, and `allocating` turning a failed allocation (a
// std::bad_alloc, or the std::length_error of a vector asked for more than it can hold) into one message naming
// the thing and its size, while other errors and a more precise OutOfMemory from inside pass through unchanged.
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/oom.h"
#include "test_util.h"

LN_TEST(oom_format_bytes) {
  LN_CHECK(ln::format_bytes(0) == "0 B");
  LN_CHECK(ln::format_bytes(999) == "999 B");
  LN_CHECK(ln::format_bytes(1000) == "1.0 kB");
  LN_CHECK(ln::format_bytes(3.2e9) == "3.2 GB");
  LN_CHECK(ln::format_bytes(2.0 * 3 * 64 * 131072 * 32 * 4) == "6.4 GB");  // the KV cache of reliability-memory.test.ts
  LN_CHECK(ln::format_bytes(1.5e21) == "1500.0 EB");  // the largest unit
}

LN_TEST(oom_allocating_names_what_and_how_much) {
  // A vector asked for more than max_size(): std::length_error, thrown before any allocation (safe under ASan).
  std::vector<float> v;
  std::string msg;
  try {
    ln::allocating("the test buffer", 1e19, [&] { v.assign(v.max_size() + 1, 0.f); }, "ask for less");
  } catch (const ln::OutOfMemory& e) {
    msg = e.what();
    LN_CHECK(e.bytes() == 1e19);
  }
  LN_CHECK_MSG(msg == "out of memory allocating the test buffer (10.0 EB); ask for less", "got '%s'\n", msg.c_str());

  bool caught_as_bad_alloc = false;
  try {
    ln::allocating("the KV cache", 2e9, []() -> int { throw std::bad_alloc(); });
  } catch (const std::bad_alloc& e) {  // still a bad_alloc for code that catches those
    caught_as_bad_alloc = std::string(e.what()) == "out of memory allocating the KV cache (2.0 GB)";
  }
  LN_CHECK(caught_as_bad_alloc);

  // The innermost, more precise message wins; other errors are not memory errors; values come back.
  try {
    ln::allocating("the outer thing", 1, []() -> int { throw ln::OutOfMemory("the inner thing", 5e6); });
  } catch (const ln::OutOfMemory& e) {
    LN_CHECK(std::string(e.what()) == "out of memory allocating the inner thing (5.0 MB)");
  }
  bool invalid = false;
  try {
    ln::allocating("x", 1, []() -> int { throw std::invalid_argument("bad size"); });
  } catch (const std::invalid_argument&) {
    invalid = true;
  }
  LN_CHECK(invalid);
  LN_CHECK(ln::allocating("x", 4, [] { return 42; }) == 42);
}

// A failed device allocation (cuda::device_alloc throws OutOfDeviceMemory) says its size on its own, and the
// caller's `allocating` turns it into the named message (the CUDA runtime's weights, KV cache, activations and
// the CUDA trainer's arenas).
LN_TEST(oom_device_allocation_named_by_caller) {
  const ln::OutOfDeviceMemory bare(3.2e9);
  LN_CHECK_MSG(std::string(bare.what()) == "out of GPU memory allocating 3.2 GB on the device", "got '%s'\n", bare.what());
  std::string msg;
  try {
    ln::allocating("the KV cache for 8 sequence(s) x 4096 tokens on cuda:0", 4.3e9,
                   []() -> int { throw ln::OutOfDeviceMemory(4.3e9); }, "fewer sequences at once");
  } catch (const ln::OutOfMemory& e) {
    msg = e.what();
  }
  LN_CHECK_MSG(msg == "out of memory allocating the KV cache for 8 sequence(s) x 4096 tokens on cuda:0 (4.3 GB); fewer sequences at once",
               "got '%s'\n", msg.c_str());
}
