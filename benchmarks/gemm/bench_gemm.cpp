// GEMM benchmark: the engine's gemm_xwt (as shipped: portable build, kernels picked at run time) against
// OpenBLAS sgemm on the prefill MLP shapes of Qwen2.5-0.5B and Llama-3.2-1B, plus decode (M = 1) bandwidth.
// Reference points measured in the same run: the FMA peak of the machine (register-only loop) and the memory
// bandwidth (read-only sum and memcpy). Absolute numbers drift on a shared machine; the ratios are what count.
//
// Usage: bench_gemm [--quick] [--decode-only | --prefill-only] [--reps N] [--threads T] [--cpu-time]     (run.sh builds and runs it)
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

int g_reps = 3;
// --cpu-time: time by process CPU time instead of wall time. On a loaded machine this discounts the time we were
// descheduled; fair only with --threads 1 (idle pool threads sleep, but OpenBLAS's may spin).
bool g_cpu_time = false;

// One warm-up call each, then the best of g_reps timed calls each. The variants take turns within every rep, so
// that load from other processes on a shared machine hits all of them alike and their ratios stay meaningful.
std::vector<double> best_times(const std::vector<std::function<void()>>& fs) {
  std::vector<double> best(fs.size(), 1e30);
  for (auto& f : fs) f();
  for (int r = 0; r < g_reps; ++r)
    for (size_t i = 0; i < fs.size(); ++i) {
      const double t0 = bench::now_seconds(g_cpu_time);
      fs[i]();
      best[i] = std::min(best[i], bench::now_seconds(g_cpu_time) - t0);
    }
  return best;
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

__attribute__((target("avx2"))) float sum_floats(const float* p, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
  }
  return _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

struct Bandwidth {
  double read_gbs, memcpy_gbs;  // memcpy counts bytes read + bytes written
};

Bandwidth memory_bandwidth(int threads) {
  const int64_t bytes = int64_t(256) << 20, n = bytes / 4;
  float* a = static_cast<float*>(std::aligned_alloc(64, bytes));
  float* b = static_cast<float*>(std::aligned_alloc(64, bytes));
  for (int64_t i = 0; i < n; ++i) a[i] = 1.f, b[i] = 0.f;
  const int64_t per = n / threads;
  volatile float sink = 0;
  double tr = 1e30, tc = 1e30;
  for (int r = 0; r < 3; ++r) {
    tr = std::min(tr, on_threads(threads, [&](int t) { sink = sink + sum_floats(a + t * per, per); }));
    tc = std::min(tc, on_threads(threads, [&](int t) { std::memcpy(b + t * per, a + t * per, size_t(per) * 4); }));
  }
  std::free(a);
  std::free(b);
  return {double(bytes) / tr / 1e9, 2.0 * double(bytes) / tc / 1e9};
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

void prefill_table(ThreadPool& pool, bool quick) {
  std::vector<int64_t> Ms = quick ? std::vector<int64_t>{512} : std::vector<int64_t>{512, 1024, 2048};
  const Shape shapes[] = {{896, 4864}, {4864, 896}, {2048, 8192}, {8192, 2048}};
  std::printf("\n### Prefill GEMM, GFLOP/s (2*M*N*K / best time), %d threads\n\n", pool.size());
  const PeakLoop fma = widest_fma();
  const bool has_bf16_peak = peak_available(PeakLoop::Bf16Dot);
  std::printf("FMA peak: the widest FMA, %s; bf16 peak: vdpbf16ps%s. Both timed in the same rounds as the GEMMs.\n\n",
              peak_name(fma), has_bf16_peak ? "" : " (not on this CPU: nan)");
  std::printf("| M | K→N | ours f32 | ours f32, bf16 W | ours bf16 compute | OpenBLAS sgemm | f32/OB | bf16 W/OB |"
              " bf16c/OB | FMA peak | ours f32/peak | OB/peak | bf16 peak | bf16c/bf16 peak |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
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
      // The peak loops run in the same rounds too.
      const int64_t peak_iters = 5'000'000;
      volatile float sink = 0;
      fs.push_back([&] { on_threads(pool.size(), [&](int) { sink = sink + run_peak_loop(fma, peak_iters); }); });
      if (has_bf16_peak)
        fs.push_back([&] {
          on_threads(pool.size(), [&](int) { sink = sink + run_peak_loop(PeakLoop::Bf16Dot, peak_iters); });
        });
#ifdef LN_HAVE_OPENBLAS
      fs.push_back([&] {
        cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(M), int(N), int(K), 1.f, X.data(), int(K), W.data(), int(K), 0.f,
                    Y.data(), int(N));
      });
#endif
      std::vector<double> t = best_times(fs);
      const double f32 = flop / t[0] / 1e9, bw = flop / t[1] / 1e9, bc = flop / t[2] / 1e9;
      const double peak = peak_flops_per_iter(fma) * double(peak_iters) * pool.size() / t[3] / 1e9;
      size_t next = 4;
      const double bf16_peak =
          has_bf16_peak ? peak_flops_per_iter(PeakLoop::Bf16Dot) * double(peak_iters) * pool.size() / t[next++] / 1e9
                        : NAN;
      const double ob = t.size() > next ? flop / t[next] / 1e9 : NAN;
      std::printf("| %lld | %lld→%lld | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.1f | %.2f |\n",
                  (long long)M, (long long)K, (long long)N, f32, bw, bc, ob, f32 / ob, bw / ob, bc / ob, peak,
                  f32 / peak, ob / peak, bf16_peak, bc / bf16_peak);
      std::fflush(stdout);
    }
  }
}

