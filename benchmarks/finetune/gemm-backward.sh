#!/usr/bin/env bash
# Builds and runs the backward-GEMM micro-benchmark (bench_gemm_backward.cpp): the widest kernel family this CPU has
# (or LANGNEURONS_KERNEL's) against the plain kernels in the same run. The engine sources are compiled as shipped:
# -O3, portable flags, each x86 family's files with its flags (the family is picked at run time; the benchmark
# switches it with set_kernel).
#
#   benchmarks/finetune/gemm-backward.sh [--quick] [--tokens 256,512] [--reps N] [--threads T] [--neurons n] [--no-head] [--cpu-time]
# Environment: CXX (default g++), BUILD_DIR (default benchmarks/finetune/build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$here/build}"
cxx="${CXX:-g++}"
mkdir -p "$build"

# shellcheck source=../common/build-engine.sh
source "$root/benchmarks/common/build-engine.sh"
build_engine_objects native/src/train/gemm_backward.cpp native/src/kernels/gemm_backward_avx2.cpp
"$cxx" "${flags[@]}" "$here/bench_gemm_backward.cpp" "${objects[@]}" -o "$build/bench_gemm_backward" -lpthread
exec "$build/bench_gemm_backward" "$@"
