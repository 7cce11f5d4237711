// Portable kernels for Y = X * W^T (no intrinsics; used when the CPU lacks AVX2/FMA/F16C, or when
// LANGNEURONS_KERNEL=plain). Same structure as gemm_avx2.cpp, smaller blocks: W and X are packed into per-thread
// buffers and a 4x8 register tile is written as plain loops with fixed bounds, which compilers turn into
// baseline SIMD (SSE2 on x86-64, NEON on arm64). Results differ from the AVX2 kernels only by summation order and
// fused vs separate multiply-add (within float tolerance).
#include <cstring>

#include "kernels/gemm_kernels.h"

namespace ln {
namespace {

constexpr int MR = 4, NR = 8;       // 8 accumulator vectors of 4 floats: fits the 16 SSE registers
constexpr int64_t KC = 256;         // B micro-panel KC x NR x 4 = 8 KB in L1
constexpr int64_t MC = 128;         // A block MC x KC x 4 = 128 KB in L2
constexpr int64_t NC_PANELS = 128;  // up to 1024 columns of W per task

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Bp[kk][j] = W[n + j][k0 + kk] (zero for j >= nr), bf16-rounded when `round`.
void pack_w_panel(const WeightRef& W, int64_t n, int nr, int64_t k0, int64_t kc, bool round, float* dst) {
  float row[KC];
  for (int j = 0; j < NR; ++j) {
    if (j < nr) {
      convert_to_f32(W.data, W.dtype, (n + j) * W.cols + k0, kc, row);
      if (round)
        for (int64_t kk = 0; kk < kc; ++kk) row[kk] = round_bf16(row[kk]);
    } else {
      for (int64_t kk = 0; kk < kc; ++kk) row[kk] = 0.f;
    }
    for (int64_t kk = 0; kk < kc; ++kk) dst[kk * NR + j] = row[kk];
  }
}

// Ap[kk][i] = X[i][k0 + kk] (zero for i >= mr), bf16-rounded when `round`.
void pack_x_panel(const float* X, int64_t ldx, int mr, int64_t k0, int64_t kc, bool round, float* dst) {
  for (int i = 0; i < MR; ++i) {
    const float* x = X + i * ldx + k0;
    for (int64_t kk = 0; kk < kc; ++kk) {
      float v = i < mr ? x[kk] : 0.f;
      dst[kk * MR + i] = round ? round_bf16(v) : v;
    }
  }
}

// C[0..mr)[0..nr) (=|+=) sum over k of Ap[k][i] * Bp[k][j].
void kernel_4x8(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add, int mr, int nr) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* ak = a + k * MR;
    const float* bk = b + k * NR;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += ak[i] * bk[j];
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

struct GemmJob {
  int64_t M;
  const float* X;
  int64_t ldx;
  WeightRef W;
  float* Y;
  int64_t ldy;
  bool round_x, round_w, accumulate;
  int64_t cols_per_task, rows_per_task, n_col_tasks;
  ThreadPool* pool;  // owns the packing buffers (one set per worker, grown on demand)
};

void gemm_task(void* ctx, int64_t task, int thread) {
  const GemmJob& j = *static_cast<const GemmJob*>(ctx);
  const int64_t N = j.W.rows, K = j.W.cols;
  const int64_t n0 = (task % j.n_col_tasks) * j.cols_per_task, n1 = min64(N, n0 + j.cols_per_task);
  const int64_t m0 = (task / j.n_col_tasks) * j.rows_per_task, m1 = min64(j.M, m0 + j.rows_per_task);
  if (n0 >= n1 || m0 >= m1) return;
  const int64_t nc = n1 - n0, n_panels = (nc + NR - 1) / NR;
  float* bp = j.pool->scratch(thread, ThreadPool::Scratch::PackB, KC * n_panels * NR);
  float* ap = j.pool->scratch(thread, ThreadPool::Scratch::PackA, MC * KC);
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = min64(KC, K - k0);
    const bool add = j.accumulate || k0 > 0;
    for (int64_t p = 0; p < n_panels; ++p)
      pack_w_panel(j.W, n0 + p * NR, int(min64(NR, nc - p * NR)), k0, kc, j.round_w, bp + p * kc * NR);
    for (int64_t i0 = m0; i0 < m1; i0 += MC) {
      const int64_t mc = min64(MC, m1 - i0);
      for (int64_t ir = 0; ir < mc; ir += MR)
        pack_x_panel(j.X + (i0 + ir) * j.ldx, j.ldx, int(min64(MR, mc - ir)), k0, kc, j.round_x, ap + ir * kc);
      for (int64_t p = 0; p < n_panels; ++p)
        for (int64_t ir = 0; ir < mc; ir += MR)
          kernel_4x8(kc, ap + ir * kc, bp + p * kc * NR, j.Y + (i0 + ir) * j.ldy + n0 + p * NR, j.ldy, add,
                     int(min64(MR, mc - ir)), int(min64(NR, nc - p * NR)));
    }
  }
}

struct GemvJob {
  int64_t M;
  const float* X;
  int64_t ldx;
  WeightRef W;
  float* Y;
  int64_t ldy;
  bool round_w, accumulate;
  int64_t rows_per_task;
};

// One row of W at a time, converted KC elements at a time into a stack buffer, against all M (<= 8) rows of X.
// Eight partial sums per row of X let the compiler vectorize without reassociating floats on its own.
void gemv_task(void* ctx, int64_t task, int) {
  const GemvJob& j = *static_cast<const GemvJob*>(ctx);
  const int64_t N = j.W.rows, K = j.W.cols;
  const int64_t n_begin = task * j.rows_per_task, n_end = min64(N, n_begin + j.rows_per_task);
  float w[KC];
  for (int64_t n = n_begin; n < n_end; ++n) {
    float part[kGemvMaxRows][8] = {};
    float tail[kGemvMaxRows] = {};
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = min64(KC, K - k0), kc8 = kc / 8 * 8;
      convert_to_f32(j.W.data, j.W.dtype, n * K + k0, kc, w);
      if (j.round_w)
        for (int64_t kk = 0; kk < kc; ++kk) w[kk] = round_bf16(w[kk]);
      for (int64_t m = 0; m < j.M; ++m) {
        const float* x = j.X + m * j.ldx + k0;
        for (int64_t kk = 0; kk < kc8; kk += 8)
          for (int l = 0; l < 8; ++l) part[m][l] += x[kk + l] * w[kk + l];
        for (int64_t kk = kc8; kk < kc; ++kk) tail[m] += x[kk] * w[kk];
      }
    }
    for (int64_t m = 0; m < j.M; ++m) {
      float v = ((part[m][0] + part[m][1]) + (part[m][2] + part[m][3])) +
                ((part[m][4] + part[m][5]) + (part[m][6] + part[m][7])) + tail[m];
      float* y = j.Y + m * j.ldy + n;
      *y = j.accumulate ? *y + v : v;
    }
  }
}


}  // namespace

