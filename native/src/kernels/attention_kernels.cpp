// Causal attention of a tile of query vectors against blocks of keys (kernels/ops.h: attend_causal): the portable
// kernel family and the run-time dispatch (the caller brings the scratch). The AVX2 kernel (attention_kernels_avx2.cpp)
// runs the same algorithm with register-blocked microkernels; this one is the readable version of it.
//
// Layout of the scratch, per tile of up to kAttnTile query vectors ("lanes"):
//   Qt[hd][kAttnTile]            the tile's queries, transposed and multiplied by `scale`;
//   Ot[hd][kAttnTile]            the running sum of p . v of every lane (unnormalised);
//   P[kAttnKeyBlock][kAttnTile]  the current key block's scores, then their weights exp(s - m).
// Lanes are the innermost index everywhere, so the loops over lanes are plain SIMD loops for the compiler.
#include <algorithm>
#include <cmath>

#include "kernels/kernel_table.h"
#include "kernels/math.h"
#include "kernels/ops.h"

namespace ln {

int64_t attend_causal_scratch_floats(int hd) { return (2 * int64_t(hd) + kAttnKeyBlock) * kAttnTile; }

void attend_causal_plain(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v,
                         int64_t ldkv, int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch) {
  constexpr int L = kAttnTile;
  float* Qt = scratch;
  float* Ot = Qt + int64_t(hd) * L;
  float* P = Ot + int64_t(hd) * L;
  const int n_vec = n_rows * n_q;  // query vectors, row-major: vector i is row i / n_q, head i % n_q
  for (int i0 = 0; i0 < n_vec; i0 += L) {
    const int nl = std::min(L, n_vec - i0);
    // last[lane]: the last key the lane sees. Unused lanes get zero queries and the last row's keys: their scores
    // are 0 (finite), their results are dropped.
    int32_t last[L];
    math::SoftmaxState sm[L];
    for (int lane = 0; lane < L; ++lane) {
      const int i = i0 + std::min(lane, nl - 1);
      last[lane] = key0 + i / n_q;
      const float* qi = q + int64_t(i / n_q) * ldq + int64_t(i % n_q) * hd;
      for (int d = 0; d < hd; ++d) Qt[d * L + lane] = lane < nl ? qi[d] * scale : 0.f;
      sm[lane] = math::softmax_init();
    }
    const int32_t n_keys = last[nl - 1] + 1;  // lanes are in row order: the last one sees the most keys
    for (int32_t j0 = 0; j0 < n_keys; j0 += kAttnKeyBlock) {
      const int kb = std::min<int32_t>(kAttnKeyBlock, n_keys - j0);
      // Scores s[jj][lane] = k_{j0+jj} . (q_lane * scale); -inf past the lane's last key (causal mask).
      for (int jj = 0; jj < kb; ++jj) {
        const float* kj = k + int64_t(j0 + jj) * ldkv;
        float* s = P + jj * L;
        for (int lane = 0; lane < L; ++lane) s[lane] = 0.f;
        for (int d = 0; d < hd; ++d)
          for (int lane = 0; lane < L; ++lane) s[lane] += kj[d] * Qt[d * L + lane];
        for (int lane = 0; lane < L; ++lane)
          if (j0 + jj > last[lane]) s[lane] = -INFINITY;
      }
      // Online softmax: new running max, the factor for what was accumulated under the old one, the weights.
      float rescale[L];
      for (int lane = 0; lane < L; ++lane) {
        float m = sm[lane].m;
        for (int jj = 0; jj < kb; ++jj) m = std::max(m, P[jj * L + lane]);
        rescale[lane] = j0 == 0 ? 0.f : expf(sm[lane].m - m);  // j0 == 0: nothing accumulated yet
        float sum = 0.f;
        for (int jj = 0; jj < kb; ++jj) {
          const float p = math::softmax_weight(P[jj * L + lane], m);  // 0 for masked keys
          P[jj * L + lane] = p;
          sum += p;
        }
        sm[lane].s = sm[lane].s * rescale[lane] + sum;
        sm[lane].m = m;
      }
      // Ot[d][lane] = Ot[d][lane] * rescale + sum_jj v_{j0+jj}[d] * p[jj][lane].
      for (int d = 0; d < hd; ++d) {
        float* o = Ot + d * L;
        for (int lane = 0; lane < L; ++lane) o[lane] = j0 == 0 ? 0.f : o[lane] * rescale[lane];
        for (int jj = 0; jj < kb; ++jj) {
          const float vd = v[int64_t(j0 + jj) * ldkv + d];
          for (int lane = 0; lane < L; ++lane) o[lane] += vd * P[jj * L + lane];
        }
      }
    }
    for (int lane = 0; lane < nl; ++lane) {
      const int i = i0 + lane;
      float* oi = out + int64_t(i / n_q) * ldo + int64_t(i % n_q) * hd;
      const float inv = 1.f / sm[lane].s;
      for (int d = 0; d < hd; ++d) oi[d] = Ot[d * L + lane] * inv;
    }
  }
}

void attend_causal(const float* q, int64_t ldq, int n_rows, int n_q, const float* k, const float* v, int64_t ldkv,
                   int32_t key0, int hd, float scale, float* out, int64_t ldo, float* scratch) {
  cpu_kernels().attend_causal(q, ldq, n_rows, n_q, k, v, ldkv, key0, hd, scale, out, ldo, scratch);
}

}  // namespace ln
