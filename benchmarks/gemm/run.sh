#!/usr/bin/env bash
# Builds and runs the GEMM benchmark (bench_gemm.cpp). Our code is compiled exactly as shipped: -O3, portable
# flags, with -mavx2 -mfma -mf16c only on *_avx2.cpp (kernels are chosen at run time), like the root CMakeLists.
# Installs Debian's libopenblas-dev when missing (the only place in the project that does), for the comparison.
#
#   benchmarks/gemm/run.sh [--quick] [--decode-only | --prefill-only] [--reps N] [--threads T] [--cpu-time]
# Environment: CXX (default g++), BUILD_DIR (default benchmarks/gemm/build), LANGNEURONS_KERNEL=plain|avx2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$here/build}"
cxx="${CXX:-g++}"
mkdir -p "$build"

if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
  echo "run.sh: installing libopenblas-dev for the comparison column" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  ($sudo_cmd apt-get install -y libopenblas-dev >/dev/null 2>&1 ||
    ($sudo_cmd apt-get update >/dev/null 2>&1 && $sudo_cmd apt-get install -y libopenblas-dev >/dev/null 2>&1)) ||
    echo "run.sh: could not install libopenblas-dev; benchmarking without OpenBLAS" >&2
fi

# Only the engine sources the GEMM needs (the rest of the engine is not required to link this benchmark).
sources=(
  native/src/core/dtype.cpp native/src/core/thread_pool.cpp native/src/core/scratch.cpp
  native/src/kernels/cpu_features.cpp native/src/kernels/gemm.cpp native/src/kernels/gemm_ref.cpp
  native/src/kernels/gemm_plain.cpp native/src/kernels/gemm_avx2.cpp
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

blas_def=()
blas_lib=()
if [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] || ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so '; then
  blas_def=(-DLN_HAVE_OPENBLAS)
  blas_lib=(-lopenblas)
fi
# The benchmark itself is portable too; its peak/bandwidth loops carry their own target("avx2") attributes.
"$cxx" "${flags[@]}" "${blas_def[@]}" "$here/bench_gemm.cpp" "${objects[@]}" -o "$build/bench_gemm" -lpthread \
  "${blas_lib[@]}"
# OpenBLAS gets exactly the threads we use (bench_gemm calls openblas_set_num_threads too).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
exec "$build/bench_gemm" "$@"
