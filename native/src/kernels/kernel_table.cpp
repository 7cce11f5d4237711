// The kernel tables of the four families (see kernel_table.h). The x86 families' entries name functions that exist
// only in the x86 build (their sources are compiled on x86 alone), hence the #if: elsewhere those tables hold the
// plain kernels and cpu_supports() refuses them.
#include "kernels/kernel_table.h"

#include "kernels/cpu_features.h"
#include "kernels/gemm_kernels.h"
#include "kernels/ops.h"
#include "train/gemm_backward.h"

#if defined(__x86_64__) || defined(__i386__)
#define LN_X86_KERNELS 1
#else
#define LN_X86_KERNELS 0
#endif

namespace ln {
namespace {

void plain_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate,
              float* scratch, ThreadPool& pool) {
  train::plain_gemm_dx(M, dY, ldy, W, dX, ldx, accumulate, scratch, pool);
}

const CpuKernelTable kPlain{CpuKernel::Plain,     plain_gemm,          plain_gemv,           plain_dx,
                            train::plain_gemm_dw, silu_inplace_plain, attend_row_plain,     attend_causal_plain,
                            accumulate_row_plain,
                            "gemm=plain gemv=plain backward=plain silu=plain attention=plain stats=plain"};

#if LN_X86_KERNELS
void avx2_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate,
             float*, ThreadPool& pool) {
  train::avx2_gemm_dx(M, dY, ldy, W, dX, ldx, accumulate, pool);
}
const CpuKernelTable kAvx2{CpuKernel::Avx2,       avx2_gemm,          avx2_gemv,          avx2_dx,
                           train::avx2_gemm_dw, silu_inplace_avx2, attend_row_avx2,    attend_causal_avx2,
                           accumulate_row_avx2,
                           "gemm=avx2 gemv=avx2 backward=avx2 silu=avx2 attention=avx2 stats=avx2"};
void avx512_dx(int64_t M, const float* dY, int64_t ldy, const WeightRef& W, float* dX, int64_t ldx, bool accumulate,
               float*, ThreadPool& pool) {
  train::avx512_gemm_dx(M, dY, ldy, W, dX, ldx, accumulate, pool);
}
const CpuKernelTable kAvx512{CpuKernel::Avx512,       avx512_gemm,         avx512_gemv,     avx512_dx,
                             train::avx512_gemm_dw, silu_inplace_avx512, attend_row_avx2, attend_causal_avx512,
                             accumulate_row_avx512,
                             "gemm=avx512 gemv=avx512 backward=avx512 silu=avx512 attention=avx512 (row: avx2) stats=avx512"};
const CpuKernelTable kAvx512Bf16{CpuKernel::Avx512Bf16,   avx512bf16_gemm,     avx512bf16_gemv, avx512_dx,
                                 train::avx512_gemm_dw, silu_inplace_avx512, attend_row_avx2, attend_causal_avx512,
                                 accumulate_row_avx512,
                                 "gemm=avx512bf16 gemv=avx512bf16 (f32 compute: avx512) backward=avx512 "
                                 "silu=avx512 attention=avx512 (row: avx2) stats=avx512"};
#endif

}  // namespace

const CpuKernelTable& kernel_table(CpuKernel k) {
#if LN_X86_KERNELS
  switch (k) {
    case CpuKernel::Avx2: return kAvx2;
    case CpuKernel::Avx512: return kAvx512;
    case CpuKernel::Avx512Bf16: return kAvx512Bf16;
    default: break;
  }
#endif
  return kPlain;
}

}  // namespace ln
