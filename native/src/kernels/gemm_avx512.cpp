// AVX-512 (F/BW/VL/DQ) kernels for Y = X * W^T in f32 arithmetic (semantics in kernels/gemm.h; reference in
// gemm_ref.cpp). Compiled with the AVX-512 flags (CMakeLists.txt, binding.gyp), only on x86, and only called after
// cpu_supports(CpuKernel::Avx512); anonymous namespace for the reason given in gemm_avx2.cpp.
//
// gemm: the blocking of gemm_avx2.cpp with a 14x32 register tile (28 zmm accumulators, 28 FMAs per 2 loads of B
// and 14 embedded broadcasts of A), 32-column micro-panels of W converted (and bf16-rounded for bf16 compute) to f32.
// bf16 compute here rounds both operands and multiplies in f32 (products of bf16 values are exact in f32): the
// semantics of Compute::BF16, for CPUs without AVX512_BF16 (gemm_avx512bf16.cpp uses vdpbf16ps instead).
// gemv (decode) stays the AVX2 kernel's loop, memory-bound on reading W: wider registers do not read faster.
#include <immintrin.h>

#include "kernels/avx512_blocks.h"
#include "kernels/gemm_kernels.h"

namespace ln {
namespace {

constexpr int64_t kKc = 256;        // Bp micro-panel 256 x 32 x 4 = 32 KB in L1 (48 KB on Zen 5), Ap 14 KB
constexpr int64_t kMc = 12 * kMr512;  // Ap block 168 x 256 x 4 = 168 KB in L2
constexpr int64_t kNcPanels = 32;  // at most 32 x 32 = 1024 columns per task

// Bp[kk][j] = W[n + j][k0 + kk] for j < 32 (zero past nr): 8x8 transposes of rows converted by load8.
template <DType T, bool ROUND>
void pack_w_panel32(const void* w, int64_t K, int64_t n, int nr, int64_t k0, int64_t kc, float* dst) {
  int64_t kk = 0;
  if (nr == kNr512) {
    for (; kk + 8 <= kc; kk += 8)
      for (int g = 0; g < 4; ++g) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) {
          r[j] = load8<T>(w, (n + g * 8 + j) * K + k0 + kk);
          if (ROUND) r[j] = round_bf16_8(r[j]);
        }
        transpose8(r);
        for (int t = 0; t < 8; ++t) _mm256_store_ps(dst + (kk + t) * kNr512 + g * 8, r[t]);
      }
  }
  for (; kk < kc; ++kk)
    for (int j = 0; j < kNr512; ++j) {
      float v = 0.f;
      if (j < nr) {
        v = load1<T>(w, (n + j) * K + k0 + kk);
        if (ROUND) v = round_bf16_1(v);
      }
      dst[kk * kNr512 + j] = v;
    }
}

template <int R>
void kernel_f32(int64_t kc, const void* a, const void* b, float* c, int64_t ldc, bool add, int nr) {
  kernel_f32_rx32<R>(kc, static_cast<const float*>(a), static_cast<const float*>(b), c, ldc, add, nr);
}

Kernel512 pick_f32_kernel(int mr) {
  static constexpr Kernel512 by_rows[kMr512 + 1] = {
      kernel_f32<1>, kernel_f32<1>, kernel_f32<2>,  kernel_f32<3>,  kernel_f32<4>,  kernel_f32<5>,  kernel_f32<6>, kernel_f32<7>,
      kernel_f32<8>, kernel_f32<9>, kernel_f32<10>, kernel_f32<11>, kernel_f32<12>, kernel_f32<13>, kernel_f32<14>};
  return by_rows[mr];
}

struct GemmJob {
  int64_t K;
  const float* X;
  int64_t ldx;
  const void* W;
  float* Y;
  int64_t ldy;
  bool accumulate;
  Tasks512 tasks;
  ThreadPool* pool;
};

template <DType T, bool ROUND_W, bool ROUND_X>
void gemm_task(void* ctx, int64_t task, int thread) {
  const GemmJob& j = *static_cast<const GemmJob*>(ctx);
  packed_task512<float, 1, kKc, kMc>(
      j.tasks, task, j.K, j.accumulate, j.Y, j.ldy, *j.pool, thread,
      [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* bp) {
        for (int64_t p = 0; p < (nc + kNr512 - 1) / kNr512; ++p)
          pack_w_panel32<T, ROUND_W>(j.W, j.K, n0 + p * kNr512, int(min64(kNr512, nc - p * kNr512)), k0, kc,
                                     bp + p * kc * kNr512);
      },
      [&](int64_t i, int mr, int64_t k0, int64_t kc, float* ap) {
        pack_x_panel14<ROUND_X>(j.X + i * j.ldx, j.ldx, mr, k0, kc, ap);
      },
      pick_f32_kernel);
}

template <DType T>
void (*pick_gemm_task(bool bf16))(void*, int64_t, int) {
  if (!bf16) return gemm_task<T, false, false>;
  return T == DType::BF16 ? gemm_task<T, false, true> : gemm_task<T, true, true>;
}

}  // namespace

void avx512_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                 bool accumulate, ThreadPool& pool) {
  GemmJob j{W.cols, X, ldx, W.data, Y, ldy, accumulate, plan_tasks512(M, W.rows, pool.size(), kNcPanels), &pool};
  const bool bf16 = compute == Compute::BF16;
  void (*fn)(void*, int64_t, int) = W.dtype == DType::F32   ? pick_gemm_task<DType::F32>(bf16)
                                    : W.dtype == DType::F16 ? pick_gemm_task<DType::F16>(bf16)
                                                            : pick_gemm_task<DType::BF16>(bf16);
  pool.run(j.tasks.count, fn, &j);
}

void avx512_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                 bool accumulate, ThreadPool& pool) {
  avx2_gemv(M, X, ldx, W, Y, ldy, compute, accumulate, pool);
}

}  // namespace ln
