// Micro-benchmark of the backward GEMMs of the training path (train/gemm_backward.h): the packed kernels of the
// widest family this CPU has (avx512 / avx512bf16 / avx2; LANGNEURONS_KERNEL picks another) against the plain loops, in the same run, on the shapes of one Qwen2.5-0.5B layer (hidden 896, intermediate 4864,
// 14 heads x 64 = 896 for q/o, 2 kv heads x 64 = 128 for k/v, vocabulary 151936) at M tokens per batch.
//
//   dx  = dY W        (gemm_dx: W frozen in BF16 as in a checkpoint, or an f32 master copy)
//   dW += dY^T X      (gemm_dw)
//   sparse: what `neurons` computes per layer for n selected neurons: dW of the n gathered rows of gate/up
//           (dW [n, 896]) and of the n gathered columns of down (dW [896, n]), the input gradient through the n
//           f32 master rows ([n, 896]) and into the n gathered columns of down's input ([M x n]).
//
// Every number is the best of --reps timed calls after a warm-up, and plain / the fast family take turns in every rep so
// that load from other processes hits both alike: on a shared machine only the ratio column means much.
//
// Usage (gemm-backward.sh builds and runs it):
//   bench_gemm_backward [--quick] [--tokens 256,512] [--reps N] [--threads T] [--neurons n] [--no-head] [--cpu-time]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../common/bench_util.h"
#include "kernels/cpu_features.h"
#include "train/gemm_backward.h"

using namespace ln;
using namespace ln::train;

namespace {

// --cpu-time: process CPU time instead of wall time. Discounts the time other processes took the cores from us;
// meaningful with --threads 1 (the pool's idle workers sleep, so they add nothing).
bool g_cpu_time = false;

double loadavg() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

struct Buf {
  std::vector<float> v;
  explicit Buf(int64_t n, uint32_t seed) : v(bench::random_floats(n, seed)) {}
  float* data() { return v.data(); }
};

std::vector<uint16_t> bf16_weights(int64_t n, uint32_t seed) {
  Buf f(n, seed);
  std::vector<uint16_t> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[size_t(i)] = f32_to_bf16(f.v[size_t(i)] * 0.05f);
  return w;
}

struct Row {
  std::string op, shape, wtype;
  double flops;
  std::function<void()> fn;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> tokens = {256, 512};
  int reps = 3, threads = int(std::max(1u, std::thread::hardware_concurrency()));
  int64_t neurons = 49;  // 1% of 24 x 4864 neurons, spread over 24 layers
  bool head = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--quick") tokens = {256}, reps = 2;
    else if (a == "--tokens") {
      tokens.clear();
      for (std::string s = next(); !s.empty();) {
        const size_t c = s.find(',');
        tokens.push_back(std::atoll(s.substr(0, c).c_str()));
        s = c == std::string::npos ? "" : s.substr(c + 1);
      }
    } else if (a == "--reps") reps = std::atoi(next());
    else if (a == "--threads") threads = std::atoi(next());
    else if (a == "--neurons") neurons = std::atoll(next());
    else if (a == "--no-head") head = false;
    else if (a == "--cpu-time") g_cpu_time = true;
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  if (!cpu_supports(CpuKernel::Avx2)) {
    std::fprintf(stderr, "this CPU has no AVX2/FMA/F16C: only the plain kernel exists, nothing to compare\n");
    return 1;
  }
  // The family compared with plain: the widest this CPU has, or LANGNEURONS_KERNEL's.
  const CpuKernel fast = active_kernel();
  const char* fast_name = kernel_name(fast);
  const int64_t H = 896, I = 4864, KV = 128, V = 151936, n = neurons, chunk = 64;
  ThreadPool pool(threads);
  const int64_t maxM = *std::max_element(tokens.begin(), tokens.end());
  // Operands, allocated once for the largest M.
  const std::vector<uint16_t> w_gate = bf16_weights(I * H, 1), w_down = bf16_weights(H * I, 2),
                              w_q = bf16_weights(H * H, 3), w_k = bf16_weights(KV * H, 4);
  const std::vector<uint16_t> w_head = head ? bf16_weights(V * H, 5) : std::vector<uint16_t>();
  Buf m_gate(I * H, 6), m_sel(n * H, 7), m_cols(H * n, 8);
  Buf dy_i(maxM * I, 9), dy_h(maxM * H, 10), x_h(maxM * H, 11),
      x_i(maxM * I, 12), sel(maxM * n, 13), dlogits(chunk * V, 14);
  Buf out_dx(maxM * I, 15), out_dw(I * H, 16), out_small(std::max(n * H, maxM * n), 17);
  std::vector<float> scratch(size_t(threads * I));
  auto bf = [](const std::vector<uint16_t>& w, int64_t rows, int64_t cols) {
    return WeightRef{w.data(), DType::BF16, rows, cols};
  };
  auto f32 = [](Buf& w, int64_t rows, int64_t cols) { return WeightRef{w.data(), DType::F32, rows, cols}; };

