// The CUDA simulator's stand-in for <cuda_runtime.h> (native/cuda_sim, docs/CUDA-SIM.md): the part of the CUDA
// runtime API and of the device built-ins that native/src/cuda uses, implemented on the CPU so that the CUDA
// runtime's own kernels and host code, compiled as C++, run the GPU tests on a machine without a GPU.
// Device memory is host memory; a kernel launch runs its blocks one after another, the threads of a block as
// fibers that switch at __syncthreads / __syncwarp / shuffles (sim_runtime.cpp). Nothing here is fast and
// nothing here is a GPU: it checks indexing, synchronisation, launch configurations and host logic.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers ------------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static  // blocks run one at a time, so a function-local static is the block's shared memory
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __constant__ static

// ---- vector types ----------------------------------------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

// ---- runtime API -----------------------------------------------------------------------------------------------
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute : int { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int warpSize;
  int maxThreadsPerBlock;
  int major, minor;
  int multiProcessorCount;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaDeviceSynchronize();

cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
template <class T>
cudaError_t cudaMallocHost(T** p, size_t bytes) { return cudaMallocHost(reinterpret_cast<void**>(p), bytes); }
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
using cudaHostFn_t = void (*)(void*);
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* data);

namespace ln_sim {
cudaError_t func_set_attribute(const void* func, cudaFuncAttribute attr, int value);
}
template <class F>
cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return ln_sim::func_set_attribute(reinterpret_cast<const void*>(func), attr, value);
}

// ---- device built-ins ------------------------------------------------------------------------------------------
namespace ln_sim {
extern thread_local uint3 t_thread_idx, t_block_idx;
extern thread_local dim3 t_block_dim, t_grid_dim;

void sync_block();
void sync_warp(unsigned mask);
// Exchange of one lane's value within its warp: every lane of `mask` deposits 8 bytes, then reads lane `src`'s.
uint64_t warp_exchange(unsigned mask, uint64_t mine, int src_lane);
// The warp-collective instructions beneath them: every lane of the full warp deposits n <= kSlotWords words, then
// reads any lane's (lane l's at [l * kSlotWords, + n) of the returned array) until warp_gather_end().
constexpr int kSlotWords = 8;
const uint64_t* warp_gather_begin(const uint64_t* mine, int n, const char* what);
void warp_gather_end();
// PTX ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 and mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32,
// with each lane's registers as the PTX ISA lays them out (sim_mma.cpp); used through native/src/cuda/warp_mma.cuh.
void ldmatrix_x4(uint32_t r[4], const void* row, bool trans);
void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
unsigned char* dynamic_shared(size_t align);
// Not [[noreturn]] although it never returns: under ASan a noreturn call first unpoisons "the" stack, which
// is not the fiber's (the simulator switches stacks itself).
void trap(const char* why);
int lane_id();

template <class T>
T shuffle(unsigned mask, T v, int src_lane) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a value of <= 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(mask, bits, src_lane);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
}  // namespace ln_sim

