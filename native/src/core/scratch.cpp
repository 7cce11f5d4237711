// ScratchBuffer (core/scratch.h). Compiled with the portable flags on purpose: see the header.
#include "core/scratch.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/oom.h"

namespace ln {

static std::atomic<int64_t> g_live_bytes{0};

ScratchBuffer::ScratchBuffer() {}
ScratchBuffer::~ScratchBuffer() {
  g_live_bytes -= bytes();
  std::free(data_);
}

int64_t ScratchBuffer::live_bytes() { return g_live_bytes.load(); }

float* ScratchBuffer::get(int64_t n) {
  if (n > size_) {
    g_live_bytes -= bytes();
    std::free(data_);
    // Round up to a multiple of 64 bytes (aligned_alloc requires it) and grow geometrically to avoid churn.
    int64_t want = n > 2 * size_ ? n : 2 * size_;
    want = (want + 15) / 16 * 16;
    data_ = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(want) * sizeof(float)));
    if (!data_) {
      size_ = 0;
      throw OutOfMemory("a scratch buffer of " + std::to_string(want) + " floats", double(want) * sizeof(float));
    }
    size_ = want;
    g_live_bytes += bytes();
  }
  return data_;
}

}  // namespace ln
