// PhaseClock (phase_clock.h): events in a pool reused from forward to forward.
#include "cuda/phase_clock.h"

#include <stdexcept>

namespace ln {
namespace cuda {

const char* PhaseClock::name(Phase p) {
  switch (p) {
    case Embed: return "embedding";
    case Norm: return "norms";
    case QkvGemm: return "q/k/v GEMM";
    case Rope: return "bias, RoPE, K/V";
    case Attention: return "attention";
    case OGemm: return "o GEMM";
    case GateUpGemm: return "gate/up GEMM";
    case Ffn: return "FFN act+stats";
    case DownGemm: return "down GEMM";
    case Stats: return "other stats";
    case LmHead: return "LM head";
    case Loss: return "loss head";
    case GradInput: return "dX GEMMs";
    case GradWeight: return "dW (trained)";
    case GradAttention: return "attention bwd";
    case GradElementwise: return "act/norm bwd";
    case GradLora: return "LoRA bwd";
    case Recompute: return "recompute";
    case Optimizer: return "zero, AdamW";
    case kPhases: break;
  }
  return "?";
}

PhaseClock::~PhaseClock() {
  for (Event e : events_) event_destroy(e);
}

Event PhaseClock::next_event() {
  if (used_ == events_.size()) events_.push_back(event_create());
  return events_[used_++];
}

void PhaseClock::begin(Stream s) {
  used_ = 0;
  steps_.clear();
  event_record(next_event(), s);
}

void PhaseClock::mark(Phase done, Stream s) {
  if (used_ == 0) throw std::logic_error("PhaseClock::mark before begin");
  event_record(next_event(), s);
  steps_.push_back(done);
}

PhaseClock::Totals PhaseClock::totals() const {
  Totals t;
  if (used_ < 2) return t;
  for (size_t i = 1; i < used_; ++i) {
    const double ms = event_elapsed_ms(events_[i - 1], events_[i]);
    t.ms[steps_[i - 1]] += ms;
    t.marks[steps_[i - 1]] += 1;
  }
  t.total_ms = event_elapsed_ms(events_[0], events_[used_ - 1]);
  return t;
}

}  // namespace cuda
}  // namespace ln
