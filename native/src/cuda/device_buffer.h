// A grow-only device allocation (the CUDA runtime's activation and scratch buffers): ensure(n) reallocates only
// when n exceeds the current size, so a warmed-up forward allocates nothing. Plain C++ (cuda_backend.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuda/cuda_backend.h"

namespace ln {
namespace cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // At least `bytes` (contents not kept when it grows; cudaFree waits for the device, so nothing in flight
  // still uses the old block).
  void ensure(size_t bytes) {
    if (bytes <= bytes_) return;
    device_free(p_);
    p_ = nullptr;
    bytes_ = 0;
    p_ = device_alloc(bytes);
    bytes_ = bytes;
  }
  void release() {
    device_free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace cuda
}  // namespace ln
