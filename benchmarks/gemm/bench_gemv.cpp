// Decode GEMV benchmark: gemm_xwt with a few rows of X (M = 1 is one decoded token) streams the weights once from
// memory, so its speed is GB/s of weight bytes read, rated against a plain read loop (a sum over a buffer as large,
// split over the same threads) timed in the same rounds.
//
// Every round times the read loop and then each variant once, on buffers that do not fit in the last-level cache
// (enough copies of W that a pass reads >= 256 MB); the figure of a variant is the median over the rounds of its
// GB/s divided by the read loop's GB/s of that round (paired rounds: a load burst from other processes slows both
// sides of a ratio). Rows:
//   - the projection shapes of Qwen2.5-0.5B (hidden 896, intermediate 4864, 2 KV heads x 64) and Llama-3.2-1B
//     (2048, 8192, 8 KV heads x 64), LM heads (896 -> 151936, 2048 -> 128256) included;
//   - "decode step": every projection of a run of layers in model order (q, k, v, o, gate, up, down; each layer
//     its own weights), the calls a decoded token makes, per-call overhead included.
//
// Usage: bench_gemv [--threads 1,2] [--m 1,4] [--rounds N] [--quick] [--cpu-time]      (run.sh --decode-only builds and runs it)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../common/bench_util.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"

#ifdef LN_HAVE_OPENBLAS
extern "C" {
void openblas_set_num_threads(int);
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda, const float* x, int incx,
                 float beta, float* y, int incy);
}
constexpr int kRowMajor = 101, kNoTrans = 111;
#endif

using namespace ln;

namespace {

constexpr int64_t kPassBytes = int64_t(256) << 20;  // at least this much weight data per timed pass
// --cpu-time: time by the process's CPU time (the pool's idle workers sleep, so that is work done) divided by the
// threads, instead of wall time: on a machine shared with other processes, this leaves out the time we were
// descheduled (memory-bandwidth contention from the others still counts).
bool g_cpu_time = false;

struct Proj {
  int64_t K, N;
};
struct Row {
  std::string name;
  std::vector<Proj> projs;  // one projection, or the seven of a layer (decode step)
};

struct Variant {
  DType dtype;
  Compute compute;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  return h;
}

// f16 of values in [-1, 1) (round to nearest; tiny values flushed: irrelevant for timing).
std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float a = std::fabs(v[i]);
    int e;
    const float m = std::frexp(a, &e);
    const uint16_t sign = v[i] < 0 ? 0x8000 : 0;
    if (a < 6.2e-5f) {
      h[i] = sign;
    } else {
      int exp = e - 1 + 15, mant = int(std::lround((m * 2 - 1) * 1024));
      if (mant == 1024) mant = 0, ++exp;
      h[i] = uint16_t(sign | (exp << 10) | mant);
    }
  }
  return h;
}

// Weights of one variant for a row: `layers` copies of the row's projections, each its own bytes.
struct Store {
  std::vector<std::vector<uint8_t>> mats;  // [layer * projs + p]
  int64_t bytes = 0;                       // per pass
};

Store make_store(const Row& row, DType dt, const std::vector<std::vector<float>>& w) {
  int64_t layer_bytes = 0;
  for (const Proj& p : row.projs) layer_bytes += p.N * p.K * dtype_size(dt);
  const int64_t layers = std::max<int64_t>(2, (kPassBytes + layer_bytes - 1) / layer_bytes);
  Store s;
  for (int64_t l = 0; l < layers; ++l)
    for (size_t p = 0; p < row.projs.size(); ++p) {
      const int64_t n = row.projs[p].N * row.projs[p].K;
      std::vector<uint8_t> b(size_t(n * dtype_size(dt)));
      if (dt == DType::F32) std::memcpy(b.data(), w[p].data(), b.size());
      else {
        const std::vector<uint16_t> h = dt == DType::BF16 ? to_bf16(w[p]) : to_f16(w[p]);
        std::memcpy(b.data(), h.data(), b.size());
      }
      s.mats.push_back(std::move(b));
    }
  s.bytes = layers * layer_bytes;
  return s;
}

// The read reference: a sum over the bytes of `s` (the f32 store), each matrix split over the pool's threads as
// contiguous parts, 4 ymm accumulators (the loads, not the adds, are the limit).
__attribute__((target("avx2"))) float sum_floats(const float* p, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
  }
  float t = _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) t += p[i];
  return t;
}

