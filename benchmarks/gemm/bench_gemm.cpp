// GEMM benchmark: the engine's gemm_xwt (as shipped: portable build, kernels picked at run time) against
// OpenBLAS sgemm on the prefill MLP shapes of Qwen2.5-0.5B and Llama-3.2-1B at M = 512, 1024, 2048. Reference
// points measured in the same rounds: the FMA peak of the machine and the vdpbf16ps peak (register-only loops).
// Absolute numbers drift on a shared machine; the paired ratios are what count. Decode (GEMV) is bench_gemv.cpp.
//
// Usage: bench_gemm [--quick] [--m 512,1024,2048] [--reps N] [--threads T] [--cpu-time]     (run.sh builds and runs it)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <thread>
#include <vector>

#include "../common/bench_util.h"
#include "kernels/gemm.h"

#ifdef LN_HAVE_OPENBLAS
// Declared here rather than through <cblas.h>: Debian's alternatives may point that header at another BLAS.
extern "C" {
void openblas_set_num_threads(int);
char* openblas_get_corename(void);
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
}
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
#endif

using namespace ln;

namespace {

int g_reps = 5;
// --cpu-time: time by process CPU time instead of wall time. On a loaded machine this discounts the time we were
// descheduled; fair only with --threads 1 (idle pool threads sleep, but OpenBLAS's may spin).
bool g_cpu_time = false;

// One warm-up call each, then g_reps rounds in which every variant runs once, in turn: load from other processes
// on a shared machine hits the variants of a round alike, so ratios taken within a round (paired) and then their
// median over the rounds hold where best-of or mean times drift. Returns times[round][variant].
// openblas: the index of the OpenBLAS variant, after which its threads are let park (bench::let_openblas_threads_park).
std::vector<std::vector<double>> round_times(const std::vector<std::function<void()>>& fs, size_t openblas = SIZE_MAX) {
  for (size_t i = 0; i < fs.size(); ++i) {
    fs[i]();
    if (i == openblas) bench::let_openblas_threads_park();
  }
  std::vector<std::vector<double>> t(size_t(g_reps), std::vector<double>(fs.size()));
  for (int r = 0; r < g_reps; ++r)
    for (size_t i = 0; i < fs.size(); ++i) {
      const double t0 = bench::now_seconds(g_cpu_time);
      fs[i]();
      t[size_t(r)][i] = bench::now_seconds(g_cpu_time) - t0;
      if (i == openblas) bench::let_openblas_threads_park();
    }
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? NAN : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median over the rounds of f(times of that round).
template <class F>
double median_over_rounds(const std::vector<std::vector<double>>& t, F f) {
  std::vector<double> v;
  for (const auto& round : t) v.push_back(f(round));
  return median(v);
}

// ---- machine reference points ------------------------------------------------------------------------------

// Runs f(thread) on `threads` threads at once and returns the wall time.
double on_threads(int threads, const std::function<void(int)>& f) {
  std::vector<std::thread> ts;
  const double t0 = bench::now_seconds(g_cpu_time);
  for (int t = 1; t < threads; ++t) ts.emplace_back(f, t);
  f(0);
  for (auto& t : ts) t.join();
  return bench::now_seconds(g_cpu_time) - t0;
}

// The register-only peak loops (bench_util.h): AVX2 FMA, AVX-512 FMA (the widest FMA when the CPU has it) and
// vdpbf16ps. flops_per_iter: flops of one iteration of the loop on one thread.
enum class PeakLoop { Avx2Fma, Avx512Fma, Bf16Dot };
bool peak_available(PeakLoop l) {
  return l == PeakLoop::Avx2Fma ? true : l == PeakLoop::Avx512Fma ? bench::cpu_has_avx512f() : bench::cpu_has_avx512bf16();
}
double peak_flops_per_iter(PeakLoop l) { return l == PeakLoop::Avx2Fma ? 2.0 * 8 * 12 : l == PeakLoop::Avx512Fma ? 2.0 * 16 * 16 : 64.0 * 16; }
float run_peak_loop(PeakLoop l, int64_t iters) {
  return l == PeakLoop::Avx2Fma ? bench::fma_loop(iters) : l == PeakLoop::Avx512Fma ? bench::fma_loop_512(iters) : bench::dpbf16_loop(iters);
}
PeakLoop widest_fma() { return peak_available(PeakLoop::Avx512Fma) ? PeakLoop::Avx512Fma : PeakLoop::Avx2Fma; }
const char* peak_name(PeakLoop l) {
  return l == PeakLoop::Avx2Fma ? "AVX2 FMA (ymm)" : l == PeakLoop::Avx512Fma ? "AVX-512 FMA (zmm)" : "vdpbf16ps (zmm)";
}

double peak_gflops(PeakLoop l, int threads) {
  if (!peak_available(l)) return NAN;
  const int64_t iters = l == PeakLoop::Avx2Fma ? 50'000'000 : 20'000'000;
  volatile float sink = 0;
  double best = 1e30;
  for (int r = 0; r < 3; ++r)
    best = std::min(best, on_threads(threads, [&](int) { sink = sink + run_peak_loop(l, iters); }));
  return peak_flops_per_iter(l) * double(iters) * threads / best / 1e9;
}

// ---- data --------------------------------------------------------------------------------------------------

std::vector<uint16_t> to_16bit(const std::vector<float>& v, DType t) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::BF16) {
      h[i] = f32_to_bf16(v[i]);
    } else {  // f16 via F16C would need flags; values are in [-1, 1), so a plain conversion is enough here
      float a = std::fabs(v[i]);
      int e;
      float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
      uint16_t sign = v[i] < 0 ? 0x8000 : 0;
      if (a < 6.2e-5f) {
        h[i] = sign;  // flush tiny values: irrelevant for timing
      } else {
        int exp = e - 1 + 15, mant = int(std::lround((m * 2 - 1) * 1024));
        if (mant == 1024) mant = 0, ++exp;
        h[i] = uint16_t(sign | (exp << 10) | mant);
      }
    }
  }
  return h;
}

