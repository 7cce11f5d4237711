// A 64-byte aligned float buffer that only grows, so that a hot loop allocates nothing after its first calls.
// Kernels get theirs from the ThreadPool that runs them (ThreadPool::scratch): one set per worker slot of the
// pool, so the memory is bounded by the pool's size whatever thread calls in (Node runs each forward on any of
// libuv's 4 threads; thread_local buffers used to grow one set per such thread).
#pragma once
#include <cstdint>

namespace ln {

class ScratchBuffer {
 public:
  // Constructor and destructor are out of line (scratch.cpp) on purpose: an inline copy instantiated in an AVX2
  // file could be the one the linker keeps, and then run on a CPU without AVX.
  ScratchBuffer();
  ~ScratchBuffer();
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  // At least n floats, 64-byte aligned; contents are unspecified after a grow.
  float* get(int64_t n);
  int64_t bytes() const { return size_ * int64_t(sizeof(float)); }
  // Bytes held by all ScratchBuffers of the process (tests check that kernels allocate no scratch of their own).
  static int64_t live_bytes();

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace ln
