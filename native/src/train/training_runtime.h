// The training seam: what the binding (binding/js_trainer.cpp) and the tests use of a trainer, with the CPU
// trainer (train/trainer.h) and the CUDA trainer (cuda/cuda_trainer.cpp, made by make_cuda_trainer) behind it.
// Both lay their parameters out with train/param_layout.h, so a spec gives the same Param list, offsets and
// initial master values on both; the arenas are reached by copies (read / write), since the CUDA trainer's live
// in device memory.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor_types.h"
#include "train/param_layout.h"

namespace ln {
namespace train {

// The four float32 arenas, one layout (Param::offset): master weights, gradients, Adam's first / second moments.
enum class Arena : int { Master = 0, Grad = 1, AdamM = 2, AdamV = 3 };

// Bytes held by a trainer, by use (device bytes for the CUDA trainer, host bytes for the CPU one).
struct TrainingMemory {
  int64_t weights = 0;      // the model the forward reads (CPU: 0, the checkpoint stays memory-mapped)
  int64_t master = 0;       // float32 master copies of the trainable values
  int64_t grad = 0;         // their gradients
  int64_t adam = 0;         // Adam's m and v
  int64_t activations = 0;  // what the forward saves for the backward (sized once per batch shape)
  int64_t scratch = 0;      // backward work buffers, LM-head chunk, reductions
  int64_t device_used = 0, device_total = 0;  // the whole device as the driver reports it (CPU: 0, 0)
};

// One kind of work in a clocked training step (clock_steps): its device time and how many pieces it came in.
struct StepTime {
  std::string step;
  double ms = 0;
  int64_t marks = 0;
};

class TrainingRuntime {
 public:
  virtual ~TrainingRuntime() = default;

  // Forward (and with `backward`, backward) over a packed batch: tokens of n_seqs sequences back to back, one
  // target per token (-1: no loss at that position). The loss is sum CE / denominator (denominator <= 0: this
  // batch's target count), and gradients of that loss ACCUMULATE into the grad arena (gradient accumulation:
  // pass the total target count of all micro-batches). Validates everything first (std::invalid_argument).
  // LoRA dropout is active only in forwards with `backward`; its masks are a function of (seed, step,
  // micro-batch, layer, role, token row, feature): dropout_step / dropout_micro default to the optimizer step
  // count and the number of backward passes since zero_grad().
  virtual BatchLoss forward_backward(const int32_t* tokens, const int32_t* targets, const int32_t* seq_lens,
                                     int32_t n_seqs, int64_t n_tokens, double denominator, bool backward,
                                     int64_t dropout_step = -1, int64_t dropout_micro = -1) = 0;
  // The same with the classification head: one label per sequence (-1: none), loss = sum CE(score(h_last), label) /
  // denominator, h_last the final-normed hidden state of the sequence's last token. Writes the class logits
  // [n_seqs, num_labels] to `logits` when it is not null. Throws std::invalid_argument without a head or for a
  // bad label.
  virtual BatchLoss forward_backward_cls(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs,
                                         int64_t n_tokens, const int32_t* labels, double denominator, bool backward,
                                         float* logits, int64_t dropout_step = -1, int64_t dropout_micro = -1) = 0;

  virtual void zero_grad() = 0;        // also restarts the micro-batch count of the dropout masks
  virtual void reset_optimizer() = 0;  // Adam moments and the step count to zero
  virtual double grad_norm() = 0;      // global L2 norm of the grad arena
  // AdamW with bias correction and decoupled weight decay, after clipping the global grad norm to cfg.clip.
  // Returns the norm before clipping. Does not zero the gradients.
  virtual double step(const AdamWConfig& cfg) = 0;
  virtual int64_t step_count() const = 0;
  virtual void set_step_count(int64_t t) = 0;

  // The parameter table (train/param_layout.h).
  virtual const ParamLayout& layout() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual const TrainerOptions& options() const = 0;
  int64_t n_trainable() const { return layout().n_trainable; }
  int n_params() const { return int(layout().params.size()); }
  const Param& param(int i) const { return layout().params[size_t(i)]; }
  int find(const std::string& role, int32_t layer) const { return layout().find(config(), role, layer); }
  int lowest_layer() const { return layout().lowest; }  // backward runs down to this layer (-1: to the embedding)
  int32_t num_labels() const { return options().num_labels; }
  int n_adapters() const { return int(layout().adapters.size()); }

  // n floats of `arena` from `offset` to / from host memory (offset + n <= n_trainable(), else
  // std::out_of_range). Writing the master arena also refreshes what the forward reads.
  virtual void read(Arena arena, int64_t offset, int64_t n, float* host) = 0;
  virtual void write(Arena arena, int64_t offset, int64_t n, const float* host) = 0;

  // The weight the forward reads for params[param] (a checkpoint tensor, frozen or not), as float32
  // [rows * cols]: the stored values with the trainable rows / columns of the master copy in place (the device
  // trainer in bf16 mode: its bf16 device copy; a LoRA adapter is not merged in). Throws std::invalid_argument for a parameter without a tensor.
  virtual void read_weight(int param, float* host) = 0;

  virtual int64_t activation_bytes() const = 0;
  virtual TrainingMemory memory() const = 0;
  // A diagnostic of the GPU benchmark (benchmarks/gpu-finetune): with `on`, the device time of the work from each
  // zero_grad() to the end of the following step() is clocked by kind (the forward's steps, the loss head, the
  // input- and weight-gradient GEMMs, the attention backward, AdamW, ...; CUDA events between them), and
  // step_times() gives the last such span. Off by default. The CPU trainer has no clock: it gives no rows.
  virtual void clock_steps(bool on) { (void)on; }
  virtual std::vector<StepTime> step_times() const { return {}; }
  virtual std::string device() const = 0;    // "cpu", "cuda:0", ...
  virtual std::string describe() const = 0;  // one line: device, compute mode, trainable values
};

// The CUDA trainer on device `device_index` (compute BF16: bf16 weights / activations, float32 master copies and
// optimizer state; F32: exact float32, for checks). Implemented in native/src/cuda when the addon is built with
// nvcc; otherwise (and for a family the CUDA runtime refuses) it throws std::runtime_error /
// std::invalid_argument with the reason.
std::unique_ptr<TrainingRuntime> make_cuda_trainer(const ModelConfig& config, const ModelWeights& weights,
                                                   int device_index, Compute compute,
                                                   const std::vector<TrainableSpec>& spec,
                                                   const TrainerOptions& options);

}  // namespace train
}  // namespace ln
