# Sourced by the C++ benchmark scripts (benchmarks/{gemm,attention,finetune}/*.sh): compiles the engine sources
# they link exactly as shipped (-O3, portable flags, -mavx2 -mfma -mf16c only on *_avx2.cpp: the kernel family is
# chosen at run time, as in the root CMakeLists), in parallel, into $build.
#
#   build_engine_objects <source paths relative to the repository root>...
# Needs $root, $build and $cxx; sets the arrays `flags` (for the benchmark's own compile) and `objects`.
# Every benchmark links the core (dtype, thread pool with its scratch) and the GEMM dispatch; list the rest.
build_engine_objects() {
  local sources=(
    native/src/core/dtype.cpp native/src/core/thread_pool.cpp native/src/core/scratch.cpp
    native/src/kernels/cpu_features.cpp native/src/kernels/gemm.cpp native/src/kernels/gemm_ref.cpp
    native/src/kernels/gemm_plain.cpp native/src/kernels/gemm_avx2.cpp "$@"
  )
  flags=(-std=c++17 -O3 -Wall -Wextra -Wno-unused-parameter -I"$root/native/src")
  objects=()
  local pids=() src obj extra p
  for src in "${sources[@]}"; do
    obj="$build/$(basename "$src" .cpp).o"
    extra=()
    [[ "$src" == *_avx2.cpp ]] && extra=(-mavx2 -mfma -mf16c)
    "$cxx" "${flags[@]}" "${extra[@]}" -c "$root/$src" -o "$obj" &
    pids+=($!)
    objects+=("$obj")
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
