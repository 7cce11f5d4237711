// The runtime's Gemm (native/src/cuda/cublaslt_loader.cpp, plain C++, compiled here as is) on the simulator's
// cuBLASLt: checks that the runtime's column-major layouts and transposes really give
//   run:    Y[M, N]  = (accumulate ? Y : 0) + X[M, K] . W[N, K]^T
//   run_dx: dX[M, K] = (accumulate ? dX : 0) + dY[M, N] . W[N, K]
//   run_dw: dW[N, K] += dY[M, N]^T . X[M, K]
// against float64, f32 and bf16, odd shapes, padded row strides (padding NaN, output padding must stay untouched,
// a non-accumulated output starts NaN), and that the runtime falls back to its simple kernel exactly when the
// sim has no algorithm (a bf16 operand whose row stride is not a multiple of 16 bytes). Device memory is host
// memory here (256-byte aligned, as cudaMalloc); the simple kernels are stubs that only count their calls.
// Build and run from the repo root:
//   g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden -I native/src -o /tmp/libcublasLt_sim.so native/cuda_sim/fake_cublaslt.cpp
//   g++ -std=c++17 -O2 -Wall -Wextra -I native/src -o /tmp/test_gemm_on_fake_cublaslt native/cuda_sim/test_gemm_on_fake_cublaslt.cpp native/src/cuda/cublaslt_loader.cpp -ldl
//   LANGNEURONS_CUBLASLT=/tmp/libcublasLt_sim.so /tmp/test_gemm_on_fake_cublaslt
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cublaslt.h"
#include "cuda/cuda_backend.h"
#include "cuda/runtime_kernels.h"
#include "cuda/train_kernels.h"

namespace ln {
namespace cuda {
void* device_alloc(size_t bytes) {
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p) throw std::bad_alloc();
  return p;
}
void device_free(void* p) { std::free(p); }
int g_fallbacks = 0;  // the simple kernels are not under test: count the calls, leave the output alone
void gemm_simple(int64_t, int64_t, int64_t, const void*, int64_t, const void*, int64_t, bool, float*, int64_t, bool,
                 Stream) { ++g_fallbacks; }
void gemm_simple_dx(int64_t, int64_t, int64_t, const void*, int64_t, const void*, int64_t, bool, float*, int64_t, bool,
                    Stream) { ++g_fallbacks; }
void gemm_simple_dw(int64_t, int64_t, int64_t, const void*, int64_t, const void*, int64_t, bool, float*, int64_t,
                    Stream) { ++g_fallbacks; }
}  // namespace cuda
}  // namespace ln

namespace {
using ln::DType;

// A row-major [rows, cols] matrix with row stride ld, as f32 or bf16, in a 256-byte-aligned buffer; NaN outside.
struct RowMat {
  int64_t rows, cols, ld;
  bool bf16;
  std::vector<double> val;  // the stored values, decoded (row-major, packed)
  void* buf;
  size_t bytes() const { return size_t(std::max<int64_t>(1, rows * ld)) * (bf16 ? 2 : 4); }
  RowMat(int64_t r, int64_t c, int64_t l, bool b) : rows(r), cols(c), ld(l), bf16(b), val(size_t(r * c), NAN) {
    buf = ln::cuda::device_alloc(bytes());
    std::memset(buf, 0xff, bytes());  // NaN in f32 and bf16
  }
  ~RowMat() { ln::cuda::device_free(buf); }
  RowMat(const RowMat&) = delete;
  void fill(std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        float f = u(rng);
        uint32_t x;
        std::memcpy(&x, &f, 4);
        if (bf16) {
          const uint16_t h = uint16_t(x >> 16);  // a bf16 value: a float's upper half
          std::memcpy(static_cast<char*>(buf) + 2 * (i * ld + j), &h, 2);
          x = uint32_t(h) << 16, std::memcpy(&f, &x, 4);
        } else {
          std::memcpy(static_cast<char*>(buf) + 4 * (i * ld + j), &f, 4);
        }
        val[size_t(i * cols + j)] = f;
      }
  }
  double out(int64_t i, int64_t j) const { return double(static_cast<const float*>(buf)[i * ld + j]); }
};

int g_failures = 0;
void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok) std::printf("ok %s\n", name.c_str());
  else std::printf("FAIL %s %s\n", name.c_str(), detail.c_str()), ++g_failures;
}