  std::printf("backward GEMMs, Qwen2.5-0.5B shapes, %d threads, best of %d, %s (load %.2f at start)\n\n", threads,
              reps, g_cpu_time ? "process CPU time" : "wall time", loadavg());
  std::printf("| M | product | shapes (out = A x B) | W | plain GFLOP/s | %s GFLOP/s | %s / plain |\n", fast_name,
              fast_name);
  std::printf("|---|---|---|---|---|---|---|\n");
  double sum_plain = 0, sum_fast = 0;  // seconds over all rows (a crude "per layer" total)
  for (int64_t M : tokens) {
    std::vector<Row> rows;
    auto dx = [&](const char* op, WeightRef w, Buf& dy, bool acc, float* out, int64_t m) {
      char sh[96];
      std::snprintf(sh, sizeof sh, "[%lld x %lld] = [%lld x %lld] x [%lld x %lld]", (long long)m, (long long)w.cols,
                    (long long)m, (long long)w.rows, (long long)w.rows, (long long)w.cols);
      rows.push_back({op, sh, w.dtype == DType::BF16 ? "bf16" : "f32", 2.0 * double(m) * double(w.rows) * double(w.cols),
                      [&, w, acc, out, m, pdy = &dy] {
                        gemm_dx(m, pdy->data(), w.rows, w, out, w.cols, acc, scratch.data(), pool);
                      }});
    };
    auto dw = [&](const char* op, int64_t N, int64_t K, float* dY, float* X, float* out) {
      char sh[96];
      std::snprintf(sh, sizeof sh, "[%lld x %lld] += [%lld x %lld] x [%lld x %lld]", (long long)N, (long long)K,
                    (long long)N, (long long)M, (long long)M, (long long)K);
      rows.push_back({op, sh, "–", 2.0 * double(M) * double(N) * double(K),
                      [&, N, K, dY, X, out] { gemm_dw(M, N, K, dY, N, X, K, out, K, pool); }});
    };
    // Dense products of one layer (frozen BF16 weights for dX; the dW of full / mlp training).
    dx("dX gate/up", bf(w_gate, I, H), dy_i, false, out_dx.data(), M);
    dx("dX gate/up (f32 master)", f32(m_gate, I, H), dy_i, false, out_dx.data(), M);
    dx("dX down", bf(w_down, H, I), dy_h, false, out_dx.data(), M);
    dx("dX q/o", bf(w_q, H, H), dy_h, false, out_dx.data(), M);
    dx("dX k/v", bf(w_k, KV, H), dy_h, true, out_dx.data(), M);
    dw("dW gate/up", I, H, dy_i.data(), x_h.data(), out_dw.data());
    dw("dW down", H, I, dy_h.data(), x_i.data(), out_dw.data());
    dw("dW q/o", H, H, dy_h.data(), x_h.data(), out_dw.data());
    // The sparse products of `neurons` (n gathered rows / columns).
    dw("sparse dW gate/up rows", n, H, sel.data(), x_h.data(), out_small.data());
    dw("sparse dW down cols", H, n, dy_h.data(), sel.data(), out_small.data());
    dx("sparse dX via master rows", f32(m_sel, n, H), sel, true, out_dx.data(), M);
    dx("sparse dX down cols", f32(m_cols, H, n), dy_h, false, out_small.data(), M);
    if (head && M == tokens.front()) dx("dX lm_head (one 64-row chunk)", bf(w_head, V, H), dlogits, false, out_dx.data(), chunk);

    for (const Row& r : rows) {
      double best[2] = {1e30, 1e30};
      const CpuKernel ks[2] = {CpuKernel::Plain, fast};
      for (CpuKernel k : ks) set_kernel(k), r.fn();  // warm-up (sizes the packing buffers)
      for (int rep = 0; rep < reps; ++rep)
        for (int k = 0; k < 2; ++k) {
          set_kernel(ks[k]);
          const double t0 = bench::now_seconds(g_cpu_time);
          r.fn();
          best[k] = std::min(best[k], bench::now_seconds(g_cpu_time) - t0);
        }
      sum_plain += best[0], sum_fast += best[1];
      std::printf("| %lld | %s | %s | %s | %.1f | %.1f | %.2f |\n", (long long)M, r.op.c_str(), r.shape.c_str(),
                  r.wtype.c_str(), r.flops / best[0] * 1e-9, r.flops / best[1] * 1e-9, best[0] / best[1]);
      std::fflush(stdout);
    }
  }
  std::printf("\nall rows: plain %.2f s, %s %.2f s (%.2fx); load %.2f at the end\n", sum_plain, fast_name, sum_fast,
              sum_plain / sum_fast, loadavg());
  return 0;
}
