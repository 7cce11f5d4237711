// The CUDA trainer's entry point (train/training_runtime.h make_cuda_trainer).
//
// Status: the checks a CUDA trainer makes before touching the device are here and shared (the family refusal of
// cuda_support.h, the spec validation and parameter layout of train/param_layout.h), but the trainer itself — the
// runtime's forward with a save hook, the backward over train_kernels.h, the device arenas and AdamW — is not
// written yet (issue 13). Until it is, a valid request is refused with that reason instead of training something
// else; docs/CUDA.md "Training on the GPU" has the design it follows.
#include <stdexcept>
#include <string>

#include "cuda/cuda_support.h"
#include "train/param_layout.h"
#include "train/training_runtime.h"

namespace ln {
namespace train {

std::unique_ptr<TrainingRuntime> make_cuda_trainer(const ModelConfig& config, const ModelWeights& weights,
                                                   int device_index, Compute compute,
                                                   const std::vector<TrainableSpec>& spec,
                                                   const TrainerOptions& options) {
  check_cuda_supported(config, weights, device_index, compute, "CUDA trainer");
  build_param_layout(config, weights, spec, options);  // the CPU trainer's errors for a bad spec, first
  throw std::runtime_error(
      "the CUDA trainer is not implemented in this build yet (its forward/backward on the device, issue 13); "
      "fine-tune on the CPU (--device cpu)");
}

}  // namespace train
}  // namespace ln
