#!/usr/bin/env bash
# Memory/UB checking of the native engine (CI, and `npm run test:sanitize`). Two checks, both must pass:
#
#   asan+ubsan: native_tests built with -DLN_SANITIZE=ON (ASan + UBSan, -fno-sanitize-recover=all) at -O1 (the
#               sanitizers' recommended level: the kernels' intrinsics paths are the same, and it compiles in 2/3
#               of the time of -O3 for a run 1.4x longer), into build-asan/; every test is run. Any sanitizer
#               report fails the check.
#   valgrind:   the plain native_tests of `npm test` (build-native/, -O3 engine / -O2 tests with -g, no sanitizers;
#               built by scripts/native-tests.mjs --build-only, nothing to do when npm test has built it) run under
#               valgrind memcheck (--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect).
#               The binary that passed the tests is the one checked, and no third build of the engine is made.
#
# Both binaries are built first; then every test runs in a process of its own (`native_tests =<name>`, so that a
# report names its test), ASan's and valgrind's from one queue, as many processes at a time as there are cores, the
# longest first (a run on two cores is as long as its work over two, not its slowest test started last). Results are
# printed per check in name order, the same output each run.
#
# Under valgrind (~50x slower) tests whose sizes make them take minutes are skipped; they still run under ASan.
# The list is LN_VALGRIND_SKIP (space-separated exact test names; set it to "" to run everything).
#
# Environment:
#   LN_JOBS=2                 parallel build jobs
#   LN_VALGRIND_SKIP=...      tests not run under valgrind (default below)
#   LN_SANITIZE_STAGES="asan valgrind"   run only some checks
#   LN_SANITIZE_JOBS=N        test processes at a time (default: nproc)
#   LN_VALGRIND_EXTRA=...     extra valgrind flags (e.g. --track-origins=yes when chasing an uninitialised value)
#   LN_SANITIZE_BUILD_ONLY=1  build the binaries and stop (CI builds them early, in the cycles npm test leaves idle)
# Arguments: an optional test-name substring filter, applied to both checks.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${LN_JOBS:-2}"
STAGES="${LN_SANITIZE_STAGES:-asan valgrind}"
FILTER="${1:-}"
# Under memcheck on 2 cores (CI), each of these alone takes about a minute or more; the same sizes in smaller
# shapes run under valgrind in gemm_odd_shapes_all_dtypes_and_modes and gemm_backward_odd_shapes_dtypes_strides
# (packing, tails, every dtype), and these three in full under ASan + UBSan.
#   gemm_exact_small_integers_across_blocks: a 130x1100x600 product per (kernel, dtype, compute) and its double
#     reference (~6 minutes);
#   gemm_backward_exact_small_integers_across_blocks, gemm_backward_kernels_agree_and_thread_counts_are_bitwise_equal:
#     the dX and dW products across blocks, for every kernel family and thread count (57 s and 40 s).
DEFAULT_SKIP="gemm_exact_small_integers_across_blocks gemm_backward_exact_small_integers_across_blocks"
DEFAULT_SKIP+=" gemm_backward_kernels_agree_and_thread_counts_are_bitwise_equal"
SKIP="${LN_VALGRIND_SKIP-$DEFAULT_SKIP}"
# Queued first (longest first): the slowest test processes as measured on CI's 2 cores; the rest follow in name order.
SLOW_FIRST=(valgrind:gemm_odd_shapes_all_dtypes_and_modes asan:gemm_exact_small_integers_across_blocks
  valgrind:intervene_projection_sites_match_edited_rows valgrind:model_logit_lens_matches_float64_truncated_reference
  valgrind:train_lora_fd_gradients valgrind:train_fd_gradients_qwen3 valgrind:train_fd_gradients_gemma2
  valgrind:train_fd_gradients_llama3_bias_tied valgrind:train_lora_fd_gradients_llama3_bias_tied_bf16
  asan:gemm_backward_exact_small_integers_across_blocks asan:gemm_backward_kernels_agree_and_thread_counts_are_bitwise_equal)

# Sanitizer runtime options: stop at the first report, leaks checked at exit, a stack for UBSan reports.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ln-sanitize.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

say() { printf '\n==== sanitize.sh: %s\n' "$*"; }
fail() {
  printf '\n==== sanitize.sh: FAILED at stage [%s]: %s\n' "$1" "$2" >&2
  exit 1
}
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }

# Checked before anything is built.
TEST_JOBS="${LN_SANITIZE_JOBS:-$(nproc)}"
[[ "$TEST_JOBS" =~ ^[1-9][0-9]*$ ]] || fail setup "LN_SANITIZE_JOBS=$TEST_JOBS: expected a positive whole number"
for s in $STAGES; do [[ $s == asan || $s == valgrind ]] || fail setup "LN_SANITIZE_STAGES: unknown check '$s' (expected asan, valgrind)"; done
if has_stage valgrind; then
  command -v valgrind >/dev/null 2>&1 || fail valgrind "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
