# Sourced by the C++ benchmark scripts (benchmarks/{gemm,attention,finetune}/*.sh): compiles the engine sources
# they link exactly as shipped (-O3, portable flags; on x86 each *_avx2.cpp / *_avx512.cpp / *_avx512bf16.cpp with
# its family's flags, as in the root CMakeLists: the kernel family is chosen at run time), in parallel, into $build.
#
#   build_engine_objects <more source paths relative to the repository root>...
# Needs $root, $build and $cxx; sets the arrays `flags` (for the benchmark's own compile) and `objects`.
# Every benchmark links the core (dtype, thread pool with its scratch) and all the CPU kernels (the kernel table,
# kernels/kernel_table.cpp, names every family's functions); list anything else.
build_engine_objects() {
  local x86=0
  case "$("$cxx" -dumpmachine)" in x86_64* | i?86*) x86=1 ;; esac
  local sources=(native/src/core/dtype.cpp native/src/core/thread_pool.cpp native/src/core/scratch.cpp
    native/src/train/gemm_backward.cpp)
  local src
  for src in "$root"/native/src/kernels/*.cpp; do
    src="native/src/kernels/$(basename "$src")"
    if [ "$x86" = 0 ] && [[ "$src" == *_avx2.cpp || "$src" == *_avx512.cpp || "$src" == *_avx512bf16.cpp ]]; then
      continue
    fi
    sources+=("$src")
  done
  for src in "$@"; do
    [[ " ${sources[*]} " == *" $src "* ]] || sources+=("$src")
  done
  flags=(-std=c++17 -O3 -Wall -Wextra -Wno-unused-parameter -I"$root/native/src")
  objects=()
  local pids=() obj extra p
  local avx512=(-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq)
  for src in "${sources[@]}"; do
    obj="$build/$(basename "$src" .cpp).o"
    extra=()
    [[ "$src" == *_avx2.cpp ]] && extra=(-mavx2 -mfma -mf16c)
    [[ "$src" == *_avx512.cpp ]] && extra=("${avx512[@]}")
    [[ "$src" == *_avx512bf16.cpp ]] && extra=("${avx512[@]}" -mavx512bf16)
    "$cxx" "${flags[@]}" "${extra[@]}" -c "$root/$src" -o "$obj" &
    pids+=($!)
    objects+=("$obj")
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
