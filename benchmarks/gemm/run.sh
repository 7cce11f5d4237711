#!/usr/bin/env bash
# Builds and runs the GEMM benchmarks: bench_gemm.cpp (prefill GEMM) and bench_gemv.cpp (decode GEMV). Our code is
# compiled exactly as shipped: -O3, portable flags, each x86 family's files with its flags (kernels are chosen at
# run time), like the root CMakeLists. Installs Debian's libopenblas-dev when missing (the only place in the
# project that does), for the comparison.
#
#   benchmarks/gemm/run.sh [--quick] [--decode-only | --prefill-only] [--reps N] [--threads T] [--cpu-time]
# --quick: 3 rounds (prefill, still M = 512, 1024, 2048) and only the decode-step rows of the GEMV benchmark;
# --threads T: prefill on T threads, decode on T (default: decode on 1 and 2); --reps N: rounds of both.
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
for b in bench_gemm bench_gemv; do
  "$cxx" "${flags[@]}" "${blas_def[@]}" "$here/$b.cpp" "${objects[@]}" -o "$build/$b" -lpthread "${blas_lib[@]}" &
done
wait
prefill=1 decode=1
gemm_args=() gemv_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefill-only) decode=0 ;;
    --decode-only) prefill=0 ;;
    --quick) gemm_args+=(--quick) gemv_args+=(--quick) ;;
    --cpu-time) gemm_args+=(--cpu-time) gemv_args+=(--cpu-time) ;;
    --reps) gemm_args+=(--reps "$2") gemv_args+=(--rounds "$2"); shift ;;
    --threads) gemm_args+=(--threads "$2") gemv_args+=(--threads "$2"); shift ;;
    *) echo "run.sh: unknown option $1 (expected --quick, --decode-only, --prefill-only, --reps N, --threads T, --cpu-time)" >&2
       exit 1 ;;
  esac
  shift
done
# OpenBLAS gets exactly the threads we use (bench_gemm calls openblas_set_num_threads too).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
status=0
[ "$prefill" = 1 ] && { "$build/bench_gemm" "${gemm_args[@]}" || status=1; }
[ "$decode" = 1 ] && { "$build/bench_gemv" "${gemv_args[@]}" || status=1; }
exit $status
