// The backward GEMMs of the training path (train/gemm_backward.h), every kernel family the CPU has (plain and,
// when supported, AVX2), against a float64 recomputation and against each other: all weight dtypes (F32 at a
// misaligned address like a memory-mapped checkpoint, F16 with subnormals, BF16), odd shapes (M = 1, sizes of 1,
// sizes that straddle every blocking boundary of the packed kernel), row strides larger than the rows,
// accumulate on and off, several thread counts.
//
// Tolerance (the same reasoning as native/tests/test_gemm.cpp): every product of two float32 values is exact in
// float64, so the float64 sum is exact and a kernel's only error is its float32 accumulation, which grows like a
// random walk of R roundings (R = the reduction length). We bound
//   |c - exact| <= kTolUnits * u * sqrt(R) * (sum_r |a_r b_r| + |c_init|),   u = 2^-24,
// and check that the bound is still far tighter than a real mistake (gemm_backward_tolerance_can_fail).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "kernels/cpu_features.h"
#include "gemm_test_data.h"
#include "kernel_families.h"
#include "test_util.h"
#include "train/gemm_backward.h"

using namespace ln;
using namespace gemmtest;
using namespace ln::train;

namespace {

// rows x ld floats, the padding past `cols` filled with a NaN sentinel (a kernel reading it would poison its
// result, one writing it would be caught by check_padding).
std::vector<float> make_matrix(int64_t rows, int64_t cols, int64_t ld, Rng& r, bool small_ints) {
  std::vector<float> m(size_t(rows * ld), NAN);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < cols; ++k) m[size_t(i * ld + k)] = small_ints ? float(r.small_int()) : r.uniform();
  return m;
}

bool padding_intact(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = cols; k < ld; ++k)
      if (!std::isnan(m[size_t(i * ld + k)])) return false;
  return true;
}

std::vector<CpuKernel> kernels() { return kernel_families_to_test(); }

// Restores the kernel family a test found when it ends.
struct KernelScope {
  CpuKernel saved = active_kernel();
  ~KernelScope() { set_kernel(saved); }
};

struct Result {
  double worst = 0;  // max over elements of |err| / bound
  bool exact = true;
};

// dX (+)= dY W with the active kernel, checked against float64. ldy >= N, ldx >= K.
Result run_dx(int64_t M, const Weights& w, int64_t ldy, int64_t ldx, bool accumulate, int threads, Rng& r,
              bool small_ints, std::vector<float>* out = nullptr) {
  const int64_t N = w.ref.rows, K = w.ref.cols;
  const std::vector<float> dY = make_matrix(M, N, ldy, r, small_ints);
  std::vector<float> dX = make_matrix(M, K, ldx, r, small_ints), init = dX;
  std::vector<float> scratch(size_t(threads * K));
  ThreadPool pool(threads);
  gemm_dx(M, dY.data(), ldy, w.ref, dX.data(), ldx, accumulate, scratch.data(), pool);
  Result res;
  LN_CHECK(padding_intact(dX, M, K, ldx));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const double c0 = accumulate ? double(init[size_t(i * ldx + k)]) : 0.0;
      double s = c0, mag = std::fabs(c0);
      for (int64_t n = 0; n < N; ++n) {
        const double p = double(dY[size_t(i * ldy + n)]) * w.value[size_t(n * K + k)];
        s += p;
        mag += std::fabs(p);
      }
      const double got = dX[size_t(i * ldx + k)], err = std::fabs(got - s);
      const double bound = kTolUnits * kU * std::sqrt(double(N)) * mag + 1e-300;
      if (err != 0) res.exact = false;
      res.worst = std::max(res.worst, std::isnan(got) ? INFINITY : err / bound);
    }
  if (out) *out = dX;
  return res;
}

