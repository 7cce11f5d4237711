// Internal interface between the GEMM dispatch (gemm.cpp, through kernels/kernel_table.h) and the kernel families
// (gemm_plain.cpp, gemm_avx2.cpp, gemm_avx512.cpp, gemm_avx512bf16.cpp). Not part of the engine's API: callers use
// gemm_xwt from kernels/gemm.h.
//
// Every family provides the same two entry points, with the semantics of gemm_xwt:
//   *_gemm: the packed, cache-blocked path for many rows (prefill);
//   *_gemv: the streaming path for a few rows (decode), W read once straight from the checkpoint.
// Arguments are already validated (M, N, K >= 1).
#pragma once
#include "core/scratch.h"
#include "kernels/gemm.h"

namespace ln {

void plain_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                bool accumulate, ThreadPool& pool);
void plain_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                bool accumulate, ThreadPool& pool);

void avx2_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
               bool accumulate, ThreadPool& pool);
void avx2_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
               bool accumulate, ThreadPool& pool);

// x86 only (gemm_avx512.cpp, gemm_avx512bf16.cpp); callable after cpu_supports(Avx512 / Avx512Bf16).
// avx512bf16_* run bf16 compute on vdpbf16ps and hand f32 compute to avx512_*.
void avx512_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                 bool accumulate, ThreadPool& pool);
void avx512_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy, Compute compute,
                 bool accumulate, ThreadPool& pool);
void avx512bf16_gemm(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy,
                     Compute compute, bool accumulate, ThreadPool& pool);
void avx512bf16_gemv(int64_t M, const float* X, int64_t ldx, const WeightRef& W, float* Y, int64_t ldy,
                     Compute compute, bool accumulate, ThreadPool& pool);

// Rows of X up to which the streaming GEMV path beats packing (decode is M = 1; speculative/batched decode a few).
constexpr int64_t kGemvMaxRows = 8;

// Split `units` work units into tasks of whole units so that every one of `threads` workers gets about the same
// share: the number of tasks is a multiple of `threads`, and no task is larger than `max_per_task` units (when
// that is possible). Returns the units per task (the last task may be smaller).
int64_t balanced_chunk(int64_t units, int threads, int64_t max_per_task);

}  // namespace ln