// One product on the runtime's Gemm; returns "" when right, else what is wrong.
std::string run_product(ln::cuda::Gemm& gemm, int product, int64_t M, int64_t N, int64_t K, bool bf16, bool acc,
                        int64_t pad, std::mt19937& rng) {
  const DType dt = bf16 ? DType::BF16 : DType::F32;
  // Operands (row-major) and output shapes per product.
  const int64_t r1 = M, c1 = product == 0 ? K : N;            // X [M, K] (run) or dY [M, N]
  const int64_t r2 = product == 2 ? M : N, c2 = K;            // W [N, K], or X [M, K] for dW
  const int64_t ro = product == 2 ? N : M, co = product == 0 ? N : K;
  RowMat a(r1, c1, c1 + pad, bf16), b(r2, c2, c2 + (pad ? pad + 1 : 0), bf16), y(ro, co, co + 2 * pad, false);
  a.fill(rng), b.fill(rng);
  const bool accumulates = product == 2 || acc;
  if (accumulates) y.fill(rng);  // else y starts NaN: it must not be read
  std::vector<unsigned char> before(static_cast<unsigned char*>(y.buf), static_cast<unsigned char*>(y.buf) + y.bytes());
  const int fallbacks = ln::cuda::g_fallbacks;
  float* Y = static_cast<float*>(y.buf);
  try {
    if (product == 0) gemm.run(M, N, K, a.buf, a.ld, b.buf, b.ld, dt, Y, y.ld, acc, nullptr);
    if (product == 1) gemm.run_dx(M, N, K, a.buf, a.ld, b.buf, b.ld, dt, Y, y.ld, acc, nullptr);
    if (product == 2) gemm.run_dw(M, N, K, a.buf, a.ld, b.buf, b.ld, dt, Y, y.ld, nullptr);
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
  const bool fell_back = ln::cuda::g_fallbacks != fallbacks;
  const bool expect_fallback = bf16 && (a.ld % 8 != 0 || b.ld % 8 != 0);  // 16-byte rows for bf16 operands
  if (fell_back != expect_fallback) return fell_back ? "fell back unexpectedly" : "did not fall back";
  if (fell_back) return "";
  const int64_t len = product == 0 ? K : product == 1 ? N : M;  // reduction length
  for (int64_t i = 0; i < ro; ++i)
    for (int64_t j = 0; j < co; ++j) {
      double sum = 0, mag = 0;
      for (int64_t t = 0; t < len; ++t) {
        double p;
        if (product == 0) p = a.val[size_t(i * K + t)] * b.val[size_t(j * K + t)];       // X[i,t] W[j,t]
        else if (product == 1) p = a.val[size_t(i * N + t)] * b.val[size_t(t * K + j)];  // dY[i,t] W[t,j]
        else p = a.val[size_t(t * N + i)] * b.val[size_t(t * K + j)];                    // dY[t,i] X[t,j]
        sum += p, mag += std::fabs(p);
      }
      const double init = accumulates ? y.val[size_t(i * co + j)] : 0.0, ref = init + sum;
      const double bound = (len + 3) * std::ldexp(1.0, -24) * (mag + std::fabs(init)) + 1e-300;
      if (!(std::fabs(y.out(i, j) - ref) <= bound))
        return "Y[" + std::to_string(i) + "," + std::to_string(j) + "] = " + std::to_string(y.out(i, j)) +
               ", reference " + std::to_string(ref);
    }
  for (int64_t i = 0; i < ro; ++i)  // the row padding is never written
    for (size_t k = size_t(i * y.ld + co) * 4; k < size_t((i + 1) * y.ld) * 4; ++k)
      if (static_cast<unsigned char*>(y.buf)[k] != before[k]) return "output padding written";
  return "";
}
}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const char* env = std::getenv("LANGNEURONS_CUBLASLT");
  if (!env || !*env) return std::fprintf(stderr, "set LANGNEURONS_CUBLASLT to the built libcublasLt_sim.so\n"), 1;
  setenv("LANGNEURONS_SIM_CUBLASLT_QUIET", "1", 1);  // "no algorithm" lines for the expected fallbacks
  ln::cuda::Gemm gemm;
  check(gemm.library().version_string() == "13.99", "loaded the sim's cuBLASLt (" + gemm.library().path + ")");
  std::mt19937 rng(7);
  const int64_t sizes[] = {1, 7, 33, 64};
  const char* names[] = {"run (Y = X W^T)", "run_dx (dX = dY W)", "run_dw (dW += dY^T X)"};
  for (int product = 0; product < 3; ++product)
    for (bool bf16 : {false, true}) {
      int count = 0, bad = 0;
      std::string first;
      for (int64_t M : sizes) for (int64_t N : sizes) for (int64_t K : sizes) for (int64_t pad : {0, 1, 8}) {
        const bool acc = count % 2 == 1;
        const std::string why = run_product(gemm, product, M, N, K, bf16, acc, pad, rng);
        ++count;
        if (!why.empty() && bad++ == 0)
          first = "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) + " pad=" +
                  std::to_string(pad) + (acc ? " accumulate" : "") + ": " + why;
      }
      check(bad == 0,
            std::string(names[product]) + (bf16 ? " bf16: " : " f32: ") + std::to_string(count) +
                " products match float64 (or fall back as predicted)",
            std::to_string(bad) + " wrong, first: " + first);
    }
  std::printf("%s (%lld planned shapes on the fallback)\n", g_failures ? "FAILED" : "all passed",
              (long long)gemm.fallback_shapes());
  return g_failures ? 1 : 0;
}
