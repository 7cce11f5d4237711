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

# The attention kernels and what they link against (ScratchBuffer lives with the GEMM dispatch).
sources=(
  native/src/core/dtype.cpp native/src/core/thread_pool.cpp native/src/core/scratch.cpp native/src/kernels/cpu_features.cpp
  native/src/kernels/gemm.cpp native/src/kernels/gemm_ref.cpp native/src/kernels/gemm_plain.cpp
  native/src/kernels/gemm_avx2.cpp native/src/kernels/ops.cpp native/src/kernels/ops_avx2.cpp
  native/src/kernels/attention_kernels.cpp native/src/kernels/attention_kernels_avx2.cpp
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
# The benchmark itself is portable; its FMA-peak loop carries its own target("avx2,fma") attribute.
"$cxx" "${flags[@]}" "$here/bench_attention.cpp" "${objects[@]}" -o "$build/bench_attention" -lpthread
exec "$build/bench_attention" "$@"