void plain_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                bool accumulate, ThreadPool& pool) {
  const bool bf16 = compute == Compute::BF16;
  GemmJob j{M, X, ldx, W, Y, ldy, bf16, bf16 && W.dtype != DType::BF16, accumulate, 0, M, 1, &pool};
  const int threads = pool.size();
  j.cols_per_task = balanced_chunk((W.rows + NR - 1) / NR, threads, NC_PANELS) * NR;
  j.n_col_tasks = (W.rows + j.cols_per_task - 1) / j.cols_per_task;
  if (j.n_col_tasks < threads && M > MR) {  // too few columns to share: split the rows of X too
    const int64_t row_blocks = (M + MR - 1) / MR;
    j.rows_per_task = (row_blocks + threads - 1) / threads * MR;
  }
  pool.run(j.n_col_tasks * ((M + j.rows_per_task - 1) / j.rows_per_task), gemm_task, &j);
}

void plain_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                bool accumulate, ThreadPool& pool) {
  const bool bf16 = compute == Compute::BF16;
  const int64_t K = W.cols;
  GemvJob j{M, X, ldx, W, Y, ldy, bf16 && W.dtype != DType::BF16, accumulate, 0};
  if (bf16) {  // round the few activation rows once rather than once per row of W
    float* xr = pool.scratch(0, ThreadPool::Scratch::RowPrep, M * K);  // this thread is the pool's worker 0
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) xr[m * K + k] = round_bf16(X[m * ldx + k]);
    j.X = xr;
    j.ldx = K;
  }
  const int threads = pool.size();
  j.rows_per_task = balanced_chunk(W.rows, threads, (W.rows + 4 * threads - 1) / (4 * threads));
  pool.run((W.rows + j.rows_per_task - 1) / j.rows_per_task, gemv_task, &j);
}

}  // namespace ln
