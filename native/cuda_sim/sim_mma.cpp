// The simulator's ldmatrix and mma.sync (m16n8k16, bf16 inputs, float32 accumulators): warp-collective, each
// lane's registers as the PTX ISA lays them out ("Warp-level matrix load instruction: ldmatrix", "Matrix fragments
// for mma.m16n8k16 with floating point type"). With g = lane / 4 and t = lane % 4, a register holds two 16-bit
// elements, the first in its low half:
//   ldmatrix .x4: lanes 8i .. 8i+7 give the row addresses of 8x8 matrix i (16 bytes each); register i of lane l
//     holds row g, columns 2t, 2t+1 of matrix i; with .trans, rows 2t, 2t+1 of column g.
//   mma A (16x16, row): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..];
//       B (16x8, col):  b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g];
//       C, D (16x8):    d[0], d[1] = D[g][2t, 2t+1]; d[2], d[3] = D[g+8][2t, 2t+1].
// Products of bf16 values are exact in float; the sums run in k order in float32 and then add to C (a tensor core
// may round differently: tests compare with tolerances that allow for it).
#include <cstdint>
#include <cstring>
#include <string>

#include "cuda_runtime.h"

namespace ln_sim {
namespace {

float bf16_lo(uint64_t w) { uint32_t b = uint32_t(w & 0xffffu) << 16; float f; std::memcpy(&f, &b, 4); return f; }
float bf16_hi(uint64_t w) { return bf16_lo(w >> 16); }
uint16_t load_u16(uint64_t addr, int index) {
  uint16_t v;
  std::memcpy(&v, reinterpret_cast<const unsigned char*>(addr) + 2 * index, 2);
  return v;
}

}  // namespace

void ldmatrix_x4(uint32_t r[4], const void* row, bool trans) {
  if (reinterpret_cast<uintptr_t>(row) % 16 != 0) trap("ldmatrix: a row address that is not 16-byte aligned");
  const uint64_t mine = reinterpret_cast<uint64_t>(row);
  const uint64_t* slots = warp_gather_begin(&mine, 1, "ldmatrix");
  const int l = lane_id(), g = l / 4, t = l % 4;
  auto row_addr = [&](int lane) { return slots[lane * kSlotWords]; };
  for (int i = 0; i < 4; ++i) {
    uint16_t lo, hi;
    if (!trans) {
      lo = load_u16(row_addr(8 * i + g), 2 * t);
      hi = load_u16(row_addr(8 * i + g), 2 * t + 1);
    } else {
      lo = load_u16(row_addr(8 * i + 2 * t), g);
      hi = load_u16(row_addr(8 * i + 2 * t + 1), g);
    }
    r[i] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
  warp_gather_end();
}

void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  const uint64_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  const uint64_t* slots = warp_gather_begin(mine, 6, "mma.sync");
  const int l = lane_id(), g = l / 4, t = l % 4;
  auto reg = [&](int lane, int i) { return slots[lane * kSlotWords + i]; };
  // Row r of A (r = g or g + 8) and column n of B (n = 2t or 2t + 1), from the lanes that hold them.
  float arow[2][16], bcol[2][16];
  for (int src = 0; src < 4; ++src) {  // lanes 4g + src hold A's rows g, g+8 at columns 2src.., 2src+8..
    const int lane = 4 * g + src;
    for (int half = 0; half < 2; ++half) {  // row g (registers 0, 2) and g + 8 (registers 1, 3)
      arow[half][2 * src] = bf16_lo(reg(lane, half));
      arow[half][2 * src + 1] = bf16_hi(reg(lane, half));
      arow[half][2 * src + 8] = bf16_lo(reg(lane, 2 + half));
      arow[half][2 * src + 9] = bf16_hi(reg(lane, 2 + half));
    }
    for (int c = 0; c < 2; ++c) {  // lanes 4n + src hold B's column n at rows 2src.. and 2src+8..
      const int bl = 4 * (2 * t + c) + src;
      bcol[c][2 * src] = bf16_lo(reg(bl, 4));
      bcol[c][2 * src + 1] = bf16_hi(reg(bl, 4));
      bcol[c][2 * src + 8] = bf16_lo(reg(bl, 5));
      bcol[c][2 * src + 9] = bf16_hi(reg(bl, 5));
    }
  }
  warp_gather_end();
  for (int i = 0; i < 4; ++i) {
    float sum = 0.f;
    for (int k = 0; k < 16; ++k) sum += arow[i / 2][k] * bcol[i % 2][k];
    d[i] += sum;
  }
}

}  // namespace ln_sim
