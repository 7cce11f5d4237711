// Helpers shared by the C++ benchmarks (benchmarks/{gemm,attention,finetune}/bench_*.cpp): the clock, the
// register-only FMA loop that measures the machine's peak, and deterministic benchmark data.
#pragma once
#include <immintrin.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace bench {

// Seconds on the wall clock, or of the process's CPU time with cpu_time (--cpu-time: on a loaded machine this
// discounts the time we were descheduled; meaningful with one thread, as the pool's idle workers sleep).
inline double now_seconds(bool cpu_time) {
  if (cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// OpenBLAS's pthreads workers keep spinning after a call for 2^28 cycles (its THREAD_TIMEOUT: about 0.1 s) before
// they sleep, and on a machine with no more cores than threads they take a core from whatever runs next. A
// benchmark waits this long, untimed, after each OpenBLAS call it times: without it our f32 GEMM, run right after
// OpenBLAS in each round, ran at its one-thread speed on 2 threads for the short shapes (M 512, 896->4864:
// 0.49-0.54x OpenBLAS; with OPENBLAS_THREAD_TIMEOUT=4, which parks them at once, 1.06x).
inline void let_openblas_threads_park() { std::this_thread::sleep_for(std::chrono::milliseconds(150)); }

// Register-only FMA loop: 12 independent accumulators hide the FMA latency; nothing touches memory. The
// machine's FMA peak on the calling thread is 12 * 8 * 2 * iters FLOPs over its time.
__attribute__((target("avx2,fma"))) inline float fma_loop(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i));
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  return _mm256_cvtss_f32(s);
}

// The same with 16 zmm accumulators (16 x 16 x 2 flops per iteration): the AVX-512 FMA peak. Only on a CPU with
// AVX-512F (check __builtin_cpu_supports first).
__attribute__((target("avx512f"))) inline float fma_loop_512(int64_t iters) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(float(i));
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  __m512 s = a[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_cvtss_f32(s);  // one lane keeps the loop alive (_mm512_reduce_add_ps trips GCC 12 warnings)
}

// vdpbf16ps on 16 zmm accumulators: each instruction is 16 lanes x 2 products x 2 flops, so 16 x 64 flops per
// iteration. The AVX512_BF16 peak; only on a CPU that has it.
__attribute__((target("avx512f,avx512bf16"))) inline float dpbf16_loop(int64_t iters) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(float(i));
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  const __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_cvtss_f32(s);
}

inline bool cpu_has_avx512f() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
inline bool cpu_has_avx512bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

// n floats in [-1, 1) from a linear congruential generator: the same data for the same seed on every run.
inline std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float(int32_t(s >> 8) - (1 << 23)) / float(1 << 23);
  }
  return v;
}

}  // namespace bench
