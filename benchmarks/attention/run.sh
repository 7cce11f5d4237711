#!/usr/bin/env bash
# Builds and runs the attention benchmark (bench_attention.cpp). The engine's sources are compiled as shipped:
# -O3, portable flags, -mavx2 -mfma -mf16c only on *_avx2.cpp (the kernel family is chosen at run time, as in the
# root CMakeLists; LANGNEURONS_KERNEL=plain benchmarks the portable kernels).
#
#   benchmarks/attention/run.sh [--rounds N] [--threads 1,2] [--tokens 128,256,512,1024] [--ctx 128,512,2048]
#                               [--cpu-time] [--no-decode] [--no-prefill]
# Environment: CXX (default g++), BUILD_DIR (default benchmarks/attention/build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$here/build}"
cxx="${CXX:-g++}"
mkdir -p "$build"

# shellcheck source=../common/build-engine.sh
source "$root/benchmarks/common/build-engine.sh"
build_engine_objects native/src/kernels/ops.cpp native/src/kernels/ops_avx2.cpp \
  native/src/kernels/attention_kernels.cpp native/src/kernels/attention_kernels_avx2.cpp
# The benchmark itself is portable; its FMA-peak loop carries its own target("avx2,fma") attribute.
"$cxx" "${flags[@]}" "$here/bench_attention.cpp" "${objects[@]}" -o "$build/bench_attention" -lpthread
exec "$build/bench_attention" "$@"
