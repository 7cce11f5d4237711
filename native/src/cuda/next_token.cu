// The next token on the device (LogitsMode::Greedy, model/next_token.h): the repetition penalty on each row's
// listed ids, then one block per row finds the pick and the row's checks with math.h's rules, so that a decode
// step copies n_seqs small records to the host instead of n_seqs x vocab logits. Indexing and reductions only.
#include <cuda_runtime.h>

#include <climits>

#include "cuda/cuda_check.cuh"
#include "cuda/runtime_kernels.h"
#include "kernels/math.h"

namespace ln {
namespace cuda {
namespace {

constexpr int kPickThreads = 512;  // a power of two (the tree reduction halves it)

// Row r's ids are distinct (plan_penalty_ids), so no two threads touch one logit.
__global__ void penalize_kernel(float* logits, int64_t ld, double penalty, const int32_t* ids, const int64_t* offsets) {
  float* row = logits + int64_t(blockIdx.x) * ld;
  for (int64_t i = offsets[blockIdx.x] + threadIdx.x; i < offsets[blockIdx.x + 1]; i += blockDim.x)
    row[ids[i]] = math::repetition_penalty(row[ids[i]], penalty);
}

// Each thread scans a stride of the row; the block then merges the threads' picks with next_token_beats (a total
// order: the result does not depend on the reduction's shape), the smallest non-finite index and "any nonzero".
__global__ void pick_kernel(const float* logits, int64_t ld, int32_t V, NextToken* out) {
  __shared__ float best_v[kPickThreads];
  __shared__ int32_t best_i[kPickThreads], bad_i[kPickThreads], nonzero[kPickThreads];
  const float* row = logits + int64_t(blockIdx.x) * ld;
  const int t = threadIdx.x;
  float bv = 0.f;
  int32_t bi = -1, bad = INT_MAX, nz = 0;
  for (int32_t j = t; j < V; j += kPickThreads) {
    const float x = row[j];
    if (bad == INT_MAX && !isfinite(x)) bad = j;  // this thread's first is its smallest
    nz |= x != 0.f;
    if (bi < 0 || math::next_token_beats(x, j, bv, bi)) {
      bv = x;
      bi = j;
    }
  }
  best_v[t] = bv;
  best_i[t] = bi;
  bad_i[t] = bad;
  nonzero[t] = nz;
  __syncthreads();
  for (int w = kPickThreads / 2; w > 0; w /= 2) {
    if (t < w) {
      const int o = t + w;
      if (best_i[o] >= 0 && (best_i[t] < 0 || math::next_token_beats(best_v[o], best_i[o], best_v[t], best_i[t]))) {
        best_v[t] = best_v[o];
        best_i[t] = best_i[o];
      }
      bad_i[t] = min(bad_i[t], bad_i[o]);
      nonzero[t] |= nonzero[o];
    }
    __syncthreads();
  }
  if (t == 0) {
    NextToken r;
    r.token = best_i[0];
    r.logit = best_v[0];
    r.first_nonfinite = bad_i[0] == INT_MAX ? -1 : bad_i[0];
    r.nonfinite_value = bad_i[0] == INT_MAX ? 0.f : row[bad_i[0]];
    r.all_zero = nonzero[0] ? 0 : 1;
    out[blockIdx.x] = r;
  }
}

}  // namespace

void penalize_logits(int64_t n_rows, float* logits, int64_t ld, double penalty, const int32_t* ids,
                     const int64_t* offsets, Stream stream) {
  if (n_rows <= 0 || penalty == 1.0) return;
  penalize_kernel<<<unsigned(n_rows), 256, 0, as_stream(stream)>>>(logits, ld, penalty, ids, offsets);
  check_launch("penalize_logits");
}

void pick_next_tokens(int64_t n_rows, const float* logits, int64_t ld, int64_t V, NextToken* out, Stream stream) {
  if (n_rows <= 0) return;
  pick_kernel<<<unsigned(n_rows), kPickThreads, 0, as_stream(stream)>>>(logits, ld, int32_t(V), out);
  check_launch("pick_next_tokens");
}

}  // namespace cuda
}  // namespace ln