// dW += dY^T X with the active kernel, checked against float64. dY: M x N (ldy), X: M x K (ldx), dW: N x K (lddw).
Result run_dw(int64_t M, int64_t N, int64_t K, int64_t ldy, int64_t ldx, int64_t lddw, int threads, Rng& r,
              bool small_ints, std::vector<float>* out = nullptr) {
  const std::vector<float> dY = make_matrix(M, N, ldy, r, small_ints), X = make_matrix(M, K, ldx, r, small_ints);
  std::vector<float> dW = make_matrix(N, K, lddw, r, small_ints), init = dW;
  ThreadPool pool(threads);
  gemm_dw(M, N, K, dY.data(), ldy, X.data(), ldx, dW.data(), lddw, pool);
  Result res;
  LN_CHECK(padding_intact(dW, N, K, lddw));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const double c0 = init[size_t(n * lddw + k)];
      double s = c0, mag = std::fabs(c0);
      for (int64_t i = 0; i < M; ++i) {
        const double p = double(dY[size_t(i * ldy + n)]) * X[size_t(i * ldx + k)];
        s += p;
        mag += std::fabs(p);
      }
      const double got = dW[size_t(n * lddw + k)], err = std::fabs(got - s);
      const double bound = kTolUnits * kU * std::sqrt(double(M)) * mag + 1e-300;
      if (err != 0) res.exact = false;
      res.worst = std::max(res.worst, std::isnan(got) ? INFINITY : err / bound);
    }
  if (out) *out = dW;
  return res;
}

struct Shape {
  int64_t M, N, K;
};
// M = rows of dY / X (tokens), N = rows of W (out features), K = columns of W (in features). Sizes of 1, odd sizes,
// and sizes just past the AVX2 kernel's blocks: 6 rows x 16 columns per microkernel, KC = 256 along the
// reduction, MC = 120 rows per block.
const Shape kShapes[] = {{1, 1, 1},    {1, 37, 29},  {1, 300, 17}, {2, 5, 3},     {5, 16, 16},  {6, 33, 47},
                         {7, 1, 40},   {13, 70, 1},  {21, 37, 29}, {64, 257, 31}, {121, 9, 50}, {127, 130, 70},
                         {259, 23, 18}};

}  // namespace

LN_TEST(gemm_backward_odd_shapes_dtypes_strides) {
  KernelScope scope;
  Rng r(5);
  for (CpuKernel kern : kernels()) {
    set_kernel(kern);
    double worst_dx = 0, worst_dw = 0;
    for (const Shape& s : kShapes) {
      for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        const Weights w = make_weights(dt, s.N, s.K, r, false);
        for (int variant = 0; variant < 2; ++variant) {
          const bool acc = variant == 1;
          const int64_t ldy = s.N + (variant ? 3 : 0), ldx = s.K + (variant ? 5 : 0);
          const Result res = run_dx(s.M, w, ldy, ldx, acc, 2, r, false);
          worst_dx = std::max(worst_dx, res.worst);
          LN_CHECK_MSG(res.worst <= 1, "%s gemm_dx %s M=%lld N=%lld K=%lld acc=%d: error %.3g x the bound",
                       kernel_name(kern), dtype_name(dt), (long long)s.M, (long long)s.N, (long long)s.K, int(acc),
                       res.worst);
        }
      }
      for (int variant = 0; variant < 2; ++variant) {  // gemm_dw always accumulates; strides on/off
        const int64_t ldy = s.N + (variant ? 7 : 0), ldx = s.K + (variant ? 1 : 0), lddw = s.K + (variant ? 4 : 0);
        const Result res = run_dw(s.M, s.N, s.K, ldy, ldx, lddw, 2, r, false);
        worst_dw = std::max(worst_dw, res.worst);
        LN_CHECK_MSG(res.worst <= 1, "%s gemm_dw M=%lld N=%lld K=%lld strided=%d: error %.3g x the bound",
                     kernel_name(kern), (long long)s.M, (long long)s.N, (long long)s.K, variant, res.worst);
      }
    }
    std::printf("  %s: worst error / bound: gemm_dx %.3f, gemm_dw %.3f\n", kernel_name(kern), worst_dx, worst_dw);
  }
}

