// The CUDA simulator's stand-in for <mma.h>: nvcuda::wmma with 16x16x16 tiles of bf16 / half inputs and float
// accumulators. The element layout of a real fragment across the 32 lanes is unspecified, so here every lane's
// fragment holds the whole tile (num_elements 256): element-wise loops over x[] stay correct, loads and stores
// write the same values from every lane. Each *_sync call first waits for the whole warp, as the real ones do.
// Products are exact in float (bf16 x bf16); sums run in k order in float (tensor cores may differ in rounding).
#pragma once
#include <cstdint>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the simulator has 16x16x16 tiles only");
  static constexpr int num_elements = 256;
  T x[256];  // row-major 16 x 16 whatever Layout the memory had
};

// Loads a 16 x 16 tile starting at p with leading dimension ld (elements), stored row- or column-major.
template <class Use, class T, class L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const T* p, unsigned ld) {
  ln_sim::sync_warp(0xffffffffu);
  constexpr bool col = std::is_same<L, col_major>::value;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = col ? p[size_t(c) * ld + r] : p[size_t(r) * ld + c];
}
template <class T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const T* p, unsigned ld, layout_t layout) {
  ln_sim::sync_warp(0xffffffffu);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.x[r * 16 + c] = layout == mem_col_major ? p[size_t(c) * ld + r] : p[size_t(r) * ld + c];
}
template <class T>
void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ld, layout_t layout) {
  ln_sim::sync_warp(0xffffffffu);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      (layout == mem_col_major ? p[size_t(c) * ld + r] : p[size_t(r) * ld + c]) = f.x[r * 16 + c];
}
template <class Use, class T, class L, class V>
void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, V v) {
  ln_sim::sync_warp(0xffffffffu);
  for (int i = 0; i < 256; ++i) f.x[i] = detail::from_float<T>(float(v));
}
template <class TA, class LA, class TB, class LB, class TC>
void mma_sync(fragment<accumulator, 16, 16, 16, TC>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
              const fragment<matrix_b, 16, 16, 16, TB, LB>& b, const fragment<accumulator, 16, 16, 16, TC>& c) {
  ln_sim::sync_warp(0xffffffffu);
  float out[256];
  for (int r = 0; r < 16; ++r)
    for (int col = 0; col < 16; ++col) {
      float s = detail::to_float(c.x[r * 16 + col]);
      for (int k = 0; k < 16; ++k) s += detail::to_float(a.x[r * 16 + k]) * detail::to_float(b.x[k * 16 + col]);
      out[r * 16 + col] = s;
    }
  for (int i = 0; i < 256; ++i) d.x[i] = detail::from_float<TC>(out[i]);
}

}  // namespace wmma
}  // namespace nvcuda
