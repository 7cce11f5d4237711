// PLACEHOLDER dispatch (to be replaced by the blocked, packed AVX2/plain kernels): splits N over the pool and
// runs the reference on each block.
#include "kernels/gemm.h"

namespace ln {

static CpuKernel g_kernel = CpuKernel::Plain;
CpuKernel active_kernel() { return g_kernel; }
const char* kernel_name(CpuKernel k) { return k == CpuKernel::Avx2 ? "avx2" : "plain"; }
void set_kernel(CpuKernel k) { g_kernel = k; }

void gemm_xwt(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
              bool accumulate, ThreadPool& pool) {
  const int64_t N = W.rows, block = 64;
  const int64_t n_blocks = (N + block - 1) / block;
  pool.parallel_for(n_blocks, [&](int64_t b, int) {
    int64_t n0 = b * block, n1 = n0 + block < N ? n0 + block : N;
    WeightRef sub = W;
    sub.data = static_cast<const char*>(W.data) + n0 * W.cols * dtype_size(W.dtype);
    sub.rows = n1 - n0;
    gemm_xwt_ref(M, X, ldx, sub, Y + n0, ldy, compute, accumulate);
  });
}

}  // namespace ln
