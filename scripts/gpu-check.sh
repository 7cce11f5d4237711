#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU and nothing else prepared (a CUDA toolkit with nvcc, cmake, a
# C++ compiler; python3 with PyTorch + transformers for the baseline), builds the engine with the CUDA runtime,
# runs the GPU tests and the GPU benchmarks, and prints their tables. Developers and reviewers run exactly this.
#
#   bash scripts/gpu-check.sh            # everything (about 5-8 minutes on an H200)
#   GPU_CHECK_QUICK=1 bash scripts/…     # smaller benchmark shapes
#
# Other switches (environment): GPU_CHECK_NO_CPU=1 (no CPU kernel families), GPU_CHECK_NO_SANITIZER=1,
# GPU_CHECK_SANITIZERS="memcheck racecheck synccheck initcheck" (default memcheck),
# GPU_CHECK_NO_GPU_BENCH=1 (no bench_gpu / transformers baseline), GPU_CHECK_NO_FINETUNE=1 (no fine-tuning stage),
# GPU_CHECK_NO_FINETUNE_BENCH=1 (its tests, not its benchmark), GPU_CHECK_FINETUNE_QUICK=1 (the fine-tuning
# benchmark on a small shape), GPU_CHECK_DEADLINE=<s> (default 570: the fine-tuning benchmark starts no
# measurement after that many seconds of the whole script, and the CPU kernel families, run last, get what is left,
# so that the script fits one 10-minute call).
#
# Node: used from PATH; else unpacked from .gpu-bundle/ (made here by scripts/gpu-bundle.sh); without either, the
# native tests and the benchmark still run and the TypeScript GPU tests are reported as skipped.
# Fixtures: ../shared/fixtures, else LANGNEURONS_FIXTURES, else .gpu-bundle/fixtures.tar.xz.
# Results: printed, and written under $GPU_CHECK_OUT (default $OUT when set, else /tmp/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${GPU_CHECK_OUT:-${OUT:-/tmp/gpu-check}}
deadline=${GPU_CHECK_DEADLINE:-570}  # seconds of the whole script (see the head)
for tool in ${GPU_CHECK_SANITIZERS:-memcheck}; do  # checked before anything is built or written
  case $tool in
    memcheck | racecheck | synccheck | initcheck) ;;
    *) echo "gpu-check: GPU_CHECK_SANITIZERS: unknown tool '$tool' (expected memcheck, racecheck, synccheck or initcheck)" >&2; exit 1 ;;
  esac
done
mkdir -p "$out"
log=$out/gpu-check.log
: > "$log"
t_start=$SECONDS
failures=()
section() { printf '\n=== %s (%d s)\n' "$1" "$((SECONDS - t_start))" | tee -a "$log"; }
run() { "$@" 2>&1 | tee -a "$log"; return "${PIPESTATUS[0]}"; }
note_fail() { failures+=("$1"); echo "FAILED: $1" | tee -a "$log"; }
# A stage that hangs (a kernel that never ends, a deadlock) must not take the whole call's time from the stages
# after it: each runs under a limit well above its expected time on an H100/H200; running past it is a failure.
limited() {
  local limit=$1 name=$2; shift 2
  run timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then echo "$name: did not end within $limit s" | tee -a "$log"; fi
  return $rc
}

section "machine"
run nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || { echo "gpu-check: nvidia-smi failed: no NVIDIA GPU here" | tee -a "$log"; exit 1; }
grep -m1 'model name' /proc/cpuinfo | tee -a "$log"
echo "cpu: $(nproc) cores; vector extensions: $(grep -m1 -o -w -E 'avx2|avx512f|avx512bw|avx512vl|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')" | tee -a "$log"
nvcc --version | tail -1 | tee -a "$log"
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
arch=${LN_CUDA_ARCHITECTURES:-$cap}
jobs=$(nproc)

# ---- Node, node_modules, fixtures ---------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 && [ -f .gpu-bundle/node.tar.xz ]; then
  mkdir -p /tmp/gpu-node/bin && tar -xJf .gpu-bundle/node.tar.xz -C /tmp/gpu-node/bin && export PATH=/tmp/gpu-node/bin:$PATH
fi
if [ ! -d node_modules ] && [ -f .gpu-bundle/node_modules.tar.xz ]; then tar -xJf .gpu-bundle/node_modules.tar.xz -C "$root"; fi
fixtures=${LANGNEURONS_FIXTURES:-$root/../shared/fixtures}
if [ ! -d "$fixtures/models" ] && [ -f .gpu-bundle/fixtures.tar.xz ]; then
  mkdir -p "$root/../shared" && tar -xJf .gpu-bundle/fixtures.tar.xz -C "$root/../shared" && fixtures=$root/../shared/fixtures
