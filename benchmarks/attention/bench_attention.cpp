// Causal attention micro-benchmark: the tile kernel (attend_causal: a tile of query vectors, the GQA heads of a
// few rows, against blocks of keys with an online softmax) against the row kernel it replaced (attend_row: one
// query row of one head against all its keys), both driven the way native/src/model/attention.cpp drives them:
//   row:  tasks (block of kAttnBlock = 16 rows, query head), attend_row on every row of the block;
//   tile: tasks (block of 16 rows, KV head[, chunk of its heads]), attend_causal on the block for all heads of
//         the group (attend_row when the block has too few query vectors for a tile: decoding).
// Shapes: Llama-3.2-1B (32 heads, 8 KV heads, head_dim 64) and Qwen2.5-0.5B (14 heads, 2 KV heads, head_dim 64).
//
// Prefill: one sequence of T tokens, GFLOP/s = 4 * heads * head_dim * T(T+1)/2 / time (scores and weighted sum,
// 2 flops per multiply-add; what benchmarks/forward and benchmarks/profile count).
// Decode: one new token of one sequence against a KV cache of C tokens, in 16 layers with their own caches (so
// that long caches come from memory, as in a real decode step); GFLOP/s = 4 * heads * head_dim * (C + 1) * 16.
// A decode block has one row, fewer query vectors than a tile wants (kAttnMinTileVectors): attention.cpp runs it
// with the row kernel, in tasks per group; the table shows that against the old tasks per head, and the tile
// kernel forced onto it (why it is not used there).
//
// The machine is shared: the variants (and an FMA-peak loop on the same threads) take turns in every round, and
// each figure is the best of the rounds. Ratios measured in the same rounds are what count.
//
// Usage: bench_attention [--rounds N] [--threads 1,2] [--tokens 128,256,512,1024] [--ctx 128,512,2048]
//                        [--cpu-time] [--no-decode] [--no-prefill]     (run.sh builds and runs it)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "../common/bench_util.h"
#include "core/thread_pool.h"
#include "kernels/cpu_features.h"
#include "kernels/ops.h"

using namespace ln;