// ---- prefill table -----------------------------------------------------------------------------------------

struct Shape {
  int64_t K, N;
};

void prefill_table(ThreadPool& pool, const std::vector<int64_t>& Ms) {
  const Shape shapes[] = {{896, 4864}, {4864, 896}, {2048, 8192}, {8192, 2048}};
  std::printf("\n### Prefill GEMM, GFLOP/s (2*M*N*K / time, median of %d rounds), %d threads\n\n", g_reps, pool.size());
  const PeakLoop fma = widest_fma();
  const bool has_bf16_peak = peak_available(PeakLoop::Bf16Dot);
  std::printf("FMA peak: the widest FMA, %s; bf16 peak: vdpbf16ps%s. Both run in the same rounds as the GEMMs, for as "
              "many flops as the GEMM; every ratio is the median over the rounds of the ratio within a round.\n\n",
              peak_name(fma), has_bf16_peak ? "" : " (not on this CPU: nan)");
  std::printf("| M | K→N | ours f32 | ours f32, bf16 W | ours bf16 compute | OpenBLAS sgemm | f32/OB | bf16 W/OB |"
              " bf16c/OB | FMA peak | ours f32/peak | OB/peak | bf16 peak | bf16c/bf16 peak | bf16c/bf16 peak, min–max |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t M : Ms) {
    for (const Shape& s : shapes) {
      const int64_t K = s.K, N = s.N;
      std::vector<float> X = bench::random_floats(M * K, 1), W = bench::random_floats(N * K, 2), Y(size_t(M * N));
      std::vector<uint16_t> Wb = to_16bit(W, DType::BF16);
      WeightRef wf{W.data(), DType::F32, N, K}, wb{Wb.data(), DType::BF16, N, K};
      const double flop = 2.0 * double(M) * double(N) * double(K);
      auto ours = [&](const WeightRef& w, Compute c) {
        return [&, w, c] { gemm_xwt(M, X.data(), K, w, Y.data(), N, c, false, pool); };
      };
      std::vector<std::function<void()>> fs{ours(wf, Compute::F32), ours(wb, Compute::F32), ours(wb, Compute::BF16)};
      // The peak loops run in the same rounds, each for the GEMM's flops (so for about as long as the GEMM would at
      // that peak: a load burst of a few seconds cannot hit one side of a ratio only).
      const auto iters_for = [&](PeakLoop l) {
        return std::max<int64_t>(1000, int64_t(flop / (peak_flops_per_iter(l) * pool.size())));
      };
      const int64_t fma_iters = iters_for(fma), bf16_iters = iters_for(PeakLoop::Bf16Dot);
      volatile float sink = 0;
      fs.push_back([&] { on_threads(pool.size(), [&](int) { sink = sink + run_peak_loop(fma, fma_iters); }); });
      if (has_bf16_peak)
        fs.push_back([&] {
          on_threads(pool.size(), [&](int) { sink = sink + run_peak_loop(PeakLoop::Bf16Dot, bf16_iters); });
        });
      size_t openblas = SIZE_MAX;
#ifdef LN_HAVE_OPENBLAS
      openblas = fs.size();
      fs.push_back([&] {
        cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(M), int(N), int(K), 1.f, X.data(), int(K), W.data(), int(K), 0.f,
                    Y.data(), int(N));
      });
#endif
      const auto t = round_times(fs, openblas);
      const size_t f32 = 0, bw = 1, bc = 2, pk = 3, bpk = has_bf16_peak ? 4 : fs.size(), ob = fs.size() - 1;
      const bool has_ob = ob > 3 && ob != bpk;
      const double fma_flop = peak_flops_per_iter(fma) * double(fma_iters) * pool.size();
      const double bf16_flop = peak_flops_per_iter(PeakLoop::Bf16Dot) * double(bf16_iters) * pool.size();
      const auto gf = [&](size_t i, double fl) -> double {
        return i < fs.size() && (i != ob || has_ob) ? median_over_rounds(t, [&](const std::vector<double>& r) {
          return fl / r[i] / 1e9;
        })
                                                    : NAN;
      };
      // ratio of throughputs a/b within a round (flops fa, fb), median over the rounds
      const auto ratio = [&](size_t a, double fa, size_t b, double fb) -> double {
        if (a >= fs.size() || b >= fs.size() || ((a == ob || b == ob) && !has_ob)) return NAN;
        return median_over_rounds(t, [&](const std::vector<double>& r) { return (fa / r[a]) / (fb / r[b]); });
      };
      double lo = NAN, hi = NAN;
      if (has_bf16_peak)
        for (const auto& r : t) {
          const double q = (flop / r[bc]) / (bf16_flop / r[bpk]);
          lo = std::isnan(lo) ? q : std::min(lo, q);
          hi = std::isnan(hi) ? q : std::max(hi, q);
        }
      std::printf("| %lld | %lld→%lld | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.1f | %.2f |"
                  " %.2f–%.2f |\n",
                  (long long)M, (long long)K, (long long)N, gf(f32, flop), gf(bw, flop), gf(bc, flop), gf(ob, flop),
                  ratio(f32, flop, ob, flop), ratio(bw, flop, ob, flop), ratio(bc, flop, ob, flop), gf(pk, fma_flop),
                  ratio(f32, flop, pk, fma_flop), ratio(ob, flop, pk, fma_flop), gf(bpk, bf16_flop),
                  ratio(bc, flop, bpk, bf16_flop), lo, hi);
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int threads = 2;
  std::vector<int64_t> Ms{512, 1024, 2048};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) g_reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--cpu-time")) g_cpu_time = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--m") && i + 1 < argc) {
      Ms.clear();
      for (const char* p = argv[++i]; *p; p += (*p == ',')) {
        Ms.push_back(std::atoll(p));
        while (*p && *p != ',') ++p;
      }
    } else {
      std::fprintf(stderr, "bench_gemm: unknown option %s (expected --quick, --reps N, --threads T, --m 512,1024, "
                   "--cpu-time)\n", argv[i]);
      return 1;
    }
  }
  if (quick) g_reps = std::min(g_reps, 3);