fi
have_node=0
command -v node >/dev/null 2>&1 && [ -d node_modules ] && have_node=1
echo "node: $([ $have_node = 1 ] && node --version || echo 'absent: the TypeScript GPU tests will be skipped')" | tee -a "$log"
echo "fixtures: $fixtures" | tee -a "$log"

# ---- build ----------------------------------------------------------------------------------------------------
section "build: the addon with the CUDA runtime (sm_$arch), the GPU tests and the GPU benchmark (build/)"
# One CUDA compile: with Node, the addon build (cmake-js) also makes build/native_gpu_tests and build/bench_gpu;
# without Node, plain cmake makes those two.
if [ $have_node = 1 ]; then
  LANGNEURONS_CUDA=1 LN_CUDA_ARCHITECTURES="$arch" LANGNEURONS_BUILD_PARALLEL=$jobs run node scripts/build-native.mjs
else
  run cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DLN_CUDA=ON -DLN_CUDA_ARCHITECTURES="$arch" \
    -DLN_NATIVE_TESTS=OFF >/dev/null && run cmake --build "$root/build" -j "$jobs" --target native_gpu_tests bench_gpu
fi
if [ -x "$root/build/native_gpu_tests" ] && [ -x "$root/build/bench_gpu" ]; then
  echo "built in $((SECONDS - t_start)) s" | tee -a "$log"
else
  note_fail "build"; echo "gpu-check: the build failed (log: $log)"; exit 1
fi

section "native GPU tests (each kernel against its CPU twin; the model against the fixtures and the CPU engine)"
limited 240 "native GPU tests" "$root/build/native_gpu_tests" --fixtures "$fixtures/models" || note_fail "native GPU tests"
# compute-sanitizer on the kernel tests: memcheck by default; GPU_CHECK_SANITIZERS="memcheck racecheck synccheck
# initcheck" adds the shared-memory race, barrier and uninitialised-read checks (a few minutes more: for a call
# that has the time).
if command -v compute-sanitizer >/dev/null 2>&1 && [ -z "${GPU_CHECK_NO_SANITIZER:-}" ]; then
  rm -f "$out/memcheck.log" "$out/sanitizers.log"  # this script's own, from an earlier run into the same folder
  for tool in ${GPU_CHECK_SANITIZERS:-memcheck}; do
    section "compute-sanitizer $tool of the GPU kernel tests"
    # memcheck's output in memcheck.log, the others' together in sanitizers.log (a device call returns 8 files).
    tool_log=$out/memcheck.log
    [ "$tool" = memcheck ] || tool_log=$out/sanitizers.log
    limited 240 "compute-sanitizer $tool" compute-sanitizer --tool "$tool" --error-exitcode 9 "$root/build/native_gpu_tests" \
      --fixtures "$fixtures/models" --kernels-only > "$out/sanitizer-run.txt" 2>&1
    rc=$?
    cat "$out/sanitizer-run.txt"
    { echo "=== compute-sanitizer $tool (exit $rc)"; cat "$out/sanitizer-run.txt"; } >> "$tool_log"
    # Some GPU machines' sandboxes (gVisor) refuse the sanitizer itself: "Device not supported", then error 999 at
    # the first allocation. That says nothing of the kernels: reported as not run, not as a failure.
    if [ $rc != 0 ] && grep -q "Device not supported" "$out/sanitizer-run.txt"; then
      echo "compute-sanitizer $tool: NOT RUN (the sanitizer does not support this machine's device or sandbox)" | tee -a "$log"
    elif [ $rc != 0 ]; then
      note_fail "compute-sanitizer $tool"
    fi
    rm -f "$out/sanitizer-run.txt"
  done
fi

if [ $have_node = 1 ]; then
  section "the TypeScript GPU tests (the addon with the CUDA runtime, through the API and the commands)"
  [ -d dist ] || run npx tsc -p tsconfig.json || note_fail "tsc"
  run node -e "import('./dist/src/native/addon.js').then(m => console.log('cudaInfo', JSON.stringify(m.loadAddon().cudaInfo())))"
  limited 240 "TypeScript GPU tests" npx vitest run test/gpu-runtime.test.ts test/device.test.ts || note_fail "TypeScript GPU tests"
fi

# ---- benchmarks -------------------------------------------------------------------------------------------
if [ -z "${GPU_CHECK_NO_GPU_BENCH:-}" ]; then
section "benchmark: the engine on the GPU (benchmarks/gpu/bench_gpu)"
quick=()
[ -n "${GPU_CHECK_QUICK:-}" ] && quick=(--quick)
limited 300 "bench_gpu" "$root/build/bench_gpu" "${quick[@]}" --json-out "$out/bench_gpu.json" || note_fail "bench_gpu"