#define threadIdx (::ln_sim::t_thread_idx)
#define blockIdx (::ln_sim::t_block_idx)
#define blockDim (::ln_sim::t_block_dim)
#define gridDim (::ln_sim::t_grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { ln_sim::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ln_sim::sync_warp(mask); }
inline void __trap() { ln_sim::trap("__trap()"); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = ln_sim::lane_id();
  return ln_sim::shuffle(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ln_sim::lane_id();
  const int src = lane ^ lane_mask;
  return ln_sim::shuffle(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ln_sim::lane_id();
  const int src = lane + int(delta);
  return ln_sim::shuffle(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ln_sim::lane_id();
  const int src = lane - int(delta);
  return ln_sim::shuffle(mask, v, src >= (lane & ~(width - 1)) ? src : lane);
}

// Atomics: the threads of a launch never run at the same time, so a plain read-modify-write is atomic.
namespace ln_sim {
template <class T, class F>
T read_modify_write(T* p, F f) {
  const T old = *p;
  *p = f(old);
  return old;
}
}  // namespace ln_sim
template <class T>
T atomicAdd(T* p, T v) { return ln_sim::read_modify_write(p, [&](T o) { return T(o + v); }); }
template <class T>
T atomicMax(T* p, T v) { return ln_sim::read_modify_write(p, [&](T o) { return o < v ? v : o; }); }
template <class T>
T atomicMin(T* p, T v) { return ln_sim::read_modify_write(p, [&](T o) { return v < o ? v : o; }); }
template <class T>
T atomicExch(T* p, T v) { return ln_sim::read_modify_write(p, [&](T) { return v; }); }
template <class T>
T atomicCAS(T* p, T compare, T v) { return ln_sim::read_modify_write(p, [&](T o) { return o == compare ? v : o; }); }

// CUDA's global min / max of integers and floats (math_functions.hpp overloads, mixed types to the common type).
template <class A, class B>
std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B>
std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}

// Correctly rounded float intrinsics: the simulator is built with -ffp-contract=off, so plain operators are.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __frcp_rn(float a) { return 1.f / a; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
template <class T>
T __ldg(const T* p) { return *p; }

// ---- kernel launch ---------------------------------------------------------------------------------------------
// `k<<<grid, block, smem, stream>>>(args)` is rewritten (rewrite_cu.pl) into
// `::ln_sim::launch("k", ::ln_sim::LaunchConfig(grid, block, smem, stream), k, args)`.
namespace ln_sim {
struct LaunchConfig {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), smem(s), stream(st) {}
};

// A type-erased per-thread body of a launch; it owns its context (the kernel's parameters) until destroy.
struct ThreadBody {
  void* ctx;
  void (*run)(void*);
  void (*destroy)(void*);
};
// Checks the launch configuration at once (an error shows in cudaGetLastError, as on a GPU) and queues the
// launch on its stream (sim_runtime.cpp, "Streams"); takes ownership of body.
void submit_kernel(const char* name, const LaunchConfig& cfg, const void* kernel, ThreadBody body);
// A pointer argument must point into device memory or pinned host memory (or be null); otherwise the launch
// faults, as a real kernel would on its first access to host memory.
void check_pointer_argument(const char* kernel, int index, const void* p);

template <class T>
void check_argument(const char* kernel, int index, const T& v) {
  if constexpr (std::is_pointer<T>::value && !std::is_function<std::remove_pointer_t<T>>::value)
    check_pointer_argument(kernel, index, reinterpret_cast<const void*>(v));
}
template <class Tuple, size_t... I>
void check_arguments(const char* kernel, const Tuple& t, std::index_sequence<I...>) {
  (void)kernel;  // unused when the kernel has no parameters
  (void)t;
  (check_argument(kernel, int(I), std::get<I>(t)), ...);
}

template <class... P, class... A>
void launch(const char* name, const LaunchConfig& cfg, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with a different number of arguments");
  // Kernel parameters are copied into the launch when it is made (a launch may run later, from its stream's
  // queue), then into each thread (a thread may change its copy).
  using Params = std::tuple<std::decay_t<P>...>;
  struct Ctx {
    void (*kernel)(P...);
    Params params;
  };
  Ctx* ctx = new Ctx{kernel, Params(std::forward<A>(args)...)};
  check_arguments(name, ctx->params, std::index_sequence_for<P...>{});
  ThreadBody body{ctx,
                  [](void* c) {
                    Ctx& x = *static_cast<Ctx*>(c);
                    Params mine = x.params;
                    std::apply(x.kernel, mine);
                  },
                  [](void* c) { delete static_cast<Ctx*>(c); }};
  submit_kernel(name, cfg, reinterpret_cast<const void*>(kernel), body);
}

template <class T>
T* dynamic_shared_as() { return reinterpret_cast<T*>(dynamic_shared(alignof(T) < 16 ? 16 : alignof(T))); }
}  // namespace ln_sim
