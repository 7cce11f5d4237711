#!/usr/bin/env bash
# Memory/UB checking of the native engine (CI, and `npm run test:sanitize`). Two stages, both must pass:
#
#   1. asan+ubsan: native_tests built with -DLN_SANITIZE=ON (ASan + UBSan, -fno-sanitize-recover=all) at -O1 (the
#      sanitizers' recommended level: the kernels' intrinsics paths are the same, and it compiles in 2/3 of the time
#      of -O3 for a run 1.4x longer, 45 s less in all on 2 cores), into build-asan/, and run in full. Any sanitizer
#      report aborts the run and fails the stage.
#   2. valgrind:   native_tests built plain (-O1 -g, no sanitizers) into build-valgrind/ and run under
#      valgrind memcheck (--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect), one
#      test per valgrind process so a report names its test, as many processes at a time as there are cores.
#
# Under valgrind (~50x slower) tests whose sizes make them take minutes are skipped; they still run in stage 1.
# The list is LN_VALGRIND_SKIP (space-separated exact test names; set it to "" to run everything).
#
# Environment:
#   LN_JOBS=2                 parallel build jobs
#   LN_VALGRIND_SKIP=...      tests not run under valgrind (default below)
#   LN_SANITIZE_STAGES="asan valgrind"   run only some stages
#   LN_VALGRIND_JOBS=N        valgrind processes at a time (default: nproc)
#   LN_VALGRIND_EXTRA=...     extra valgrind flags (e.g. --track-origins=yes when chasing an uninitialised value)
# Arguments: an optional test-name substring filter, applied to both stages.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${LN_JOBS:-2}"
STAGES="${LN_SANITIZE_STAGES:-asan valgrind}"
FILTER="${1:-}"
# gemm_exact_small_integers_across_blocks: a 130x1100x600 product per (kernel, dtype, compute) plus its double
# reference, ~7 s natively at -O1, i.e. ~6 minutes under memcheck on 2 cores.
DEFAULT_SKIP="gemm_exact_small_integers_across_blocks"
SKIP="${LN_VALGRIND_SKIP-$DEFAULT_SKIP}"

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

# Runs native_tests (with $FILTER) and checks it: exit status 0, no sanitizer report, a closing "N passed, 0 failed".
check_run() {  # stage log
  local stage="$1" log="$2"
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$log"; then
    grep -nE -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" | head -80 >&2
    fail "$stage" "sanitizer report (see above)"
  fi
}

# Checked before anything is built: valgrind processes at a time (a stage-2 setting, see below).
VG_JOBS="${LN_VALGRIND_JOBS:-$(nproc)}"
if has_stage valgrind && ! [[ "$VG_JOBS" =~ ^[1-9][0-9]*$ ]]; then
  fail valgrind "LN_VALGRIND_JOBS=$VG_JOBS: expected a positive whole number"
fi

start_all=$SECONDS

# ---- stage 1: ASan + UBSan ----------------------------------------------------------------------------------
if has_stage asan; then
  t0=$SECONDS
  say "[asan+ubsan] configure + build (build-asan/, Debug, -O1, LN_SANITIZE=ON)"
  cmake -S "$ROOT" -B "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DLN_SANITIZE=ON -DLN_NATIVE_TESTS=ON \
    -DLN_OPT=-O1 -DLN_CUDA=OFF >"$LOG_DIR/asan-config.log" 2>&1 \
    || { cat "$LOG_DIR/asan-config.log" >&2; fail asan+ubsan "cmake configure failed"; }
  cmake --build "$ROOT/build-asan" -j "$JOBS" --target native_tests >"$LOG_DIR/asan-build.log" 2>&1 \
    || { tail -60 "$LOG_DIR/asan-build.log" >&2; fail asan+ubsan "build failed"; }

  say "[asan+ubsan] run native_tests ${FILTER:+(filter: $FILTER)}"
  "$ROOT/build-asan/native_tests" ${FILTER:+"$FILTER"} 2>&1 | tee "$LOG_DIR/asan-run.log"
  status=${PIPESTATUS[0]}
  check_run asan+ubsan "$LOG_DIR/asan-run.log"
  [[ $status -eq 0 ]] || fail asan+ubsan "native_tests exited with status $status"
  grep -qE '^[0-9]+ passed, 0 failed$' "$LOG_DIR/asan-run.log" || fail asan+ubsan "no clean 'N passed, 0 failed' line"
  say "[asan+ubsan] passed in $((SECONDS - t0)) s"
