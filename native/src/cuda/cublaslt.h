// cuBLASLt, loaded at run time (dlopen of libcublasLt.so.13, then .so.12), and the runtime's GEMM on top of it:
//   Y[M, N] = (accumulate ? Y : 0) + X[M, K] . W[N, K]^T
// with row-major activations X (row stride ldx) and the HF Linear weight layout W [out][in] (row stride ldw),
// float32 output Y (row stride ldy) and float32 accumulation (CUBLAS_COMPUTE_32F):
//   - BF16 x BF16 -> F32: the bf16 compute mode (tensor cores; the same values as the CPU's Compute::BF16, whose
//     products of bf16-rounded operands are exact in float32, up to the order of the float32 sums);
//   - F32 x F32 -> F32: the f32 check mode (CUBLAS_COMPUTE_32F with f32 inputs never uses TF32).
// Plain C++ (no CUDA or cuBLAS headers): cublaslt_api.h declares what is used.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "cuda/cublaslt_api.h"

namespace ln {
namespace cuda {

// The loaded library (process-wide, loaded once, never unloaded).
struct CublasLtLibrary {
  std::string path;     // what dlopen loaded
  size_t version = 0;   // cublasLtGetVersion(): major * 10000 + minor * 100 + patch
  cublaslt::CreateFn create = nullptr;
  cublaslt::DestroyFn destroy = nullptr;
  cublaslt::GetVersionFn get_version = nullptr;
  cublaslt::MatmulDescCreateFn desc_create = nullptr;
  cublaslt::MatmulDescDestroyFn desc_destroy = nullptr;
  cublaslt::MatmulDescSetAttributeFn desc_set = nullptr;
  cublaslt::MatrixLayoutCreateFn layout_create = nullptr;
  cublaslt::MatrixLayoutDestroyFn layout_destroy = nullptr;
  cublaslt::PreferenceCreateFn pref_create = nullptr;
  cublaslt::PreferenceDestroyFn pref_destroy = nullptr;
  cublaslt::PreferenceSetAttributeFn pref_set = nullptr;
  cublaslt::AlgoGetHeuristicFn heuristic = nullptr;
  cublaslt::MatmulFn matmul = nullptr;
  std::string version_string() const;  // "13.0" etc.
};

// Loads the library on first use; throws std::runtime_error naming every place it looked (and why a found file
// did not load) when it cannot. Thread-safe.
const CublasLtLibrary& cublaslt_library();

// Every place cublaslt_library() tries, in order (for the error message and the tests): "env LANGNEURONS_CUBLASLT",
// plain sonames (the loader path), toolkit folders, Python wheel folders. Exposed for tests.
std::vector<std::string> cublaslt_candidates();

// One runtime's GEMM engine: a cuBLASLt handle, a workspace allocated once, and the heuristic's choice cached per
// shape (so the hot loop does no descriptor set-up after the first call of each shape). Not thread-safe (one per
// runtime, used on its one stream).
class Gemm {
 public:
  static constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what NVIDIA suggests for Hopper
  Gemm();  // loads the library, creates the handle and the workspace; throws std::runtime_error
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // dtype: BF16 (X and W bf16) or F32 (both float32). Pointers are device pointers; stream a cudaStream_t.
  // A shape cuBLASLt has no algorithm for (tiny models with rows not 16-byte aligned) runs on a simple kernel
  // (same arithmetic, slow); throws std::runtime_error naming the shape when a cuBLASLt call fails.
  void run(int64_t M, int64_t N, int64_t K, const void* X, int64_t ldx, const void* W, int64_t ldw, DType dtype,
           float* Y, int64_t ldy, bool accumulate, void* stream);

  // The two products of the backward of that Linear layer (dtype as run: BF16 or F32 operands, float32 output):
  //   run_dx: dX[M, K] = (accumulate ? dX : 0) + dY[M, N] . W[N, K]    (W in the HF [out][in] layout, as run)
  //   run_dw: dW[N, K] += dY[M, N]^T . X[M, K]                         (always accumulates)
  // In bf16 mode the caller converts dY (and X) to bf16 first. Same plan cache and simple-kernel fallback as run
  // (train_kernels.h gemm_simple_dx / gemm_simple_dw).
  void run_dx(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* W, int64_t ldw, DType dtype,
              float* dX, int64_t lddx, bool accumulate, void* stream);
  void run_dw(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* X, int64_t ldx, DType dtype,
              float* dW, int64_t lddw, void* stream);

  int64_t workspace_bytes() const { return int64_t(kWorkspaceBytes); }
  int64_t fallback_shapes() const;  // shapes that ran on the simple kernel so far (for tests and logs)
  const CublasLtLibrary& library() const { return lib_; }

 private:
  struct Plan {
    bool fallback = false;  // cuBLASLt offered no algorithm: runtime_kernels.h gemm_simple
    cublaslt::MatmulDesc desc = nullptr;
    cublaslt::MatrixLayout a = nullptr, b = nullptr, c = nullptr;
    cublaslt::MatmulAlgo algo{};
  };
  enum Product : int { kForward = 0, kDx = 1, kDw = 2 };
  // (product, M, N, K, the two operands' row strides, the output's, dtype, alignment of the pointers); the row
  // strides in the order of the product's arguments (run: ldx, ldw; run_dx: lddy, ldw; run_dw: lddy, ldx).
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, uint32_t>;
  const Plan& plan(const Key& k);
  // The cuBLASLt call of a planned product: A and B are the operands in cuBLASLt's order (see plan()).
  bool matmul(const Plan& p, const void* A, const void* B, float* C, bool accumulate, void* stream,
              const std::string& what);

  const CublasLtLibrary& lib_;
  cublaslt::Handle handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, Plan> plans_;
};

}  // namespace cuda
}  // namespace ln
