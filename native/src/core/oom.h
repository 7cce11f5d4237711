// Running out of memory, said in one line a user can act on: what was being allocated and how much. The engine's
// large allocations (weights mapped at load, the KV cache, the forward's activation buffers and logits, the
// statistics arrays, the trainer's optimizer state and activations) go through `allocating`, which turns the
// std::bad_alloc (or the std::length_error of a vector asked for more than it can hold) of a failed allocation
// into an OutOfMemory naming the thing and its size. OutOfMemory is a std::bad_alloc, so code that catches that
// still does; its what() is the message the binding passes on to JavaScript.
#pragma once
#include <cstdint>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace ln {

// "512 B", "3.2 GB", "1.4 TB" (decimal units, as `langneurons info` and df print them).
inline std::string format_bytes(double bytes) {
  static const char* const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000 && u < 6) {
    bytes /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

class OutOfMemory : public std::bad_alloc {
 public:
  // what: the thing, phrased to follow "allocating" ("the KV cache for 8 sequences x 4096 tokens").
  OutOfMemory(const std::string& what, double bytes, const std::string& hint = "")
      : message_("out of memory allocating " + what + " (" + format_bytes(bytes) + ")" + (hint.empty() ? "" : "; " + hint)),
        bytes_(bytes) {}
  const char* what() const noexcept override { return message_.c_str(); }
  double bytes() const { return bytes_; }

 private:
  std::string message_;
  double bytes_;
};

// A failed device allocation (cuda::device_alloc): a std::bad_alloc that says its size when nothing names it.
class OutOfDeviceMemory : public std::bad_alloc {
 public:
  explicit OutOfDeviceMemory(double bytes)
      : message_("out of GPU memory allocating " + format_bytes(bytes) + " on the device"), bytes_(bytes) {}
  const char* what() const noexcept override { return message_.c_str(); }
  double bytes() const { return bytes_; }

 private:
  std::string message_;
  double bytes_;
};

// Runs alloc() (which allocates `bytes` in all, as one or several buffers); a failed allocation becomes an
// OutOfMemory naming `what`. An OutOfMemory from inside (a more precise one) passes through unchanged.
template <class F>
decltype(auto) allocating(const std::string& what, double bytes, F&& alloc, const std::string& hint = "") {
  try {
    return std::forward<F>(alloc)();
  } catch (const OutOfMemory&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw OutOfMemory(what, bytes, hint);
  } catch (const std::length_error&) {
    throw OutOfMemory(what, bytes, hint);
  }
}

}  // namespace ln
