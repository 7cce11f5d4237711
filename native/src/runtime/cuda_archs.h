// Whether a build's GPU code runs on a device, from the architectures it was compiled for (CMake's
// CUDA_ARCHITECTURES of langneurons_cuda, LN_CUDA_ARCHITECTURES) and the device's compute capability. Plain C++
// (tested on every machine): a GPU the build has no code for must be refused before the first kernel launch, which
// would fail with "no kernel image is available" in the middle of a run; `--device auto` then uses the CPU instead.
#pragma once
#include <string>

namespace ln {

// `archs`: CMake's list ("80;90", or with commas), each entry a number XY (compute capability X.Y) with an optional
// arch suffix (`a`: that exact GPU, `f`: its family) and an optional `-real` (machine code only) or `-virtual` (PTX
// only); plain entries hold both. Machine code for XY runs on X.Z for Z >= Y (`a`: Z == Y); PTX for XY is compiled by
// the driver for X.Y and every newer capability. Returns "" when some entry runs on `major`.`minor`, or when the list
// holds a value it cannot tell from ("all", "native", ...); otherwise why not, naming the list and how to rebuild.
std::string cuda_arch_problem(const std::string& archs, int major, int minor);

}  // namespace ln