#ifdef LN_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
  // run.sh unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for this process, so OpenBLAS picks its own kernels.
  std::printf("OpenBLAS core: %s (OPENBLAS_CORETYPE %s)\n", openblas_get_corename(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "unset");
#else
  std::printf("OpenBLAS not found: its columns read nan\n");
#endif
  ThreadPool pool(threads);
  std::printf("## langneurons GEMM benchmark: kernel %s, %d threads, %d paired rounds after a warm-up, medians, %s time\n",
              kernel_name(active_kernel()), threads, g_reps, g_cpu_time ? "CPU" : "wall");
  std::printf("\nMachine (register-only loops, %d threads): AVX2 FMA peak %.1f GFLOP/s, AVX-512 FMA peak %.1f, "
              "vdpbf16ps peak %.1f (nan: not on this CPU)\n",
              threads, peak_gflops(PeakLoop::Avx2Fma, threads), peak_gflops(PeakLoop::Avx512Fma, threads),
              peak_gflops(PeakLoop::Bf16Dot, threads));
  prefill_table(pool, Ms);
  // The machine may be shared: a second measurement shows how much the reference points drifted during the run.
  std::printf("\nEnd of run: widest FMA peak %.1f GFLOP/s, vdpbf16ps peak %.1f\n", peak_gflops(widest_fma(), threads),
              peak_gflops(PeakLoop::Bf16Dot, threads));
  return 0;
}
