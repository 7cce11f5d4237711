#!/usr/bin/env bash
# Runs the native tests and the GEMM benchmark with every CPU kernel family this machine supports (plain, avx2,
# avx512, avx512bf16), and prints which ran and which were skipped. Called by scripts/gpu-check.sh (the GPU hosts'
# CPUs are where the AVX-512 families are most likely to be found); runs anywhere.
#
#   scripts/cpu-kernels-check.sh [--no-bench] [--full-bench]
# --no-bench: tests only. Default benchmark: benchmarks/gemm/run.sh --quick --prefill-only per family (a few
# minutes each on a shared 2-core machine); --full-bench: the whole benchmark (decode too) per family.
# Exit status: 0 when every test of every supported family passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bench=quick
for a in "$@"; do
  case "$a" in
    --no-bench) bench=none ;;
    --full-bench) bench=full ;;
    *) echo "cpu-kernels-check.sh: unknown option $a (expected --no-bench or --full-bench)" >&2; exit 1 ;;
  esac
done

build="$root/build-native"
# The configuration of scripts/native-tests.mjs (the same folder: nothing is rebuilt for the other).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLN_NATIVE_TESTS=ON -DLN_CUDA=OFF -DLN_DEBUG_INFO=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target native_tests >/dev/null
tests="$build/native_tests"

echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //') ($(uname -m), $(nproc) cores)"
# The engine's own detection decides: a family the CPU lacks is refused at start-up with one warning on stderr,
# "LANGNEURONS_KERNEL=<family> refused". Only that line counts: the test itself also asks for each family and
# prints its own refusals (set_kernel(...) refused) on any CPU without AVX-512. The output is read whole first (a
# grep -q that stops early would end the test with SIGPIPE and, under pipefail, turn a match into a failure).
supported=()
skipped=()
for fam in plain avx2 avx512 avx512bf16; do
  start_msgs=$(LANGNEURONS_KERNEL=$fam "$tests" gemm_kernel_selection 2>&1 >/dev/null || true)
  if grep -q "LANGNEURONS_KERNEL=$fam refused" <<<"$start_msgs"; then
    skipped+=("$fam")
  else
    supported+=("$fam")
  fi
done
echo "== kernel families supported: ${supported[*]}"
echo "== kernel families skipped (CPU lacks them): ${skipped[*]:-none}"

# The kernel tests (gemm, backward, ops, stats, trainer) loop over every supported family themselves; the whole
# suite then runs once more with each family forced, so the model-level tests run on it too.
status=0
for fam in "${supported[@]}"; do
  echo "== native tests, LANGNEURONS_KERNEL=$fam"
  # pipefail: the pipeline fails when the tests do; the tail shows the families each kernel test ran and the count.
  if ! LANGNEURONS_KERNEL=$fam "$tests" 2>&1 | grep -E "kernel families tested|skipped kernel family|FAIL|passed" |
    sort | uniq -c; then
    echo "!! native tests FAILED with kernel family $fam"
    status=1
  fi
done

if [ "$bench" != none ]; then
  args=(--quick --prefill-only)
  [ "$bench" = full ] && args=()
  for fam in "${supported[@]}"; do
    [ "$fam" = plain ] && continue  # minutes of nothing new: the plain kernels are the portable fallback
    echo "== benchmarks/gemm, LANGNEURONS_KERNEL=$fam"
    LANGNEURONS_KERNEL=$fam bash "$root/benchmarks/gemm/run.sh" "${args[@]}" || status=1
  done
fi
echo "== families run: ${supported[*]}; skipped: ${skipped[*]:-none}; status $status"
exit $status