fi

# ---- stage 2: valgrind memcheck -----------------------------------------------------------------------------
if has_stage valgrind; then
  t0=$SECONDS
  command -v valgrind >/dev/null 2>&1 \
    || fail valgrind "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
  say "[valgrind] configure + build (build-valgrind/, -O1 -g, no sanitizers)"
  cmake -S "$ROOT" -B "$ROOT/build-valgrind" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DLN_OPT=-O1 -DLN_SANITIZE=OFF -DLN_NATIVE_TESTS=ON -DLN_CUDA=OFF \
    >"$LOG_DIR/vg-config.log" 2>&1 \
    || { cat "$LOG_DIR/vg-config.log" >&2; fail valgrind "cmake configure failed"; }
  cmake --build "$ROOT/build-valgrind" -j "$JOBS" --target native_tests >"$LOG_DIR/vg-build.log" 2>&1 \
    || { tail -60 "$LOG_DIR/vg-build.log" >&2; fail valgrind "build failed"; }

  # Test names from the sources (LN_TEST(name)); each runs in its own valgrind process.
  mapfile -t TESTS < <(grep -ho 'LN_TEST([A-Za-z0-9_]*)' "$ROOT"/native/tests/*.cpp | sed 's/LN_TEST(\(.*\))/\1/' | sort -u)
  [[ ${#TESTS[@]} -gt 0 ]] || fail valgrind "no LN_TEST found in native/tests/*.cpp"
  # Valgrind runs all of a process's threads on one core, so the tests run LN_VALGRIND_JOBS (default: the
  # core count) processes at a time; their results are then read back in name order (the same output each run).
  vg_one() {  # vg_one <test>: writes vg-<test>.log and vg-<test>.result ("<exit status> <seconds>")
    local t="$1" t1=$SECONDS
    # shellcheck disable=SC2086
    valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --show-leak-kinds=definite,indirect --num-callers=30 ${LN_VALGRIND_EXTRA:-} \
      "$ROOT/build-valgrind/native_tests" "$t" >"$LOG_DIR/vg-$t.log" 2>&1
    echo "$? $((SECONDS - t1))" >"$LOG_DIR/vg-$t.result"
  }
  selected=()
  skipped=()
  for t in "${TESTS[@]}"; do
    if [[ -n "$FILTER" && "$t" != *"$FILTER"* ]]; then continue; fi
    if [[ " $SKIP " == *" $t "* ]]; then skipped+=("$t"); continue; fi
    selected+=("$t")
  done
  say "[valgrind] ${#selected[@]} test(s), $VG_JOBS at a time"
  for t in "${selected[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge $VG_JOBS ]]; do wait -n || true; done
    vg_one "$t" &
  done
  wait
  ran=0
  for t in "${selected[@]}"; do
    log="$LOG_DIR/vg-$t.log"
    read -r status secs <"$LOG_DIR/vg-$t.result" 2>/dev/null || { status=99 secs=0; }
    if [[ $status -ne 0 ]]; then
      cat "$log" >&2
      fail valgrind "test $t: exit status $status (memcheck errors or a failed test, output above)"
    fi
    # Valgrind notes that are not errors (e.g. "Warning: set address range perms") are shown but do not fail.
    grep '^==[0-9]*==' "$log" | sed 's/^/    note: /' || true
    grep -qE '^[1-9][0-9]* passed, 0 failed$' "$log" || { cat "$log" >&2; fail valgrind "test $t did not pass"; }
    printf 'ok   %-50s %4d s\n' "$t" "$secs"
    ran=$((ran + 1))
  done
  [[ ${#skipped[@]} -eq 0 ]] || printf 'skipped under valgrind (too slow; run in the asan stage): %s\n' "${skipped[*]}"
  say "[valgrind] passed: $ran test(s) in $((SECONDS - t0)) s"
fi

say "all stages passed ($STAGES) in $((SECONDS - start_all)) s"