// Small integers make every partial sum exact in float32: any kernel must then give the float64 answer bit for
// bit, whatever its blocking. Shapes straddle KC (reduction 263), MC (121 rows, the last micro-panel 1 row; 171
// rows past the AVX-512 MC of 168, last panel 3 rows) and NC (1030 columns: two column tasks on one thread).
LN_TEST(gemm_backward_exact_small_integers_across_blocks) {
  KernelScope scope;
  Rng r(9);
  for (CpuKernel kern : kernels()) {
    set_kernel(kern);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      const Weights w = make_weights(dt, 263, 1030, r, true);
      for (int64_t M : {121, 171}) {
        const Result res = run_dx(M, w, 263, 1030, dt == DType::F16, 1, r, true);
        LN_CHECK_MSG(res.exact, "%s gemm_dx %s M=%lld: not exact (worst %.3g x bound)", kernel_name(kern),
                     dtype_name(dt), (long long)M, res.worst);
      }
    }
    for (int64_t N : {121, 171}) {
      const Result res = run_dw(263, N, 1030, N, 1030, 1030, 1, r, true);
      LN_CHECK_MSG(res.exact, "%s gemm_dw N=%lld: not exact (worst %.3g x bound)", kernel_name(kern), (long long)N,
                   res.worst);
    }
  }
}

// Every family's kernels agree with the plain ones (both within the float64 bound, so within twice it of each other),
// and each family gives the same bits for 1, 2, 3 and 4 threads: the reduction order of an output element does not
// depend on how the output is split.
LN_TEST(gemm_backward_kernels_agree_and_thread_counts_are_bitwise_equal) {
  KernelScope scope;
  const std::vector<CpuKernel> ks = kernels();
  const Shape shapes[] = {{1, 300, 17}, {37, 75, 130}, {130, 40, 9}, {256, 96, 1100}};
  for (const Shape& s : shapes) {
    std::vector<std::vector<float>> dx_by_kernel, dw_by_kernel;
    for (CpuKernel kern : ks) {
      set_kernel(kern);
      std::vector<float> dx1, dw1;
      for (int threads = 1; threads <= 4; ++threads) {
        Rng r(77);  // the same inputs every time
        const Weights w = make_weights(DType::BF16, s.N, s.K, r, false);
        std::vector<float> dx, dw;
        const Result a = run_dx(s.M, w, s.N, s.K, true, threads, r, false, &dx);
        const Result b = run_dw(s.M, s.N, s.K, s.N, s.K, s.K, threads, r, false, &dw);
        LN_CHECK_MSG(a.worst <= 1 && b.worst <= 1, "%s M=%lld N=%lld K=%lld threads=%d: errors %.3g, %.3g x bound",
                     kernel_name(kern), (long long)s.M, (long long)s.N, (long long)s.K, threads, a.worst, b.worst);
        if (threads == 1) {
          dx1 = dx, dw1 = dw;
        } else {
          LN_CHECK_MSG(std::memcmp(dx.data(), dx1.data(), dx.size() * 4) == 0, "%s gemm_dx: %d threads differ from 1",
                       kernel_name(kern), threads);
          LN_CHECK_MSG(std::memcmp(dw.data(), dw1.data(), dw.size() * 4) == 0, "%s gemm_dw: %d threads differ from 1",
                       kernel_name(kern), threads);
        }
      }
      dx_by_kernel.push_back(dx1);
      dw_by_kernel.push_back(dw1);
    }
    for (size_t k = 1; k < ks.size(); ++k) {
      double ex = 0, ew = 0, mx = 0, mw = 0;
      for (size_t i = 0; i < dx_by_kernel[0].size(); ++i) {
        ex = std::max(ex, double(std::fabs(dx_by_kernel[k][i] - dx_by_kernel[0][i])));
        mx = std::max(mx, double(std::fabs(dx_by_kernel[0][i])));
      }
      for (size_t i = 0; i < dw_by_kernel[0].size(); ++i) {
        ew = std::max(ew, double(std::fabs(dw_by_kernel[k][i] - dw_by_kernel[0][i])));
        mw = std::max(mw, double(std::fabs(dw_by_kernel[0][i])));
      }
      LN_CHECK_MSG(ex <= 1e-5 * mx && ew <= 1e-5 * mw, "%s vs plain: max |diff| dx %.3g (of %.3g), dw %.3g (of %.3g)",
                   kernel_name(ks[k]), ex, mx, ew, mw);
    }
  }
}