// ---- decode table ------------------------------------------------------------------------------------------

// Decode is memory-bound: GB/s of weight bytes read. Enough copies of W are cycled through that they never fit in
// the last-level cache (>= 192 MB in all), so every call streams its weights from DRAM.
void decode_table(ThreadPool& pool, int64_t M) {
  const Shape shapes[] = {{896, 4864}, {4864, 896}, {2048, 8192}, {8192, 2048}};
  std::printf("\n### Decode GEMV (M = %lld), GB/s of weight bytes read, vs a read-only sum and a memcpy (bytes read +"
              " written) over the same buffers, timed in the same rounds\n\n",
              (long long)M);
  std::printf("| K→N | code | W dtype | compute | GB/s | / read bw | / memcpy bw | GFLOP/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  struct Variant {
    DType dtype;
    Compute compute;
  };
  const Variant variants[] = {{DType::BF16, Compute::F32}, {DType::BF16, Compute::BF16}, {DType::F16, Compute::F32},
                              {DType::F32, Compute::F32}};
  for (const Shape& s : shapes) {
    const int64_t K = s.K, N = s.N;
    std::vector<float> X = bench::random_floats(M * K, 3), Y(static_cast<size_t>(M * N)), W = bench::random_floats(N * K, 4);
    std::vector<std::vector<std::vector<uint8_t>>> stores;  // [variant][copy]: weight bytes
    std::vector<std::function<void()>> passes;
    std::vector<int64_t> wbytes;
    for (const Variant& v : variants) {
      const int64_t nb = N * K * dtype_size(v.dtype);
      const int64_t copies = std::max<int64_t>(2, ((int64_t(192) << 20) + nb - 1) / nb);
      std::vector<uint8_t> bytes(static_cast<size_t>(nb));
      if (v.dtype == DType::F32) {
        std::memcpy(bytes.data(), W.data(), size_t(nb));
      } else {
        std::vector<uint16_t> h = to_16bit(W, v.dtype);
        std::memcpy(bytes.data(), h.data(), size_t(nb));
      }
      stores.emplace_back(static_cast<size_t>(copies), bytes);
      wbytes.push_back(nb);
    }
    for (size_t i = 0; i < stores.size(); ++i) {
      const Variant v = variants[i];
      passes.push_back([&, i, v] {
        for (auto& c : stores[i])
          gemm_xwt(M, X.data(), K, WeightRef{c.data(), v.dtype, N, K}, Y.data(), N, v.compute, false, pool);
      });
    }
#ifdef LN_HAVE_OPENBLAS
    passes.push_back([&] {  // OpenBLAS sgemm on the same f32 copies (last variant)
      for (auto& c : stores.back())
        cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(M), int(N), int(K), 1.f, X.data(), int(K),
                    reinterpret_cast<const float*>(c.data()), int(K), 0.f, Y.data(), int(N));
    });
#endif
    // The bandwidth references run in the same rounds as the kernels (on the same f32 copies, split over the
    // same number of threads), so that load from other processes affects both sides of each ratio alike.
    const int threads = pool.size();
    const int64_t f32_floats = wbytes.back() / 4, per = f32_floats / threads / 32 * 32;
    std::vector<uint8_t> copy_dst(static_cast<size_t>(wbytes.back()));
    volatile float sink = 0;
    passes.push_back([&] {
      for (auto& c : stores.back())
        on_threads(threads, [&](int t) {
          sink = sink + sum_floats(reinterpret_cast<const float*>(c.data()) + t * per, per);
        });
    });
    passes.push_back([&] {
      for (auto& c : stores.back())
        on_threads(threads, [&](int t) {
          std::memcpy(copy_dst.data() + t * per * 4, c.data() + t * per * 4, size_t(per) * 4);
        });
    });
    std::vector<double> t = best_times(passes);
    const double copies_f32 = double(stores.back().size()), ref_bytes = double(per * threads * 4) * copies_f32;
    const double read_gbs = ref_bytes / t[t.size() - 2] / 1e9, memcpy_gbs = 2 * ref_bytes / t.back() / 1e9;
    for (size_t i = 0; i + 2 < t.size(); ++i) {
      const bool blas = i == stores.size();
      const size_t vi = blas ? stores.size() - 1 : i;
      const double per_call = t[i] / double(stores[vi].size());
      const double gbs = double(wbytes[vi]) / per_call / 1e9;
      std::printf("| %lld→%lld | %s | %s | %s | %.1f | %.2f | %.2f | %.1f |\n", (long long)K, (long long)N,
                  blas ? "OpenBLAS" : "ours", dtype_name(variants[vi].dtype),
                  variants[vi].compute == Compute::BF16 ? "bf16" : "f32", gbs, gbs / read_gbs, gbs / memcpy_gbs,
                  2.0 * double(M * N * K) / per_call / 1e9);
    }
    std::printf("| %lld→%lld | read-only sum | | | %.1f | 1.00 | | |\n", (long long)K, (long long)N, read_gbs);
    std::printf("| %lld→%lld | memcpy (read+write) | | | %.1f | | 1.00 | |\n", (long long)K, (long long)N, memcpy_gbs);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, prefill = true, decode = true;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) g_reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--decode-only")) prefill = false;
    else if (!std::strcmp(argv[i], "--cpu-time")) g_cpu_time = true;
    else if (!std::strcmp(argv[i], "--prefill-only")) decode = false;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
  }
