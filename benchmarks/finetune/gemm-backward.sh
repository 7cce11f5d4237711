#!/usr/bin/env bash
# Builds and runs the backward-GEMM micro-benchmark (bench_gemm_backward.cpp): the AVX2 kernels against the plain
# ones in the same run. The engine sources are compiled as shipped: -O3, portable flags, -mavx2 -mfma -mf16c only
# on *_avx2.cpp (the kernel family is picked at run time; the benchmark switches it with set_kernel).
#
#   benchmarks/finetune/gemm-backward.sh [--quick] [--tokens 256,512] [--reps N] [--threads T] [--neurons n] [--no-head] [--cpu-time]
# Environment: CXX (default g++), BUILD_DIR (default benchmarks/finetune/build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$here/build}"
cxx="${CXX:-g++}"
mkdir -p "$build"

sources=(
  native/src/core/dtype.cpp native/src/core/thread_pool.cpp native/src/core/scratch.cpp
  native/src/kernels/cpu_features.cpp native/src/kernels/gemm.cpp native/src/kernels/gemm_ref.cpp
  native/src/kernels/gemm_plain.cpp native/src/kernels/gemm_avx2.cpp
  native/src/train/gemm_backward.cpp native/src/kernels/gemm_backward_avx2.cpp
)
flags=(-std=c++17 -O3 -Wall -Wextra -Wno-unused-parameter -I"$root/native/src")
objects=()
pids=()
for src in "${sources[@]}"; do
  obj="$build/$(basename "$src" .cpp).o"
  extra=()
  [[ "$src" == *_avx2.cpp ]] && extra=(-mavx2 -mfma -mf16c)
  "$cxx" "${flags[@]}" "${extra[@]}" -c "$root/$src" -o "$obj" &
  pids+=($!)
  objects+=("$obj")
done
for p in "${pids[@]}"; do wait "$p"; done
"$cxx" "${flags[@]}" "$here/bench_gemm_backward.cpp" "${objects[@]}" -o "$build/bench_gemm_backward" -lpthread
exec "$build/bench_gemm_backward" "$@"