namespace {

int g_rounds = 7;
constexpr int32_t kBlock = 16;  // query rows per task, as detail::kAttnBlock in model/forward_state.h

// --cpu-time: time by process CPU time instead of wall time. On a loaded machine this discounts the time we were
// descheduled; meaningful with --threads 1 (the pool's idle threads sleep, so CPU time is work done).
bool g_cpu_time = false;

struct Shape {
  const char* name;
  int heads, kv_heads, hd;
};

// One attention call of a layer: queries [T][heads*hd] at positions pos0.., keys/values [pos0 + T][kv*hd].
struct Problem {
  const Shape* s;
  int32_t T, pos0;
  const float *q, *k, *v;
  float* out;
  float* p;  // [threads][pos0 + T], the row kernel's probabilities
};

void run_row(ThreadPool& pool, const Problem& pr) {
  const Shape& s = *pr.s;
  const int64_t qd = int64_t(s.heads) * s.hd, kvd = int64_t(s.kv_heads) * s.hd;
  const int group = s.heads / s.kv_heads;
  const float scale = float(1.0 / std::sqrt(double(s.hd)));
  const int64_t n_blocks = (pr.T + kBlock - 1) / kBlock, ctx = pr.pos0 + pr.T;
  pool.parallel_for(n_blocks * s.heads, [&](int64_t task, int thread) {
    const int32_t q0 = int32_t(task / s.heads) * kBlock, q1 = std::min(pr.T, q0 + kBlock);
    const int head = int(task % s.heads);
    const float* kb = pr.k + int64_t(head / group) * s.hd;
    const float* vb = pr.v + int64_t(head / group) * s.hd;
    for (int32_t i = q0; i < q1; ++i)
      attend_row(pr.q + i * qd + int64_t(head) * s.hd, kb, vb, kvd, pr.pos0 + i + 1, s.hd, scale,
                 pr.p + thread * ctx, pr.out + i * qd + int64_t(head) * s.hd);
  });
}

// As attention.cpp runs it now: tasks (block, KV head, chunk of the group's heads), the whole group per task
// unless that leaves fewer than two tasks per thread; attend_causal on the block, or attend_row per row and head
// when the block has fewer than kAttnMinTileVectors query vectors (decoding).
void run_tile(ThreadPool& pool, const Problem& pr, bool force_tile = false) {
  const Shape& s = *pr.s;
  const int64_t qd = int64_t(s.heads) * s.hd, kvd = int64_t(s.kv_heads) * s.hd;
  const int group = s.heads / s.kv_heads;
  const float scale = float(1.0 / std::sqrt(double(s.hd)));
  const int64_t n_blocks = (pr.T + kBlock - 1) / kBlock, ctx = pr.pos0 + pr.T;
  int per_task = group;
  while (per_task > 1 && n_blocks * s.kv_heads * ((group + per_task - 1) / per_task) < 2 * pool.size())
    per_task = (per_task + 1) / 2;
  const int chunks = (group + per_task - 1) / per_task;
  pool.parallel_for(n_blocks * s.kv_heads * chunks, [&](int64_t task, int thread) {
    const int c = int(task % chunks);
    const int kvh = int(task / chunks % s.kv_heads);
    const int32_t q0 = int32_t(task / chunks / s.kv_heads) * kBlock, rows = std::min(pr.T, q0 + kBlock) - q0;
    const int h0 = kvh * group + c * per_task, nh = std::min(per_task, group - c * per_task);
    const float* q = pr.q + q0 * qd + int64_t(h0) * s.hd;
    const float *k = pr.k + int64_t(kvh) * s.hd, *v = pr.v + int64_t(kvh) * s.hd;
    float* out = pr.out + q0 * qd + int64_t(h0) * s.hd;
    if (rows * nh >= kAttnMinTileVectors || force_tile) {
      attend_causal(q, qd, rows, nh, k, v, kvd, pr.pos0 + q0, s.hd, scale, out, qd,
                    pool.scratch(thread, ThreadPool::Scratch::Attention, attend_causal_scratch_floats(s.hd)));
      return;
    }
    for (int32_t i = 0; i < rows; ++i)
      for (int g = 0; g < nh; ++g)
        attend_row(q + i * qd + int64_t(g) * s.hd, k, v, kvd, pr.pos0 + q0 + i + 1, s.hd, scale,
                   pr.p + thread * ctx, out + i * qd + int64_t(g) * s.hd);
  });
}

// Best time of each of fs over g_rounds rounds, the variants taking turns in every round; every timed call runs
// f `inner` times.
std::vector<double> best_times(const std::vector<std::function<void()>>& fs, int inner) {
  std::vector<double> best(fs.size(), 1e30);
  for (auto& f : fs) f();
  for (int r = 0; r < g_rounds; ++r)
    for (size_t i = 0; i < fs.size(); ++i) {
      const size_t j = (i + size_t(r)) % fs.size();  // rotate the order too
      const double t0 = bench::now_seconds(g_cpu_time);
      for (int n = 0; n < inner; ++n) fs[j]();
      best[j] = std::min(best[j], (bench::now_seconds(g_cpu_time) - t0) / inner);
    }
  return best;
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

const Shape kShapes[] = {{"Llama-3.2-1B", 32, 8, 64}, {"Qwen2.5-0.5B", 14, 2, 64}};
constexpr int64_t kPeakIters = 2'000'000;  // 2M x 96 FMA lanes x 2 flops per thread per call

void prefill_table(const std::vector<int>& threads, const std::vector<int>& tokens) {
  std::printf("\n### Prefill: one causal sequence of T tokens, GFLOP/s = 4·heads·head_dim·T(T+1)/2 / best time\n\n");
  std::printf("| model | T | threads | row kernel | tile kernel | **tile / row** | FMA peak | row / peak | tile / peak |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const Shape& s : kShapes)
    for (int T : tokens)
      for (int th : threads) {
        ThreadPool pool(th);
        const int64_t qd = int64_t(s.heads) * s.hd, kvd = int64_t(s.kv_heads) * s.hd;
        const auto q = bench::random_floats(T * qd, 1), k = bench::random_floats(T * kvd, 2), v = bench::random_floats(T * kvd, 3);
        std::vector<float> o1(size_t(T * qd)), o2(size_t(T * qd)), p(size_t(th * T));
        const Problem a{&s, T, 0, q.data(), k.data(), v.data(), o1.data(), p.data()};
        const Problem b{&s, T, 0, q.data(), k.data(), v.data(), o2.data(), p.data()};
        volatile float sink = 0;
        const double flop = 4.0 * s.heads * s.hd * double(T) * (T + 1) / 2;
        // Calls per timing: about 30 ms of the row kernel at ~10 GFLOP/s per thread.
        const int inner = std::max(1, int(0.03 * 10e9 * th / flop));
        const std::vector<double> t = best_times(
            {[&] { run_row(pool, a); }, [&] { run_tile(pool, b); },
             [&] { pool.parallel_for(th, [&](int64_t, int) { sink = sink + bench::fma_loop(kPeakIters / inner); }); }},
            inner);
        double diff = 0;
        for (size_t i = 0; i < o1.size(); ++i) diff = std::max(diff, double(std::fabs(o1[i] - o2[i])));
        if (diff > 1e-4) std::fprintf(stderr, "bench_attention: row and tile disagree by %g\n", diff);
        const double row = flop / t[0] / 1e9, tile = flop / t[1] / 1e9;
        const double peak = 2.0 * 8 * 12 * double(kPeakIters / inner) * th / t[2] / 1e9;
        std::printf("| %s | %d | %d | %.1f | %.1f | **%.2f** | %.1f | %.2f | %.2f |\n", s.name, T, th, row, tile,
                    tile / row, peak, row / peak, tile / peak);
        std::fflush(stdout);
      }
}

void decode_table(const std::vector<int>& threads, const std::vector<int>& ctxs) {
  constexpr int kLayers = 16;
  std::printf("\n### Decode: one new token against a cache of C tokens, %d layers (own caches), "
              "GFLOP/s = 4·heads·head_dim·(C+1)·layers / best time\n\n", kLayers);
  std::printf("| model | C | threads | old (row kernel, task per head) | new (row kernel, task per group) | **new / old** "
              "| tile kernel forced | forced / old |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Shape& s : kShapes)
    for (int C : ctxs)
      for (int th : threads) {
        ThreadPool pool(th);
        const int64_t qd = int64_t(s.heads) * s.hd, kvd = int64_t(s.kv_heads) * s.hd, ctx = C + 1;
        const auto q = bench::random_floats(qd, 1);
        std::vector<std::vector<float>> ks, vs;
        for (int l = 0; l < kLayers; ++l) {
          ks.push_back(bench::random_floats(ctx * kvd, 2 + 2 * l));
          vs.push_back(bench::random_floats(ctx * kvd, 3 + 2 * l));
        }
        std::vector<float> o1(static_cast<size_t>(qd)), o2(o1), o3(o1), p(static_cast<size_t>(th * ctx));
        auto layers = [&](int variant, float* out) {
          for (int l = 0; l < kLayers; ++l) {
            const Problem pr{&s, 1, C, q.data(), ks[size_t(l)].data(), vs[size_t(l)].data(), out, p.data()};
            if (variant == 0) run_row(pool, pr);
            else run_tile(pool, pr, variant == 2);
          }
        };
        const double flop = 4.0 * s.heads * s.hd * double(ctx) * kLayers;
        const int inner = std::max(1, int(0.02 * 5e9 * th / flop));
        const std::vector<double> t = best_times(
            {[&] { layers(0, o1.data()); }, [&] { layers(1, o2.data()); }, [&] { layers(2, o3.data()); }}, inner);
        double diff = 0;
        for (size_t i = 0; i < o1.size(); ++i)
          diff = std::max({diff, double(std::fabs(o1[i] - o2[i])), double(std::fabs(o1[i] - o3[i]))});
        if (diff > 1e-4) std::fprintf(stderr, "bench_attention: the variants disagree by %g\n", diff);
        const double old_ = flop / t[0] / 1e9, new_ = flop / t[1] / 1e9, forced = flop / t[2] / 1e9;
        std::printf("| %s | %d | %d | %.1f | %.1f | **%.2f** | %.1f | %.2f |\n", s.name, C, th, old_, new_,
                    new_ / old_, forced, forced / old_);
        std::fflush(stdout);
      }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads{1, 2}, tokens{128, 256, 512, 1024}, ctxs{128, 512, 2048};
  bool decode = true, prefill = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) g_rounds = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = parse_list(argv[++i]);
    else if (a == "--tokens" && i + 1 < argc) tokens = parse_list(argv[++i]);
    else if (a == "--ctx" && i + 1 < argc) ctxs = parse_list(argv[++i]);
    else if (a == "--cpu-time") g_cpu_time = true;
    else if (a == "--no-decode") decode = false;
    else if (a == "--no-prefill") prefill = false;
    else {
      std::fprintf(stderr, "usage: bench_attention [--rounds N] [--threads 1,2] [--tokens 128,...] [--ctx 128,...] "
                           "[--cpu-time] [--no-decode] [--no-prefill]\n");
      return 2;
    }
  }
  std::printf("kernel family: %s, best of %d rounds, timed by %s\n", kernel_name(active_kernel()), g_rounds,
              g_cpu_time ? "process CPU time" : "wall time");
  if (prefill) prefill_table(threads, tokens);
  if (decode) decode_table(threads, ctxs);
  return 0;
}
