// Warp-level tensor-core instructions for sm_80+ (PTX ldmatrix and mma.sync m16n8k16 with bf16 inputs and float32
// accumulators), as functions. Unlike WMMA, the fragments' layout across the lanes is specified (PTX ISA, "Matrix
// fragments for mma.m16n8k16 with floating point type"), so a kernel can keep S = Q K^T in registers, turn it into
// P in place and rescale accumulator rows. With g = lane / 4 and t = lane % 4, each uint32_t holding two bf16 (the
// first in the low half):
//   A (16 x 16, row-major): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9],
//                           a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, "col"):      b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//   C, D (16 x 8, float):   d[0], d[1] = D[g][2t, 2t+1]; d[2], d[3] = D[g+8][2t, 2t+1]
// ldmatrix_x4: lanes 8i .. 8i+7 give the addresses of the 8 rows (16 bytes, 16-byte aligned, shared memory) of
// 8 x 8 matrix i; r[i] = row g, columns 2t, 2t+1 of matrix i, or with _trans rows 2t, 2t+1 of column g.
// Every lane of the warp must call them together. On the CUDA simulator (LN_CUDA_SIM) they run as emulations of
// the same layouts (native/cuda_sim/sim_mma.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ln {
namespace cuda {

// Two floats as one register of two bf16 (round to nearest even), the first in the low half.
__device__ inline uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(ln::f32_to_bf16(lo)) | (uint32_t(ln::f32_to_bf16(hi)) << 16);
}

__device__ inline void ldmatrix_x4(uint32_t r[4], const void* smem_row) {
#if defined(LN_CUDA_SIM)
  ln_sim::ldmatrix_x4(r, smem_row, false);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80+ only (the kernels using it check the device first)
#endif
}

__device__ inline void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row) {
#if defined(LN_CUDA_SIM)
  ln_sim::ldmatrix_x4(r, smem_row, true);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

// d += A B (16 x 8 x 16), float32 accumulation.
__device__ inline void mma_bf16_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if defined(LN_CUDA_SIM)
  ln_sim::mma_m16n8k16_bf16(d, a, b0, b1);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}


// The lane-to-row addresses of ldmatrix.x4 for the three ways the kernels read a row-major bf16 tile (16-byte
// aligned rows, pitch ld elements), written once here:
//   ldmatrix_a:       the A fragment of the 16 x 16 block at columns k0 of the 16 rows starting at `a`
//                     (matrices: rows 0-7 | 8-15 at column k0, then both at k0 + 8);
//   ldmatrix_b_rows:  the B fragments of B = R^T whose columns n0 .. n0+15 are R's rows, at k = k0 .. k0+15 (R is
//                     [n][k], as K for S = Q K^T): fb[0..1] for columns n0 .. n0+7, fb[2..3] for n0+8 .. n0+15
//                     (matrices: rows 0-7 at k0, k0 + 8, then rows 8-15 at k0, k0 + 8);
//   ldmatrix_b_trans: the B fragments of B itself ([k][n], as V for P V) at k = k0 .. k0+15, columns n0 .. n0+15,
//                     through .trans: fb[0..1] for columns n0 .., fb[2..3] for n0 + 8 ..
//                     (matrices: rows 0-7 | 8-15 at column n0, then both at n0 + 8).
__device__ inline void ldmatrix_a(uint32_t fa[4], const uint16_t* a, int ld, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4(fa, a + (lane & 15) * ld + k0 + 8 * (lane >> 4));
}
__device__ inline void ldmatrix_b_rows(uint32_t fb[4], const uint16_t* r, int ld, int n0, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4(fb, r + (n0 + (lane & 7) + 8 * (lane >> 4)) * ld + k0 + 8 * ((lane >> 3) & 1));
}
__device__ inline void ldmatrix_b_trans(uint32_t fb[4], const uint16_t* b, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4_trans(fb, b + (k0 + (lane & 15)) * ld + n0 + 8 * (lane >> 4));
}

// acc[n] (the 16 x 8 blocks of N columns) += A R^T for the warp's 16 rows: A (16 x K) starts at `a`, R (N x K) at
// `r`, both row-major bf16 in shared memory (S = Q K^T, dP = dO V^T, S^T = K Q^T). K and N multiples of 16.
template <int K, int N>
__device__ inline void mma_rows_times_rows(float (*acc)[4], const uint16_t* a, int lda, const uint16_t* r, int ldr) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t fa[4];
    ldmatrix_a(fa, a, lda, kk * 16);
#pragma unroll
    for (int nb = 0; nb < N / 16; ++nb) {
      uint32_t fb[4];
      ldmatrix_b_rows(fb, r, ldr, nb * 16, kk * 16);
      mma_bf16_16816(acc[2 * nb], fa, fb[0], fb[1]);
      mma_bf16_16816(acc[2 * nb + 1], fa, fb[2], fb[3]);
    }
  }
}

// out[n] (the 16 x 8 blocks of D columns) += X B, for the warp's 16 rows. X (16 x K) is in registers in the
// accumulator layout (x[n] = the 16 x 8 block of columns 8n .. 8n+7, as mma_bf16_16816 leaves it), rounded to bf16
// here: the C fragments of one product are the A fragments of the next. B (K x D) is row-major bf16 in shared
// memory (row r at b + r * ldb, 16-byte aligned rows), read through ldmatrix.trans. K and D multiples of 16.
template <int K, int D>
__device__ inline void mma_acc_times_rows(float (*out)[4], const float (*x)[4], const uint16_t* b, int ldb) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const uint32_t fa[4] = {pack_bf16(x[2 * kk][0], x[2 * kk][1]), pack_bf16(x[2 * kk][2], x[2 * kk][3]),
                            pack_bf16(x[2 * kk + 1][0], x[2 * kk + 1][1]),
                            pack_bf16(x[2 * kk + 1][2], x[2 * kk + 1][3])};
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      uint32_t fb[4];
      ldmatrix_b_trans(fb, b, ldb, kk * 16, dn * 16);
      mma_bf16_16816(out[2 * dn], fa, fb[0], fb[1]);
      mma_bf16_16816(out[2 * dn + 1], fa, fb[2], fb[3]);
    }
  }
}

// Row `half` of the lane's two (g + 8 * half, g = lane / 4) of accumulators over D columns, stored as float32 at
// `row` (that row's column 0): columns 8n + 2t and 8n + 2t + 1, t = lane % 4.
template <int D>
__device__ inline void mma_acc_store_row(const float (*acc)[4], int half, float* row) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    row[8 * n + 2 * t] = acc[n][2 * half];
    row[8 * n + 2 * t + 1] = acc[n][2 * half + 1];
  }
}

}  // namespace cuda
}  // namespace ln
