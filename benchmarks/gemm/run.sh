#!/usr/bin/env bash
# Builds and runs the GEMM benchmark (bench_gemm.cpp). Our code is compiled exactly as shipped: -O3, portable
# flags, with -mavx2 -mfma -mf16c only on *_avx2.cpp (kernels are chosen at run time), like the root CMakeLists.
# Installs Debian's libopenblas-dev when missing (the only place in the project that does), for the comparison.
#
#   benchmarks/gemm/run.sh [--quick] [--decode-only | --prefill-only] [--reps N] [--threads T] [--cpu-time]
# Environment: CXX (default g++), BUILD_DIR (default benchmarks/gemm/build),
# LANGNEURONS_KERNEL=plain|avx2|avx512|avx512bf16 (default: the widest the CPU supports).
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for the benchmark process (they would force OpenBLAS onto older
# kernels and make the comparison unfair); the core OpenBLAS chose is printed.
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

# shellcheck source=../common/build-engine.sh
source "$root/benchmarks/common/build-engine.sh"
build_engine_objects

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
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
exec "$build/bench_gemm" "$@"
