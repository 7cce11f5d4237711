// The CPU engine (model/model.h) behind the runtime interface: the checkpoint stays memory-mapped, the forward
// runs on the engine's thread pool with the kernel family chosen from the CPU's features.
#pragma once
#include <memory>

#include "runtime/runtime.h"

namespace ln {

// Throws std::invalid_argument like Model's constructor (bad config, weights of the wrong shape, threads < 1).
std::unique_ptr<Runtime> make_cpu_runtime(const ModelConfig& config, const ModelWeights& weights, int n_threads,
                                          Compute compute);

// The Model inside a CPU runtime (for the trainer and the benchmarks, which work on the CPU engine directly);
// null for another device's runtime.
Model* cpu_model(Runtime& runtime);

}  // namespace ln