section "baseline: transformers (PyTorch) with hooks, same shape and batch (benchmarks/gpu/hf_baseline.py)"
shape=llama-3.1-8b
[ -n "${GPU_CHECK_QUICK:-}" ] && shape=llama-3.2-1b
PYTHONUNBUFFERED=1 limited 240 "transformers baseline" python3 benchmarks/gpu/hf_baseline.py --shape "$shape" --batch 8 --seq-len 1024 | tee "$out/hf_baseline.txt" \
  || note_fail "transformers baseline"
fi

# ---- fine-tuning on the GPU (issue 13) -----------------------------------------------------------------------
# The native trainer and kernel tests (gpu_train*) ran with native_gpu_tests above; their lines are counted in the
# summary. Here: the TypeScript tests through the binding, the loop and the CLI, then the benchmark.
if [ -z "${GPU_CHECK_NO_FINETUNE:-}" ]; then
  if [ $have_node = 1 ]; then
    section "fine-tuning on the GPU: test/gpu-finetune.test.ts (the CUDA trainer against the CPU trainer, masks, resume) and test/finetune-device.test.ts"
    limited 240 "TypeScript GPU fine-tuning tests" npx vitest run test/gpu-finetune.test.ts test/finetune-device.test.ts | tee "$out/gpu_finetune_tests.txt" \
      || note_fail "TypeScript GPU fine-tuning tests"
    budget=$((deadline - (SECONDS - t_start) - 60))  # a started measurement may run on for about a minute
    if [ -n "${GPU_CHECK_NO_FINETUNE_BENCH:-}" ]; then
      echo "fine-tuning benchmark: skipped (GPU_CHECK_NO_FINETUNE_BENCH)" | tee -a "$log"
    elif [ "$budget" -lt 30 ]; then
      echo "fine-tuning benchmark: skipped (only $budget s left of GPU_CHECK_DEADLINE=$deadline; rerun with GPU_CHECK_NO_GPU_BENCH=1 GPU_CHECK_NO_CPU=1)" | tee -a "$log"
    else
      section "benchmark: fine-tuning on the GPU, every method and the PyTorch baselines (benchmarks/gpu-finetune, budget $budget s)"
      ftquick=()
      { [ -n "${GPU_CHECK_QUICK:-}" ] || [ -n "${GPU_CHECK_FINETUNE_QUICK:-}" ]; } && ftquick=(--quick)
      run node benchmarks/gpu-finetune/run.mjs "${ftquick[@]}" --budget "$budget" --peak-json "$out/bench_gpu.json" \
        --out "$out/gpu_finetune.json" || note_fail "gpu-finetune benchmark"
    fi
  else
    echo "fine-tuning on the GPU: skipped (no Node: the CUDA trainer's native tests ran with native_gpu_tests)" | tee -a "$log"
  fi
fi

# ---- the CPU kernel families of this machine's CPU, last: the GPU work above comes first in the time of one call --
# (builds build-native/ without CUDA; the GEMM benchmark compares with OpenBLAS when libopenblas is installed). In the
# time left of GPU_CHECK_DEADLINE: with the GEMM benchmark from 150 s on, the tests alone from 60 s on. Not finishing
# in that time is reported as not run to the end, not as a failure of the tests.
if [ -z "${GPU_CHECK_NO_CPU:-}" ]; then
  left=$((deadline - (SECONDS - t_start) - 15))
  cpu_opts=()
  [ "$left" -lt 150 ] && cpu_opts=(--no-bench)
  [ "$left" -gt 240 ] && left=240
  if [ "$left" -lt 60 ]; then
    echo "cpu kernel families: not run (only $left s left of GPU_CHECK_DEADLINE; run bash scripts/cpu-kernels-check.sh alone)" | tee -a "$log"
  else
    what="native tests and GEMM benchmark"
    [ ${#cpu_opts[@]} -gt 0 ] && what="native tests (no GEMM benchmark: $left s left)"
    section "$what with every CPU kernel family this CPU supports (scripts/cpu-kernels-check.sh)"
    run timeout "$left" bash scripts/cpu-kernels-check.sh "${cpu_opts[@]}"
    case $? in
      0) ;;
      124) echo "cpu kernel families: not run to the end in the $left s left (not a test failure; run bash scripts/cpu-kernels-check.sh alone)" | tee -a "$log" ;;
      *) note_fail "cpu kernel families" ;;
    esac
  fi
fi

section "summary"
python3 scripts/gpu_check_summary.py "$out/bench_gpu.json" "$out/hf_baseline.txt" "$log" "$out/gpu_finetune.json" \
  "$out/gpu_finetune_tests.txt" | tee -a "$log"

section "done"
if [ ${#failures[@]} -gt 0 ]; then
  echo "gpu-check: FAILED: ${failures[*]} (log: $log)"
  exit 1
fi
echo "gpu-check: all passed in $((SECONDS - t_start)) s (log: $log)"
