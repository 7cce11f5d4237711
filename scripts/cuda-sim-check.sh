#!/usr/bin/env bash
# The CUDA runtime checked on the CPU (docs/CUDA-SIM.md): builds native/src/cuda with the host compiler against the
# CUDA simulator (native/cuda_sim), with the addon, into build-sim/ (scripts/build-native.mjs --cuda-sim), then runs
#   1. the simulator's own tests and the cuBLASLt stand-in's (alone and under the runtime's Gemm);
#   2. every GPU test (native_gpu_tests: kernels, whole models, the trainer) with the threads of each block run in
#      order, then in reverse order (a missing barrier reads stale shared memory in at least one of the two); the
#      first run queues each stream's work until the host waits for it, the second runs it when called;
#   3. bench_gpu --tiny (every code path of the GPU benchmark, its JSON) on each family's shape, and
#      scripts/gpu_check_summary.py on it;
#   4. the TypeScript GPU tests of the runtime and the commands (test/gpu-runtime.test.ts) on the simulator addon;
#   with --finetune-ts also test/gpu-finetune.test.ts and test/bench-gpu-finetune.test.ts (about 15 minutes more);
#   with --asan native_gpu_tests again built with AddressSanitizer + UBSan (build-sim-asan/), which catches a kernel
#   that reads or writes past a device allocation (about 8 minutes more);
#   with --quick (CI) the reverse-order run covers the kernel tests only.
# None of this is a GPU run: timing, real tensor-core rounding, real cuBLASLt and races between blocks are
# checked by scripts/gpu-check.sh on a GPU machine. Exit status 0 when every stage passed.
#   bash scripts/cuda-sim-check.sh [--quick] [--finetune-ts] [--asan] [native test filter]
set -uo pipefail
cd "$(dirname "$0")/.."
asan=0 quick=0 finetune_ts=0
filter=()
for a in "$@"; do
  case "$a" in
    --asan) asan=1 ;;
    --quick) quick=1 ;;
    --finetune-ts) finetune_ts=1 ;;
    --*) echo "cuda-sim-check: unknown option $a" >&2; exit 1 ;;
    *) filter+=("$a") ;;
  esac
done
jobs=${LANGNEURONS_BUILD_PARALLEL:-$(nproc)}
fixtures=${LANGNEURONS_FIXTURES:-../shared/fixtures/models}
failures=()
t0=$SECONDS
stage() { printf '\n=== %s (%d s)\n' "$1" "$((SECONDS - t0))"; }
check() {
  local name=$1
  shift
  "$@" || failures+=("$name")
}

build_asan() {  # build_asan <dir> <cmake options...>: the native tests alone (no addon)
  local dir=$1
  shift
  mkdir -p "$dir"
  cmake -S . -B "$dir" -DLN_CUDA=OFF -DLN_CUDA_SIM=ON "$@" > "$dir/configure.log" 2>&1 \
    || { cat "$dir/configure.log"; echo "cuda-sim-check: cmake configure of $dir failed" >&2; exit 1; }
  cmake --build "$dir" -j "$jobs" --target native_gpu_tests cuda_sim_tests cublasLt_sim > "$dir/build.log" 2>&1 \
    || { tail -50 "$dir/build.log"; echo "cuda-sim-check: build of $dir failed (full log: $dir/build.log)" >&2; exit 1; }
}

run_all() {  # run_all <dir> <label>
  local dir=$1 label=$2
  export LANGNEURONS_CUBLASLT=$PWD/$dir/libcublasLt_sim.so LANGNEURONS_SIM_CUBLASLT_QUIET=1
  stage "$label: the simulator's own tests"
  check "$label cuda_sim_tests" "$dir/cuda_sim_tests"
  check "$label cuda_sim_tests (reverse order)" env LN_SIM_ORDER=reverse "$dir/cuda_sim_tests"
  stage "$label: native_gpu_tests, threads in order"
  check "$label native_gpu_tests" "$dir/native_gpu_tests" --fixtures "$fixtures" "${filter[@]}"
  # The two runs also take the two extremes of when a GPU may run queued work (docs/CUDA-SIM.md, "Streams"): in
  # order, when the host waits for it (the latest); in reverse, when it is queued (LN_SIM_ASYNC=0, the earliest).
  stage "$label: native_gpu_tests, threads and blocks in reverse order, work run when queued"
  local only=()
  [ "$quick" = 1 ] && only=(--kernels-only)
  check "$label native_gpu_tests (reverse)" env LN_SIM_ORDER=reverse LN_SIM_ASYNC=0 "$dir/native_gpu_tests" \
    --fixtures "$fixtures" "${only[@]}" "${filter[@]}"
}