void run_row(ThreadPool& pool, const Row& row, int64_t M, int rounds, bool quick) {
  std::vector<Variant> variants{{DType::BF16, Compute::F32}, {DType::BF16, Compute::BF16}, {DType::F32, Compute::F32}};
  if (!quick) variants.push_back({DType::F16, Compute::F32});
  std::vector<std::vector<float>> w;
  int64_t maxK = 0, maxN = 0;
  for (size_t p = 0; p < row.projs.size(); ++p) {
    w.push_back(bench::random_floats(row.projs[p].N * row.projs[p].K, uint32_t(7 + p)));
    maxK = std::max(maxK, row.projs[p].K);
    maxN = std::max(maxN, row.projs[p].N);
  }
  std::vector<Store> stores;
  for (const Variant& v : variants) stores.push_back(make_store(row, v.dtype, w));
  w.clear();
  const Store& f32 = stores[2];
  std::vector<float> X = bench::random_floats(M * maxK, 3), Y(size_t(M * maxN));
  const size_t np = row.projs.size();

  std::vector<std::function<void()>> passes;
  std::vector<int64_t> bytes;
  std::vector<std::string> names;
  volatile float sink = 0;
  const int threads = pool.size();
  passes.push_back([&] {
    for (const auto& m : f32.mats) {
      const float* p = reinterpret_cast<const float*>(m.data());
      const int64_t n = int64_t(m.size() / 4), per = (n + threads - 1) / threads;
      pool.parallel_for(threads, [&](int64_t t, int) {
        const int64_t b = t * per, e = std::min(n, b + per);
        if (b < e) sink = sink + sum_floats(p + b, e - b);
      });
    }
  });
  bytes.push_back(f32.bytes);
  names.push_back("read loop | (f32 copies)");
  for (size_t v = 0; v < variants.size(); ++v) {
    passes.push_back([&, v] {
      const Store& s = stores[v];
      for (size_t i = 0; i < s.mats.size(); ++i) {
        const Proj& p = row.projs[i % np];
        gemm_xwt(M, X.data(), p.K, WeightRef{s.mats[i].data(), variants[v].dtype, p.N, p.K}, Y.data(), p.N,
                 variants[v].compute, false, pool);
      }
    });
    bytes.push_back(stores[v].bytes);
    names.push_back(std::string(dtype_name(variants[v].dtype)) + " | " +
                    (variants[v].compute == Compute::BF16 ? "bf16" : "f32"));
  }
  size_t openblas = SIZE_MAX;  // the OpenBLAS pass, after which its threads are let park
#ifdef LN_HAVE_OPENBLAS
  if (M == 1) {
    openblas = passes.size();
    passes.push_back([&] {
      for (size_t i = 0; i < f32.mats.size(); ++i) {
        const Proj& p = row.projs[i % np];
        cblas_sgemv(kRowMajor, kNoTrans, int(p.N), int(p.K), 1.f, reinterpret_cast<const float*>(f32.mats[i].data()),
                    int(p.K), X.data(), 1, 0.f, Y.data(), 1);
      }
    });
    bytes.push_back(f32.bytes);
    names.push_back("F32 | f32, OpenBLAS sgemv");
  }
#endif
  // Paired rounds: the read loop and every variant once per round, after one warm-up pass each.
  for (size_t i = 0; i < passes.size(); ++i) {
    passes[i]();
    if (i == openblas) bench::let_openblas_threads_park();
  }
  std::vector<std::vector<double>> gbs(passes.size()), ratio(passes.size());
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> t(passes.size());
    for (size_t i = 0; i < passes.size(); ++i) {
      const double t0 = bench::now_seconds(g_cpu_time);
      passes[i]();
      t[i] = (bench::now_seconds(g_cpu_time) - t0) / (g_cpu_time ? pool.size() : 1);
      if (i == openblas) bench::let_openblas_threads_park();
    }
    for (size_t i = 0; i < passes.size(); ++i) {
      gbs[i].push_back(double(bytes[i]) / t[i] / 1e9);
      ratio[i].push_back(gbs[i].back() / gbs[0].back());
    }
  }
  for (size_t i = 0; i < passes.size(); ++i) {
    const auto mm = std::minmax_element(ratio[i].begin(), ratio[i].end());
    std::printf("| %s | %lld | %s | %.1f | %.2f | %.2f–%.2f |\n", row.name.c_str(), (long long)M, names[i].c_str(),
                median(gbs[i]), median(ratio[i]), *mm.first, *mm.second);
  }
  std::fflush(stdout);
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoll(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> thread_counts{1, 2}, Ms{1};
  int rounds = 9;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) thread_counts = parse_list(argv[++i]);
    else if (!std::strcmp(argv[i], "--m") && i + 1 < argc) Ms = parse_list(argv[++i]);
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--cpu-time")) g_cpu_time = true;
    else {
      std::fprintf(stderr, "bench_gemv: unknown option %s (expected --threads, --m, --rounds, --quick, --cpu-time)\n", argv[i]);
      return 1;
    }
  }
  const auto layer = [](const char* name, int64_t H, int64_t I, int64_t qd, int64_t kvd) {
    return Row{name, {{H, qd}, {H, kvd}, {H, kvd}, {qd, H}, {H, I}, {H, I}, {I, H}}};
  };
  std::vector<Row> rows;
  if (!quick)
    rows = {{"896→896", {{896, 896}}},         {"896→128", {{896, 128}}},     {"896→4864", {{896, 4864}}},
            {"4864→896", {{4864, 896}}},       {"896→151936", {{896, 151936}}}, {"2048→512", {{2048, 512}}},
            {"2048→8192", {{2048, 8192}}},     {"8192→2048", {{8192, 2048}}}, {"2048→128256", {{2048, 128256}}}};
  rows.push_back(layer("decode step, Qwen2.5-0.5B layers", 896, 4864, 896, 128));
  rows.push_back(layer("decode step, Llama-3.2-1B layers", 2048, 8192, 2048, 512));
  std::printf("## langneurons decode GEMV benchmark: kernel %s, %d paired rounds, medians, %s time\n",
              kernel_name(active_kernel()), rounds, g_cpu_time ? "CPU" : "wall");
  for (int64_t threads : thread_counts) {
#ifdef LN_HAVE_OPENBLAS
    openblas_set_num_threads(int(threads));
#endif
    ThreadPool pool(int(std::max<int64_t>(1, threads)));
    std::printf("\n### %d thread%s: GB/s of weight bytes read (median), and / read = that over the read loop's GB/s in "
                "the same round (median, min–max)\n\n",
                pool.size(), pool.size() > 1 ? "s" : "");
    std::printf("| K→N | M | W dtype | compute | GB/s | / read | range |\n|---|---|---|---|---|---|---|\n");
    for (int64_t M : Ms)
      for (const Row& row : rows) run_row(pool, row, M, rounds, quick);
  }
  return 0;
}