// The bound is not vacuous: computing with W rounded to bf16 instead of its F32 value (a plausible bug: packing
// through the wrong conversion) is caught.
LN_TEST(gemm_backward_tolerance_can_fail) {
  KernelScope scope;
  Rng r(3);
  const int64_t M = 9, N = 200, K = 40;
  const Weights w = make_weights(DType::F32, N, K, r, false);
  std::vector<uint8_t> rounded(size_t(N * K * 4 + 2));
  for (int64_t i = 0; i < N * K; ++i) {
    const float f = round_bf16(float(w.value[size_t(i)]));
    std::memcpy(rounded.data() + 2 + 4 * i, &f, 4);
  }
  Weights bad = w;
  bad.storage = rounded;
  bad.ref.data = bad.storage.data() + 2;  // computes with rounded weights, checked against the exact ones
  for (CpuKernel kern : kernels()) {
    set_kernel(kern);
    Rng r1(4), r2(4);
    const Result good = run_dx(M, w, N, K, false, 2, r1, false);
    const Result wrong = run_dx(M, bad, N, K, false, 2, r2, false);
    LN_CHECK_MSG(good.worst <= 1, "%s: %.3g", kernel_name(kern), good.worst);
    LN_CHECK_MSG(wrong.worst > 10, "%s: a bf16-rounded W is only %.3g x the bound", kernel_name(kern), wrong.worst);
  }
}

// Empty sums, empty outputs, and bad arguments.
LN_TEST(gemm_backward_empty_and_bad_arguments) {
  KernelScope scope;
  ThreadPool pool(2);
  for (CpuKernel kern : kernels()) {
    set_kernel(kern);
    std::vector<float> dX(6, 1.f), scratch(16), dY(16, 1.f), X(16, 1.f), dW(16, 2.f);
    const WeightRef empty{dY.data(), DType::F32, 0, 3};  // N = 0: dX = 0 (or unchanged when accumulating)
    gemm_dx(2, dY.data(), 0, empty, dX.data(), 3, true, scratch.data(), pool);
    LN_CHECK(dX[0] == 1.f && dX[5] == 1.f);
    gemm_dx(2, dY.data(), 0, empty, dX.data(), 3, false, scratch.data(), pool);
    LN_CHECK(dX[0] == 0.f && dX[5] == 0.f);
    gemm_dw(0, 4, 4, dY.data(), 4, X.data(), 4, dW.data(), 4, pool);  // M = 0: dW unchanged
    LN_CHECK(dW[0] == 2.f && dW[15] == 2.f);
    const WeightRef w{dY.data(), DType::F32, 4, 4};
    gemm_dx(0, dY.data(), 4, w, dX.data(), 4, false, scratch.data(), pool);  // M = 0: nothing
    expect_invalid([&] { gemm_dx(-1, dY.data(), 4, w, dX.data(), 4, false, scratch.data(), pool); }, "negative");
    expect_invalid([&] { gemm_dx(2, dY.data(), 3, w, dX.data(), 4, false, scratch.data(), pool); }, "stride");
    expect_invalid([&] { gemm_dx(2, dY.data(), 4, w, dX.data(), 3, false, scratch.data(), pool); }, "stride");
    expect_invalid([&] { gemm_dw(2, 4, 4, dY.data(), 4, X.data(), 4, dW.data(), 3, pool); }, "stride");
    expect_invalid([&] { gemm_dw(2, -4, 4, dY.data(), 4, X.data(), 4, dW.data(), 4, pool); }, "negative");
  }
}
