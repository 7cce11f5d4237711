#!/usr/bin/env bash
# The engine's profiling speed on the other families' seed-paper models, each beside Hugging Face transformers doing
# the same job (benchmarks/gpu/hf_baseline.py: forward hooks collecting the same per-neuron counts): Qwen2.5-7B,
# Qwen3-8B, Gemma-2-9B (head_dim 256, soft caps, windows) and Aya Expanse 8B (Cohere: LayerNorm, parallel block).
# scripts/gpu-check.sh measures Llama-3.1-8B, the issue's shape; run this after it on the same machine (it uses its
# build/bench_gpu, and builds that alone when it is missing):
#
#   bash scripts/gpu-bench-families.sh [--layers N] [--budget S] [shape ...]   # default: the four above, 8 layers each
#
# Each shape runs with N decoder layers in both (random bf16 weights, no LM head, batches of 8 x 1024 tokens):
# tokens/s, MFU and the ratio to transformers are per-layer figures, which the layer count changes little, and 8
# layers keep the four pairs within about three minutes. --budget S: no shape is started after S - 60 seconds (what
# is left of a device lease). Results: printed, and under $OUT or /tmp/gpu-bench-families.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
layers=8
budget=0
shapes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) layers=${2:-}; shift 2 ;;
    --budget) budget=${2:-}; shift 2 ;;
    --*) echo "gpu-bench-families: unknown option $1" >&2; exit 1 ;;
    *) shapes+=("$1"); shift ;;
  esac
done
[[ "$layers" =~ ^[1-9][0-9]*$ ]] || { echo "gpu-bench-families: --layers takes a positive whole number" >&2; exit 1; }
[[ "$budget" =~ ^[0-9]+$ ]] || { echo "gpu-bench-families: --budget takes a whole number of seconds" >&2; exit 1; }
[ ${#shapes[@]} -gt 0 ] || shapes=(qwen2.5-7b qwen3-8b gemma-2-9b aya-expanse-8b)
out=${GPU_BENCH_OUT:-${OUT:-/tmp/gpu-bench-families}}
mkdir -p "$out"

if [ ! -x build/bench_gpu ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  echo "=== build/bench_gpu is missing: building it alone (sm_${LN_CUDA_ARCHITECTURES:-$cap})"
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DLN_CUDA=ON \
    -DLN_CUDA_ARCHITECTURES="${LN_CUDA_ARCHITECTURES:-$cap}" -DLN_NATIVE_TESTS=OFF >/dev/null &&
    cmake --build "$root/build" -j "$(nproc)" --target bench_gpu || { echo "gpu-bench-families: build failed" >&2; exit 1; }
fi

failures=()
ran=()
for s in "${shapes[@]}"; do
  if [ "$budget" -gt 0 ] && [ $((SECONDS + 60)) -gt "$budget" ]; then
    echo "=== $s: not started (${SECONDS} s of the --budget of $budget s used)"
    continue
  fi
  ran+=("$s")
  rm -f "$out/bench_$s.json" "$out/hf_$s.txt"  # this script's own files of an earlier run: never summarised as this one's
  echo
  echo "=== $s, $layers layers: the engine (bench_gpu --shape $s)"
  timeout 180 build/bench_gpu --shape "$s" --layers "$layers" --batches 8x1024 --decode-steps 8 \
    --json-out "$out/bench_$s.json" || failures+=("bench_gpu $s")
  echo "=== $s, $layers layers: transformers with hooks (hf_baseline.py --shape $s)"
  PYTHONUNBUFFERED=1 timeout 180 python3 benchmarks/gpu/hf_baseline.py --shape "$s" --layers "$layers" --batch 8 \
    --seq-len 1024 | tee "$out/hf_$s.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || failures+=("transformers $s")
done

echo
echo "=== summary: one table a shape (the issue's targets are judged on Llama-3.1-8B only: scripts/gpu-check.sh)"
for s in "${ran[@]}"; do
  echo
  python3 scripts/gpu_check_summary.py "$out/bench_$s.json" "$out/hf_$s.txt" "" "" ""
done
if [ ${#failures[@]} -gt 0 ]; then
  echo "gpu-bench-families: FAILED: ${failures[*]}"
  exit 1
fi
echo "gpu-bench-families: all ran"