fi
# Test names from the sources (LN_TEST(name)).
mapfile -t TESTS < <(grep -ho 'LN_TEST([A-Za-z0-9_]*)' "$ROOT"/native/tests/*.cpp | sed 's/LN_TEST(\(.*\))/\1/' | sort -u)
[[ ${#TESTS[@]} -gt 0 ]] || fail setup "no LN_TEST found in native/tests/*.cpp"

start_all=$SECONDS

# ---- builds ------------------------------------------------------------------------------------------------
build() {  # build <stage> <folder> <cmake options...>
  local stage=$1 dir=$2 t0=$SECONDS
  shift 2
  cmake -S "$ROOT" -B "$dir" -DLN_NATIVE_TESTS=ON -DLN_CUDA=OFF "$@" >"$LOG_DIR/$stage-config.log" 2>&1 \
    || { cat "$LOG_DIR/$stage-config.log" >&2; fail "$stage" "cmake configure failed"; }
  cmake --build "$dir" -j "$JOBS" --target native_tests >"$LOG_DIR/$stage-build.log" 2>&1 \
    || { tail -60 "$LOG_DIR/$stage-build.log" >&2; fail "$stage" "build failed"; }
  say "[$stage] built in $((SECONDS - t0)) s"
}
if has_stage asan; then
  say "[asan+ubsan] configure + build (build-asan/, Debug, -O1, LN_SANITIZE=ON)"
  build asan+ubsan "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DLN_SANITIZE=ON -DLN_OPT=-O1
fi
if has_stage valgrind; then
  say "[valgrind] configure + build (build-native/, npm test's native tests: -O3/-O2 -g, no sanitizers)"
  t_build=$SECONDS
  LN_JOBS="$JOBS" node "$ROOT/scripts/native-tests.mjs" --build-only >"$LOG_DIR/valgrind-build.log" 2>&1 \
    || { tail -60 "$LOG_DIR/valgrind-build.log" >&2; fail valgrind "build failed"; }
  say "[valgrind] built in $((SECONDS - t_build)) s"
fi

if [[ -n "${LN_SANITIZE_BUILD_ONLY:-}" ]]; then
  say "built ($STAGES) in $((SECONDS - start_all)) s; LN_SANITIZE_BUILD_ONLY: no test run"
  exit 0
fi

# ---- the queue ---------------------------------------------------------------------------------------------
selected=()   # "<stage>:<test>"
vg_skipped=()
for t in "${TESTS[@]}"; do
  [[ -n "$FILTER" && "$t" != *"$FILTER"* ]] && continue
  has_stage asan && selected+=("asan:$t")
  if has_stage valgrind; then
    if [[ " $SKIP " == *" $t "* ]]; then vg_skipped+=("$t"); else selected+=("valgrind:$t"); fi
  fi
done
[[ ${#selected[@]} -gt 0 ]] || fail setup "no test selected${FILTER:+ by the filter '$FILTER'}"
queue=()
for j in "${SLOW_FIRST[@]}"; do [[ " ${selected[*]} " == *" $j "* ]] && queue+=("$j"); done
for j in "${selected[@]}"; do [[ " ${SLOW_FIRST[*]} " == *" $j "* ]] || queue+=("$j"); done

run_one() {  # run_one <stage>:<test>: writes <stage>-<test>.log and .result ("<exit status> <seconds>")
  local stage=${1%%:*} t=${1#*:} t1=$SECONDS
  if [[ $stage == asan ]]; then
    "$ROOT/build-asan/native_tests" "=$t" >"$LOG_DIR/$stage-$t.log" 2>&1
  else
    # shellcheck disable=SC2086
    valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --show-leak-kinds=definite,indirect --num-callers=30 ${LN_VALGRIND_EXTRA:-} \
      "$ROOT/build-native/native_tests" "=$t" >"$LOG_DIR/$stage-$t.log" 2>&1
  fi
  echo "$? $((SECONDS - t1))" >"$LOG_DIR/$stage-$t.result"
}
t0=$SECONDS
say "${#selected[@]} test process(es) (${STAGES}${FILTER:+, filter: $FILTER}), $TEST_JOBS at a time"
for j in "${queue[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $TEST_JOBS ]]; do wait -n || true; done
  run_one "$j" &
done
wait

# ---- results, per check in name order ----------------------------------------------------------------------
report() {  # report <stage> <title>
  local stage=$1 title=$2 ran=0 t log status secs
  say "[$title] results"
  for j in "${selected[@]}"; do
    [[ ${j%%:*} == "$stage" ]] || continue
    t=${j#*:}
    log="$LOG_DIR/$stage-$t.log"
    read -r status secs <"$LOG_DIR/$stage-$t.result" 2>/dev/null || { status=99 secs=0; }
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$log"; then
      grep -nE -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" | head -80 >&2
      fail "$title" "test $t: sanitizer report (see above)"
    fi
    if [[ $status -ne 0 ]]; then
      cat "$log" >&2
      fail "$title" "test $t: exit status $status (a report or a failed test, output above)"
    fi
    # Valgrind notes that are not errors (e.g. "Warning: set address range perms") are shown but do not fail.
    grep '^==[0-9]*==' "$log" | sed 's/^/    note: /' || true
    grep -qE '^1 passed, 0 failed$' "$log" || { cat "$log" >&2; fail "$title" "test $t did not pass"; }
    printf 'ok   %-66s %4d s\n' "$t" "$secs"
    ran=$((ran + 1))
  done
  say "[$title] passed: $ran test(s)"
}
has_stage asan && report asan asan+ubsan
if has_stage valgrind; then
  report valgrind valgrind
  [[ ${#vg_skipped[@]} -eq 0 ]] || printf 'skipped under valgrind (too slow; run under ASan): %s\n' "${vg_skipped[*]}"
fi

say "all checks passed ($STAGES): tests in $((SECONDS - t0)) s, $((SECONDS - start_all)) s in all"