#ifdef LN_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
  // run.sh unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for this process, so OpenBLAS picks its own kernels.
  std::printf("OpenBLAS core: %s (OPENBLAS_CORETYPE %s)\n", openblas_get_corename(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "unset");
#else
  std::printf("OpenBLAS not found: its columns read nan\n");
#endif
  ThreadPool pool(threads);
  std::printf("## langneurons GEMM benchmark: kernel %s, %d threads, best of %d after a warm-up, %s time\n",
              kernel_name(active_kernel()), threads, g_reps, g_cpu_time ? "CPU" : "wall");
  const Bandwidth bw = memory_bandwidth(threads);
  std::printf("\nMachine (register-only loops, %d threads): AVX2 FMA peak %.1f GFLOP/s, AVX-512 FMA peak %.1f, "
              "vdpbf16ps peak %.1f (nan: not on this CPU); memory: read %.1f GB/s, memcpy %.1f GB/s (read + write)\n",
              threads, peak_gflops(PeakLoop::Avx2Fma, threads), peak_gflops(PeakLoop::Avx512Fma, threads),
              peak_gflops(PeakLoop::Bf16Dot, threads), bw.read_gbs, bw.memcpy_gbs);
  if (prefill) prefill_table(pool, quick);
  if (decode) decode_table(pool, 1);
  if (decode && !quick) decode_table(pool, 8);
  // The machine may be shared: a second measurement shows how much the reference points drifted during the run.
  const Bandwidth bw2 = memory_bandwidth(threads);
  std::printf("\nEnd of run: widest FMA peak %.1f GFLOP/s, vdpbf16ps peak %.1f, read %.1f GB/s, memcpy %.1f GB/s\n",
              peak_gflops(widest_fma(), threads), peak_gflops(PeakLoop::Bf16Dot, threads), bw2.read_gbs,
              bw2.memcpy_gbs);
  return 0;
}
