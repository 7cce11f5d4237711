// Where a forward's (or a training step's) device time goes, step by step: events recorded on the stream between
// the steps, summed per kind of step once the work has ended. A diagnostic for the GPU benchmarks (bench_gpu's
// "where the time goes" table, benchmarks/gpu-finetune's step breakdown), so that one run on a GPU says which step
// keeps the work from the GEMM rate. Off in all other work: the runtime and the trainer hold a null clock and their
// hot loops only test the pointer.
//
// Each mark closes the step since the previous mark (or begin), so the steps' times add up to the forward's device
// time exactly, with nothing counted twice. Events make the device wait for nothing, but each one is a record in
// the stream: the clocked forward is a little slower than the timed ones, which bench_gpu says beside the table.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "cuda/runtime_kernels.h"

namespace ln {
namespace cuda {

class PhaseClock {
 public:
  enum Phase : int {
    Embed,        // the embedding rows (and the plan the forward uploaded before them)
    Norm,         // the attention and FFN norms (bf16 GEMM inputs)
    QkvGemm,      // the q/k/v projection
    Rope,         // bias, q/k norms, bf16 rounding, RoPE; the K/V rows into their buffer or the cache
    Attention,    // causal attention over the packed sequences (or the cache)
    OGemm,        // the output projection, added to the residual (Gemma 2: its post-norm too)
    GateUpGemm,   // the gate and up projections
    Ffn,          // the activation with the statistics of the FFN sites and the interventions, fused
    DownGemm,     // the down projection, added to the residual (Gemma 2: its post-norm too)
    Stats,        // statistics of the other sites, the reductions of every site, the copies to the host
    LmHead,       // final norm, LM head, log-softmax / pick, logits to the host
    // The CUDA trainer's step (cuda_trainer.cpp), beside the forward's steps above:
    Loss,         // LM head (or classification head) forward, cross-entropy, its backward to the final norm
    GradInput,    // the input gradients' GEMMs (dX = dY W) of every projection
    GradWeight,   // the weight gradients of what trains (masked rows / columns gathered, one GEMM, scattered)
    GradAttention,  // the attention backward
    GradElementwise,  // activation, norms, RoPE, q/k norms, biases, embedding; dY rounded for the GEMMs
    GradLora,     // the LoRA adapters' backward
    Recompute,    // a layer's forward run again before its backward (activation recomputation)
    Optimizer,    // zero_grad, the gradient norm, AdamW, the bf16 copies of the updated weights
    kPhases
  };
  static const char* name(Phase p);

  PhaseClock() = default;
  ~PhaseClock();
  PhaseClock(const PhaseClock&) = delete;
  PhaseClock& operator=(const PhaseClock&) = delete;

  // The start of a forward or a training step on `s`: drops what the previous one recorded (its events are reused).
  void begin(Stream s);
  // The device time since the previous mark (or begin) goes to `done`.
  void mark(Phase done, Stream s);

  struct Totals {
    std::array<double, kPhases> ms{};       // summed over the forward
    std::array<int64_t, kPhases> marks{};   // how many steps of each kind
    double total_ms = 0;                    // begin to the last mark
  };
  // After the forward has ended; waits for its last mark if it has not.
  Totals totals() const;

 private:
  Event next_event();
  std::vector<Event> events_;        // grow-only pool: events_[0] is begin's, events_[i] closes steps_[i - 1]
  std::vector<Phase> steps_;
  size_t used_ = 0;
};

}  // namespace cuda
}  // namespace ln
