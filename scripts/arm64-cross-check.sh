#!/usr/bin/env bash
# Cross-builds the native engine and its test binary for arm64 (aarch64) and runs the tests under qemu-user: the
# proof that a non-x86 build works with the plain kernels alone (the x86 kernel sources are left out by
# CMakeLists.txt there, and the tests name the x86 families as skipped). Used by CI (.ci/run).
#
#   scripts/arm64-cross-check.sh [--build-only]
# Installs g++-aarch64-linux-gnu and qemu-user with apt when they are missing (as root). BUILD_DIR defaults to
# build-arm64.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build-arm64}"
run_tests=1
[ "${1:-}" = "--build-only" ] && run_tests=0

need=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
[ "$run_tests" = 1 ] && { command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user); }
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "arm64-cross-check.sh: missing ${need[*]} (install them with apt, as root)" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

mkdir -p "$build"
cat >"$build/toolchain.cmake" <<'TOOLCHAIN'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
TOOLCHAIN
cmake -S "$root" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$build/toolchain.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DLN_NATIVE_TESTS=ON -DLN_CUDA=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target native_tests
file "$build/native_tests" 2>/dev/null || true
if [ "$run_tests" = 1 ]; then
  # From the repository root, as npm run test:native does (the fixtures are found relative to it).
  cd "$root"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/native_tests"
fi
