// make_cuda_trainer of a build without the CUDA runtime (no nvcc when the addon was built, or LANGNEURONS_CUDA=0).
// With LN_WITH_CUDA the real one comes from native/src/cuda/cuda_trainer.cpp and this file is empty.
#ifndef LN_WITH_CUDA
#include <stdexcept>

#include "runtime/cuda_runtime.h"
#include "train/training_runtime.h"

namespace ln {
namespace train {

std::unique_ptr<TrainingRuntime> make_cuda_trainer(const ModelConfig&, const ModelWeights&, int, Compute,
                                                   const std::vector<TrainableSpec>&, const TrainerOptions&) {
  throw std::runtime_error(std::string("CUDA trainer: ") + cuda_unavailable_reason());
}

}  // namespace train
}  // namespace ln
#endif
