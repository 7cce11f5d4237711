#include "core/dtype.h"

namespace ln {

void convert_to_f32(const void* src, DType t, int64_t first, int64_t n, float* dst) {
  if (t == DType::F32) {
    std::memcpy(dst, static_cast<const char*>(src) + 4 * first, size_t(n) * 4);
    return;
  }
  const char* p = static_cast<const char*>(src) + 2 * first;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
}

}  // namespace ln
