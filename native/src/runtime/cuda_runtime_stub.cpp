// The CUDA entry points of a build without the CUDA runtime (no nvcc when the addon was built, or
// LANGNEURONS_CUDA=0). With LN_WITH_CUDA the real ones come from native/src/cuda and this file is empty.
#ifndef LN_WITH_CUDA
#include <stdexcept>

#include "runtime/cuda_runtime.h"

namespace ln {

static const char* kNotBuilt =
    "this build of langneurons has no CUDA runtime (the addon was built without nvcc on the PATH, or with "
    "LANGNEURONS_CUDA=0; rebuild with `LANGNEURONS_CUDA=1 npm rebuild langneurons`)";

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
const char* cuda_unavailable_reason() { return kNotBuilt; }
std::string cuda_device_problem(int) { return kNotBuilt; }
std::unique_ptr<Runtime> make_cuda_runtime(const ModelConfig&, const ModelWeights&, int, Compute) {
  throw std::runtime_error(kNotBuilt);
}

}  // namespace ln
#endif