stage "build (build-sim/: the addon and the GPU tests, the CUDA sources compiled for the simulator)"
mkdir -p build-sim
LANGNEURONS_BUILD_PARALLEL=$jobs node scripts/build-native.mjs --cuda-sim > build-sim/build.log 2>&1 \
  || { tail -50 build-sim/build.log; echo "cuda-sim-check: build failed (full log: build-sim/build.log)" >&2; exit 1; }
stage "the cuBLASLt stand-in"
check "test_fake_cublaslt" build-sim/test_fake_cublaslt build-sim/libcublasLt_sim.so
check "test_gemm_on_fake_cublaslt" env LANGNEURONS_CUBLASLT=$PWD/build-sim/libcublasLt_sim.so \
  LANGNEURONS_SIM_CUBLASLT_QUIET=1 build-sim/test_gemm_on_fake_cublaslt
run_all build-sim sim

stage "sim: bench_gpu --tiny (every code path of the GPU benchmark, on each family's shape; its times mean nothing) and the gpu-check summary"
bench_summary() {  # bench_summary <shape>
  local doc=build-sim/bench_gpu_tiny_$1
  LANGNEURONS_CUBLASLT=$PWD/build-sim/libcublasLt_sim.so LANGNEURONS_SIM_CUBLASLT_QUIET=1 \
    build-sim/bench_gpu --tiny --shape "$1" --json-out "$doc.json" || return 1
  python3 scripts/gpu_check_summary.py "$doc.json" "" "" "" "" | tee "$doc.txt"
  grep -q '^profiling MFU' "$doc.txt" && grep -q '^largest steps' "$doc.txt" && grep -q '^decode batch 32' "$doc.txt" && grep -q "^engine benchmark .*$1" "$doc.txt"
}
for shape in llama-3.1-8b qwen2.5-7b qwen3-8b gemma-2-9b aya-expanse-8b; do
  check "sim: bench_gpu --tiny --shape $shape and its summary" bench_summary "$shape"
done

stage "sim: the TypeScript GPU tests on the simulator addon"
ts_tests=(test/gpu-runtime.test.ts)
[ "$finetune_ts" = 1 ] && ts_tests+=(test/gpu-finetune.test.ts test/bench-gpu-finetune.test.ts)
[ -d dist ] || npm run build:ts > /dev/null
check "sim: ${ts_tests[*]}" env LANGNEURONS_ADDON="$PWD/build-sim/Release/langneurons.node" \
  LANGNEURONS_CUBLASLT="$PWD/build-sim/libcublasLt_sim.so" LANGNEURONS_SIM_CUBLASLT_QUIET=1 \
  npx vitest run "${ts_tests[@]}"

if [ "$asan" = 1 ]; then
  stage "build (build-sim-asan/, with ASan + UBSan)"
  build_asan build-sim-asan -DCMAKE_BUILD_TYPE=Debug -DLN_SANITIZE=ON
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  stage "sim+asan: a kernel reading past its allocation is stopped"
  if build-sim-asan/cuda_sim_tests --read-past-allocation > build-sim-asan/oob.log 2>&1 \
    || ! grep -q 'heap-buffer-overflow' build-sim-asan/oob.log; then
    cat build-sim-asan/oob.log
    failures+=("sim+asan: the out-of-bounds read was not reported")
  else
    echo "ok   read one past a device allocation: $(grep -m1 -o 'heap-buffer-overflow on address [0-9a-fx]*' build-sim-asan/oob.log)"
  fi
  run_all build-sim-asan "sim+asan"
fi

stage "done"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'cuda-sim-check: FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "cuda-sim-check: every stage passed (the CUDA simulator on the CPU, not a GPU)"
