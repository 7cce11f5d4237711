// bench_gpu's "where the time goes" table: one forward of a batch, with statistics and without, each step's device
// time from cuda::PhaseClock (events between the runtime's steps), the GEMM steps' rate against the cuBLASLt peak
// of the same run and the memory-bound steps' bandwidth against the device copy's. One GPU run then says which step
// keeps the profiling forward from the GEMM rate, so that the next change can be chosen without a GPU at hand.
//
// The bytes of a memory-bound step are the least it must move (bf16 mode): a norm reads its float32 rows and writes
// bf16 ones, RoPE reads the float32 q/k/v rows and writes bf16 q/k/v, the fused FFN step reads float32 gate and up
// and writes the bf16 activation. A step moving more than that shows as a lower fraction of the copy rate.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_model.h"
#include "cuda/phase_clock.h"
#include "model/stats.h"

namespace bench {

struct StepRow {
  const char* name = "";
  double ms_stats = 0, ms_plain = 0;
  double tflops = 0, gbs = 0;  // of the forward with statistics: GEMM steps' and attention's rate, memory steps'
};

struct StepBreakdown {
  std::vector<StepRow> rows;
  double total_stats_ms = 0, total_plain_ms = 0;
  double clocked_wall_s = 0;  // the clocked forward with statistics, from the host (events' own cost vs the rows)
};

// r: the forward of the benchmark's first batch (statistics as in r.stats; they are added once more here, as by
// every forward of the benchmark). keys: the sum over layers of the causal keys attended, as bench_gpu counts them.
inline StepBreakdown time_steps(ln::Runtime& rt, ln::ForwardRequest r, double keys) {
  using ln::cuda::PhaseClock;
  auto* cr = dynamic_cast<ln::cuda_model::CudaRuntime*>(&rt);
  if (!cr) throw std::runtime_error("time_steps: not the CUDA runtime");
  const ln::ModelConfig& c = rt.config();
  const double T = double(r.n_tokens), H = c.hidden, I = c.intermediate, L = c.n_layers,
               qd = double(c.n_heads) * c.head_dim, kvd = double(c.n_kv_heads) * c.head_dim, QKV = qd + 2 * kvd;
  PhaseClock clock;
  cr->set_phase_clock(&clock);
  ln::ForwardResult out;
  auto clocked = [&](ln::ActivationStats* st, double* wall) {
    r.stats = st;
    const auto t0 = std::chrono::steady_clock::now();
    rt.forward(r, out);  // ends with a synchronize
    if (wall) *wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return clock.totals();
  };
  StepBreakdown b;
  try {
    ln::ActivationStats* stats = r.stats;
    clocked(stats, nullptr);  // the events' first use
    const PhaseClock::Totals with = clocked(stats, &b.clocked_wall_s), plain = clocked(nullptr, nullptr);
    cr->set_phase_clock(nullptr);
    b.total_stats_ms = with.total_ms;
    b.total_plain_ms = plain.total_ms;
    for (int p = 0; p < PhaseClock::kPhases; ++p) {
      if (with.marks[size_t(p)] == 0 && plain.marks[size_t(p)] == 0) continue;
      StepRow row;
      row.name = PhaseClock::name(PhaseClock::Phase(p));
      row.ms_stats = with.ms[size_t(p)];
      row.ms_plain = plain.ms[size_t(p)];
      const double s = row.ms_stats * 1e-3;
      double flops = 0, bytes = 0;
      switch (PhaseClock::Phase(p)) {
        case PhaseClock::QkvGemm: flops = 2 * T * QKV * H * L; break;
        case PhaseClock::OGemm: flops = 2 * T * H * qd * L; break;
        case PhaseClock::GateUpGemm: flops = 2 * T * 2 * I * H * L; break;
        case PhaseClock::DownGemm: flops = 2 * T * H * I * L; break;
        case PhaseClock::Attention: flops = 4.0 * qd * keys; break;
        case PhaseClock::Norm: bytes = 2 * T * H * (4 + 2) * L; break;
        case PhaseClock::Rope: bytes = T * QKV * (4 + 2) * L; break;
        case PhaseClock::Ffn: bytes = T * I * (2 * 4 + 2) * L; break;
        default: break;
      }
      if (s > 0) {
        row.tflops = flops / s / 1e12;
        row.gbs = bytes / s / 1e9;
      }
      b.rows.push_back(row);
    }
  } catch (...) {
    cr->set_phase_clock(nullptr);
    throw;
  }
  return b;
}

inline void print_steps(const StepBreakdown& b, int n, int len, double gemm_tflops, double copy_gbs,
                        double timed_stats_s) {
  std::printf("\nwhere the time goes (%dx%d, one forward each, device time between the runtime's steps; the events "
              "make this forward x%.3f the timed one):\n",
              n, len, timed_stats_s > 0 ? b.clocked_wall_s / timed_stats_s : 0.0);
  std::printf("%-16s %10s %7s %10s  %s\n", "step", "stats ms", "share", "plain ms", "rate (with statistics)");
  for (const StepRow& r : b.rows) {
    std::string rate;
    char buf[96];
    if (r.tflops > 0) {
      std::snprintf(buf, sizeof buf, "%.1f TFLOP/s (%.2f of the GEMM peak)", r.tflops, r.tflops / gemm_tflops);
      rate = buf;
    } else if (r.gbs > 0) {
      std::snprintf(buf, sizeof buf, "%.0f GB/s (%.2f of the copy)", r.gbs, r.gbs / copy_gbs);
      rate = buf;
    }
    std::printf("%-16s %10.3f %6.1f%% %10.3f  %s\n", r.name, r.ms_stats,
                100.0 * r.ms_stats / std::max(1e-9, b.total_stats_ms), r.ms_plain, rate.c_str());
  }
  std::printf("%-16s %10.3f %7s %10.3f\n", "total", b.total_stats_ms, "", b.total_plain_ms);
}

// The table as a JSON array (bench_gpu's "steps").
inline std::string steps_json(const StepBreakdown& b) {
  std::string js = "[";
  char buf[256];
  for (size_t i = 0; i < b.rows.size(); ++i) {
    const StepRow& r = b.rows[i];
    std::snprintf(buf, sizeof buf, "%s{\"step\":\"%s\",\"ms_stats\":%.4f,\"ms_plain\":%.4f,\"tflops\":%.2f,\"gbs\":%.1f}",
                  i ? "," : "", r.name, r.ms_stats, r.ms_plain, r.tflops, r.gbs);
    js += buf;
  }
  return js + "]";
}

}  // namespace bench
