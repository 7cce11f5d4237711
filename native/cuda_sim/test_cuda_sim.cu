// cuda_sim_tests: the CUDA simulator checked on kernels written for it, each with a hand-worked answer, and every
// fault it claims to report provoked once (docs/CUDA-SIM.md). Built and run by scripts/cuda-sim-check.sh.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda/warp_mma.cuh"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

int g_failed = 0;
void expect(bool ok, const char* name, const char* what) {
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name, ok ? "" : ": ", ok ? "" : what);
  g_failed += !ok;
}

template <class T>
T* device_copy(const std::vector<T>& h) {
  T* d = nullptr;
  cudaMalloc(&d, h.size() * sizeof(T));
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T>
std::vector<T> host_copy(const T* d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

// ---- kernels ---------------------------------------------------------------------------------------------------
__global__ void warp_sums(const float* x, float* down, float* butterfly) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float a = x[i], b = x[i];
  for (int o = 16; o > 0; o >>= 1) a += __shfl_down_sync(0xffffffffu, a, o);
  for (int o = 1; o < 32; o <<= 1) b += __shfl_xor_sync(0xffffffffu, b, o);
  if ((threadIdx.x & 31) == 0) down[i / 32] = a;
  butterfly[i] = b;  // every lane holds the warp's sum
}

// out[i] = x[i] + x[i + 1] through shared memory, with or without the barrier between the writes and the reads.
__global__ void neighbour_sum(const int* x, int* out, bool barrier) {
  __shared__ int s[128];
  const int t = threadIdx.x;
  s[t] = x[t];
  if (barrier) __syncthreads();
  out[t] = s[t] + s[(t + 1) % 128];
}

__global__ void split_warp_barriers() {
  if ((threadIdx.x & 31) < 16) __syncwarp();
  else __syncthreads();
}

__global__ void shuffle_after_exit(float* out) {
  if ((threadIdx.x & 31) >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

__global__ void write_index(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = int(threadIdx.x); }

__global__ void big_shared(int* out) {
  extern __shared__ __align__(16) int dyn[];
  dyn[threadIdx.x] = 1;
  out[threadIdx.x] = dyn[threadIdx.x];
}

__global__ void trapping(int* out) {
  if (threadIdx.x == 5) __trap();
  out[threadIdx.x] = 1;
}

// ldmatrix (plain and .trans) of four 8 x 8 matrices m (element (r, c) = 64 m + 8 r + c) in shared memory, the
// lanes' registers written out; then one mma.sync m16n8k16 on fragments built element by element from the PTX
// ISA's layout (g = lane / 4, t = lane % 4), C = 1 everywhere.
__global__ void ldmatrix_and_mma(uint32_t* regs, uint32_t* regs_trans, const uint16_t* a, const uint16_t* b,
                                 float* d) {
  __shared__ uint4 mats_storage[4 * 64 / 8];  // 16-byte aligned rows
  uint16_t* mats = reinterpret_cast<uint16_t*>(mats_storage);
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  for (int i = lane; i < 256; i += 32) mats[i] = uint16_t(i);
  __syncwarp();
  uint32_t r[4];
  ln::cuda::ldmatrix_x4(r, mats + 64 * (lane / 8) + 8 * (lane % 8));  // lanes 8m .. 8m+7: rows of matrix m
  for (int i = 0; i < 4; ++i) regs[lane * 4 + i] = r[i];
  ln::cuda::ldmatrix_x4_trans(r, mats + 64 * (lane / 8) + 8 * (lane % 8));
  for (int i = 0; i < 4; ++i) regs_trans[lane * 4 + i] = r[i];
  auto pair = [](uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); };
  // A row-major 16 x 16, B 16 x 8 given as b[n * 16 + k].
  const uint32_t fa[4] = {pair(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                          pair(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                          pair(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                          pair(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
  const uint32_t b0 = pair(b[g * 16 + 2 * t], b[g * 16 + 2 * t + 1]);
  const uint32_t b1 = pair(b[g * 16 + 2 * t + 8], b[g * 16 + 2 * t + 9]);
  float acc[4] = {1.f, 1.f, 1.f, 1.f};
  ln::cuda::mma_bf16_16816(acc, fa, b0, b1);
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

__global__ void ldmatrix_misaligned(uint32_t* out) {
  __shared__ uint4 storage[9];
  const uint16_t* m = reinterpret_cast<const uint16_t*>(storage);
  uint32_t r[4];
  ln::cuda::ldmatrix_x4(r, m + 9 * (threadIdx.x % 8));  // rows 18 bytes apart: not 16-byte aligned
  out[threadIdx.x] = r[0];
}

__global__ void read_one_past(const float* x, float* out) { out[threadIdx.x] = x[threadIdx.x + 1]; }
__global__ void add_one(float* x) { x[threadIdx.x] += 1.f; }

// ---- tests -----------------------------------------------------------------------------------------------------
void shuffles_sum_warps() {
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i) x[i] = float(i % 7) - 2.f;
  float* dx = device_copy(x);
  float *down = nullptr, *bfly = nullptr;
  cudaMalloc(&down, 4 * sizeof(float));
  cudaMalloc(&bfly, 128 * sizeof(float));
  warp_sums<<<2, 64>>>(dx, down, bfly);
  bool ok = cudaDeviceSynchronize() == cudaSuccess;
  auto d = host_copy(down, 4);
  auto b = host_copy(bfly, 128);
  for (int w = 0; w < 4; ++w) {
    float s = 0;
    for (int l = 0; l < 32; ++l) s += x[w * 32 + l];  // small integers: exact in any order
    ok = ok && d[w] == s;
    for (int l = 0; l < 32; ++l) ok = ok && b[w * 32 + l] == s;
  }
  expect(ok, "shuffles_sum_warps", "warp sums differ from the hand sums");
  cudaFree(dx);
  cudaFree(down);
  cudaFree(bfly);
}

void missing_barrier_shows() {
  std::vector<int> x(128);
  for (int i = 0; i < 128; ++i) x[i] = 1000 + i;
  int* dx = device_copy(x);
  int* out = nullptr;
  cudaMalloc(&out, 128 * sizeof(int));
  neighbour_sum<<<1, 128>>>(dx, out, true);
  auto with = host_copy(out, 128);
  bool ok = true;
  for (int t = 0; t < 128; ++t) ok = ok && with[t] == x[t] + x[(t + 1) % 128];
  expect(ok, "barrier_kernel_correct", "neighbour sums with __syncthreads are wrong");
  // Fresh shared memory so the racy run cannot read the barrier run's values.
  std::vector<int> y(128);
  for (int i = 0; i < 128; ++i) y[i] = 5000 + 3 * i;
  int* dy = device_copy(y);
  neighbour_sum<<<1, 128>>>(dy, out, false);
  auto without = host_copy(out, 128);
  int wrong = 0;
  for (int t = 0; t < 128; ++t) wrong += without[t] != y[t] + y[(t + 1) % 128];
  expect(wrong > 0, "missing_barrier_reads_stale_shared_memory", "the race went unnoticed");
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(out);
}

void faults_are_reported() {
  split_warp_barriers<<<1, 64>>>();
  expect(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "divergent_barriers_are_a_fault", "no fault");
  expect(cudaDeviceSynchronize() == cudaSuccess, "a_fault_is_reported_once", "still failing");
  float* out = nullptr;
  cudaMalloc(&out, 64 * sizeof(float));
  shuffle_after_exit<<<1, 64>>>(out);
  expect(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "shuffle_with_exited_lanes_is_a_fault", "no fault");
  int* iout = nullptr;
  cudaMalloc(&iout, 64 * sizeof(int));
  trapping<<<1, 64>>>(iout);
  expect(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "trap_is_a_fault", "no fault");
  std::vector<int> host(64, -7);
  write_index<<<1, 64>>>(host.data());
  const bool refused = cudaDeviceSynchronize() == cudaErrorLaunchFailure && host[3] == -7;
  expect(refused, "host_pointer_argument_is_a_fault", "a host pointer reached a kernel");
  cudaFree(out);
  cudaFree(iout);
}

void launch_configurations_checked() {
  int* out = nullptr;
  cudaMalloc(&out, 1024 * sizeof(int));
  write_index<<<0, 64>>>(out);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "empty_grid_is_an_error", "launched");
  write_index<<<1, 1025>>>(out);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "over_1024_threads_is_an_error", "launched");
  big_shared<<<1, 32, 64 * 1024>>>(out);
  expect(cudaGetLastError() == cudaErrorInvalidValue, "smem_over_48k_needs_the_opt_in", "launched");
  expect(cudaFuncSetAttribute(big_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess,
         "smem_opt_in_accepted", "refused");
  big_shared<<<1, 32, 64 * 1024>>>(out);
  const bool ran = cudaGetLastError() == cudaSuccess && host_copy(out, 1)[0] == 1;
  expect(ran, "smem_after_opt_in_launches", "refused");
  expect(cudaFuncSetAttribute(big_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 240 * 1024) ==
             cudaErrorInvalidValue,
         "smem_over_the_h200_limit_refused", "accepted");
  cudaGetLastError();
  cudaFree(out);
}

void memory_checked() {
  float* d = nullptr;
  cudaMalloc(&d, 16 * sizeof(float));
  expect(std::isnan(host_copy(d, 16)[7]), "fresh_device_memory_is_poisoned", "reads as a number");
  std::vector<float> h(16, 1.f);
  expect(cudaMemcpy(h.data(), h.data(), 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
         "memcpy_to_host_memory_as_device_refused", "copied");
  expect(cudaMemcpy(d, h.data(), 65, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
         "memcpy_past_the_allocation_refused", "copied");
  cudaGetLastError();
  cudaFree(d);
}

// A cudaMemset on the legacy default stream is held back until something waits for that stream (docs/CUDA-SIM.md):
// a copy on a non-blocking stream queued after it, without that wait, is overwritten by the zeros once the legacy
// stream is synchronised, as on a GPU where the copy ran first; with the wait, the copy's values stay.
void legacy_memset_is_not_ordered_with_non_blocking_streams() {
  const std::vector<float> ones(8, 1.f);
  float* d = device_copy(ones);
  cudaStream_t s = nullptr;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  const std::vector<float> twos(8, 2.f);
  cudaMemset(d, 0, 8 * sizeof(float));
  std::vector<float> before(8);
  cudaMemcpyAsync(before.data(), d, 8 * sizeof(float), cudaMemcpyDeviceToHost, s);
  cudaStreamSynchronize(s);
  cudaMemcpyAsync(d, twos.data(), 8 * sizeof(float), cudaMemcpyHostToDevice, s);
  cudaStreamSynchronize(s);
  cudaStreamSynchronize(nullptr);  // the legacy stream's memset has run
  expect(before == ones && host_copy(d, 8) == std::vector<float>(8, 0.f), "legacy_memset_not_ordered_with_non_blocking_stream",
         "the memset ran before work on a non-blocking stream that did not wait for it");
  cudaMemset(d, 0, 8 * sizeof(float));
  cudaStreamSynchronize(nullptr);  // waited for: ordered before what follows on any stream
  cudaMemcpyAsync(d, twos.data(), 8 * sizeof(float), cudaMemcpyHostToDevice, s);
  cudaStreamSynchronize(s);
  cudaDeviceSynchronize();
  expect(host_copy(d, 8) == twos, "legacy_memset_waited_for_is_ordered", "the copy after the wait was overwritten");
  cudaStreamDestroy(s);
  cudaFree(d);
}

// Streams (docs/CUDA-SIM.md): work is queued and runs when the host waits for it, the latest a GPU may run it. So a
// result read without the wait is not there (a copy's destination reads as 0xFF bytes), an event's wait runs the
// work before its record and not the work after it, two non-blocking streams are not ordered without a wait, and
// a copy from pinned memory reads it when it runs while one from pageable memory has staged it at the call.
void work_runs_when_waited_for() {
  const std::vector<float> ones(8, 1.f);
  float* d = device_copy(ones);
  float* pinned = nullptr;
  cudaMallocHost(&pinned, 8 * sizeof(float));
  cudaStream_t s = nullptr, t = nullptr;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking);

  add_one<<<1, 8, 0, s>>>(d);
  cudaMemcpyAsync(pinned, d, 8 * sizeof(float), cudaMemcpyDeviceToHost, s);
  const bool unwritten = std::isnan(pinned[3]);
  cudaStreamSynchronize(s);
  expect(unwritten && pinned[3] == 2.f, "copy_to_pinned_read_before_the_wait_is_not_there",
         "the copy's result was there before the stream was waited for, or not after");

  cudaEvent_t e = nullptr;
  cudaEventCreate(&e);
  add_one<<<1, 8, 0, s>>>(d);  // 3
  cudaEventRecord(e, s);
  add_one<<<1, 8, 0, s>>>(d);  // 4, after the record
  cudaEventSynchronize(e);
  const float at_event = host_copy(d, 8)[5];
  cudaStreamSynchronize(s);
  expect(at_event == 3.f && host_copy(d, 8)[5] == 4.f, "event_wait_runs_the_work_before_its_record_only",
         "the event's wait ran more or less than the work queued before it");

  add_one<<<1, 8, 0, s>>>(d);  // 5 on s, not waited for
  cudaMemcpyAsync(pinned, d, 8 * sizeof(float), cudaMemcpyDeviceToHost, t);
  cudaStreamSynchronize(t);
  const float seen_by_t = pinned[0];
  cudaStreamSynchronize(s);
  expect(seen_by_t == 4.f && host_copy(d, 8)[0] == 5.f, "streams_are_not_ordered_without_a_wait",
         "a copy on another stream saw a launch it did not wait for");

  for (int i = 0; i < 8; ++i) pinned[i] = 7.f;
  std::vector<float> pageable(8, 7.f);
  float* d2 = device_copy(ones);
  cudaMemcpyAsync(d, pinned, 8 * sizeof(float), cudaMemcpyHostToDevice, s);
  cudaMemcpyAsync(d2, pageable.data(), 8 * sizeof(float), cudaMemcpyHostToDevice, s);
  pinned[1] = 9.f;  // before the copy ran: a GPU may copy either value, the simulator the later one
  pageable[1] = 9.f;  // staged at the call: the copy has 7
  cudaStreamSynchronize(s);
  expect(host_copy(d, 8)[1] == 9.f && host_copy(d2, 8)[1] == 7.f, "pinned_source_read_when_the_copy_runs",
         "the pinned source was read at the call, or the pageable one when the copy ran");

  cudaEvent_t e2 = nullptr;
  cudaEventCreate(&e2);
  cudaEventRecord(e, s);
  add_one<<<1, 8, 0, s>>>(d);
  cudaEventRecord(e2, s);
  float ms = 0;
  const bool not_ready = cudaEventElapsedTime(&ms, e, e2) == cudaErrorNotReady;
  cudaGetLastError();
  cudaEventSynchronize(e2);
  expect(not_ready && cudaEventElapsedTime(&ms, e, e2) == cudaSuccess, "elapsed_time_needs_both_events_run",
         "events not yet run were timed, or run ones refused");

  cudaEventDestroy(e);
  cudaEventDestroy(e2);
  cudaStreamDestroy(s);
  cudaStreamDestroy(t);
  cudaFreeHost(pinned);
  cudaFree(d);
  cudaFree(d2);
}

void ldmatrix_and_mma_follow_the_ptx_layouts() {
  std::vector<uint16_t> a(256), b(128);
  for (int i = 0; i < 256; ++i) a[size_t(i)] = __bfloat16_as_ushort(__float2bfloat16_rn(float((i * 7) % 11) - 5.f));
  for (int i = 0; i < 128; ++i) b[size_t(i)] = __bfloat16_as_ushort(__float2bfloat16_rn(float((i * 5) % 9) - 4.f));
  uint16_t* da = device_copy(a);
  uint16_t* db = device_copy(b);
  uint32_t *dr = nullptr, *drt = nullptr;
  float* dd = nullptr;
  cudaMalloc(&dr, 128 * sizeof(uint32_t));
  cudaMalloc(&drt, 128 * sizeof(uint32_t));
  cudaMalloc(&dd, 128 * sizeof(float));
  ldmatrix_and_mma<<<1, 32>>>(dr, drt, da, db, dd);
  bool ok = cudaDeviceSynchronize() == cudaSuccess;
  const auto r = host_copy(dr, 128), rt = host_copy(drt, 128);
  const auto d = host_copy(dd, 128);
  bool lm = ok, lmt = ok, mm = ok;
  for (int lane = 0; lane < 32; ++lane)
    for (int m = 0; m < 4; ++m) {
      const int g = lane / 4, t = lane % 4;
      const uint32_t want = uint32_t(64 * m + 8 * g + 2 * t) | (uint32_t(64 * m + 8 * g + 2 * t + 1) << 16);
      const uint32_t want_t = uint32_t(64 * m + 8 * (2 * t) + g) | (uint32_t(64 * m + 8 * (2 * t + 1) + g) << 16);
      lm = lm && r[size_t(lane * 4 + m)] == want;
      lmt = lmt && rt[size_t(lane * 4 + m)] == want_t;
    }
  auto bf = [](uint16_t x) { return __bfloat162float(__ushort_as_bfloat16(x)); };
  for (int row = 0; row < 16; ++row)
    for (int n = 0; n < 8; ++n) {
      double s = 1;
      for (int k = 0; k < 16; ++k) s += double(bf(a[size_t(row * 16 + k)])) * double(bf(b[size_t(n * 16 + k)]));
      mm = mm && d[size_t(row * 8 + n)] == float(s);
    }
  expect(lm, "ldmatrix_x4_registers_as_documented", "differ");
  expect(lmt, "ldmatrix_x4_trans_registers_as_documented", "differ");
  expect(mm, "mma_m16n8k16_matches_hand_sum", "differs");
  uint32_t* out = nullptr;
  cudaMalloc(&out, 8 * sizeof(uint32_t));
  ldmatrix_misaligned<<<1, 32>>>(out);
  expect(cudaDeviceSynchronize() != cudaSuccess, "ldmatrix_misaligned_row_reported", "not reported");
  cudaGetLastError();
  cudaFree(out);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dr);
  cudaFree(drt);
  cudaFree(dd);
}

}  // namespace

// Reads one float past a 32-float allocation: under --asan (scripts/cuda-sim-check.sh) AddressSanitizer must stop
// the process with a heap-buffer-overflow report; the script checks that it does.
int read_past_allocation() {
  std::vector<float> h(32, 1.f);
  float* x = device_copy(h);
  float* out = nullptr;
  cudaMalloc(&out, 32 * sizeof(float));
  read_one_past<<<1, 32>>>(x, out);
  std::printf("read_past_allocation: not stopped (%d)\n", int(cudaDeviceSynchronize()));
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--read-past-allocation") == 0) return read_past_allocation();
  std::printf("cuda_sim_tests: the CUDA simulator (CPU), not a GPU; expected faults print ln_sim lines below\n");
  shuffles_sum_warps();
  missing_barrier_shows();
  faults_are_reported();
  launch_configurations_checked();
  memory_checked();
  const char* async = std::getenv("LN_SIM_ASYNC");
  if (async && std::strcmp(async, "0") == 0) {
    std::printf("skip streams: LN_SIM_ASYNC=0 runs all work when it is called\n");
  } else {
    legacy_memset_is_not_ordered_with_non_blocking_streams();
    work_runs_when_waited_for();
  }
  ldmatrix_and_mma_follow_the_ptx_layouts();
  std::printf("cuda_sim_tests: %s\n", g_failed ? "FAILED" : "all passed");
  return g_failed ? 1 : 0;
}
