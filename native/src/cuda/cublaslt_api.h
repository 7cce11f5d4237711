// The few cuBLASLt declarations the CUDA runtime uses, written out here because the development and CI machines
// have no cuBLAS headers: the library is loaded at run time with dlopen (cublaslt.h). Every type, signature and
// enum value below is copied from cublasLt.h / cublas_api.h / library_types.h of CUDA 12.x and 13.0 (unchanged
// between them; checked against the public headers): a value that differs would silently ask cuBLASLt for
// something else, so add nothing here without checking it against the header.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ln {
namespace cublaslt {

// cublas_api.h: cublasStatus_t
enum Status : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16,
};

// cublas_api.h: cublasOperation_t
enum Operation : int32_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

// cublas_api.h: cublasComputeType_t. 32F with f32 inputs is true float32 (no TF32: that is 32F_FAST_TF32 = 77).
enum ComputeType : int32_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69 };

// library_types.h: cudaDataType_t
enum DataType : int32_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };

// cublasLt.h: cublasLtMatmulDescAttributes_t (int32_t values)
enum MatmulDescAttribute : int32_t {
  CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
  CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
  CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
};

// cublasLt.h: cublasLtMatmulPreferenceAttributes_t
enum MatmulPreferenceAttribute : int32_t {
  CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,    // uint64_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,  // uint32_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

// cublasLt.h: opaque handles (pointers to semi-opaque structs) and the algorithm structs, laid out as there.
struct Context;
using Handle = Context*;                          // cublasLtHandle_t
struct MatmulDescOpaque { uint64_t data[12]; };   // cublasLtMatmulDescOpaque_t
using MatmulDesc = MatmulDescOpaque*;             // cublasLtMatmulDesc_t
struct MatrixLayoutOpaque { uint64_t data[8]; };  // cublasLtMatrixLayoutOpaque_t
using MatrixLayout = MatrixLayoutOpaque*;         // cublasLtMatrixLayout_t
struct PreferenceOpaque { uint64_t data[10]; };   // cublasLtMatmulPreferenceOpaque_t
using Preference = PreferenceOpaque*;             // cublasLtMatmulPreference_t
struct MatmulAlgo { uint64_t data[8]; };          // cublasLtMatmulAlgo_t
struct HeuristicResult {                          // cublasLtMatmulHeuristicResult_t (96 bytes)
  MatmulAlgo algo;
  size_t workspaceSize;
  int state;  // cublasStatus_t
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

// The functions, as pointer types (cudaStream_t is passed as void*; cudaDataType_t / enums as int32_t).
using CreateFn = int (*)(Handle*);
using DestroyFn = int (*)(Handle);
using GetVersionFn = size_t (*)();
using MatmulDescCreateFn = int (*)(MatmulDesc*, int32_t compute_type, int32_t scale_type);
using MatmulDescDestroyFn = int (*)(MatmulDesc);
using MatmulDescSetAttributeFn = int (*)(MatmulDesc, int32_t attr, const void* buf, size_t size);
using MatrixLayoutCreateFn = int (*)(MatrixLayout*, int32_t type, uint64_t rows, uint64_t cols, int64_t ld);
using MatrixLayoutDestroyFn = int (*)(MatrixLayout);
using PreferenceCreateFn = int (*)(Preference*);
using PreferenceDestroyFn = int (*)(Preference);
using PreferenceSetAttributeFn = int (*)(Preference, int32_t attr, const void* buf, size_t size);
using AlgoGetHeuristicFn = int (*)(Handle, MatmulDesc, MatrixLayout a, MatrixLayout b, MatrixLayout c,
                                   MatrixLayout d, Preference, int requested, HeuristicResult* results,
                                   int* returned);
using MatmulFn = int (*)(Handle, MatmulDesc, const void* alpha, const void* A, MatrixLayout, const void* B,
                         MatrixLayout, const void* beta, const void* C, MatrixLayout, void* D, MatrixLayout,
                         const MatmulAlgo* algo, void* workspace, size_t workspace_bytes, void* stream);

}  // namespace cublaslt
}  // namespace ln
