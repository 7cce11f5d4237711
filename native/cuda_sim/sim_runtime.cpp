// The CUDA simulator's runtime (native/cuda_sim/include/cuda_runtime.h, docs/CUDA-SIM.md).
//
// Kernels: the blocks of a launch run one after another on the thread that waits for it; the threads of a block are
// fibers (ucontext) that run until they reach a barrier (__syncthreads, __syncwarp, a shuffle, ldmatrix, mma.sync), and
// the scheduler releases a barrier once every live thread it waits for has arrived. So a block-wide or warp-wide
// exchange sees what the other threads wrote before their barrier, and a kernel that reads shared data without
// the barrier in between reads whatever an earlier-scheduled thread left: LN_SIM_ORDER=reverse runs threads and
// blocks in reverse order to expose such races. Faults are reported with the kernel, block and thread:
//   - a barrier that can never be released (divergent __syncthreads, a shuffle waiting for an exited lane),
//   - __trap(), a launch configuration the hardware refuses (empty grid, > 1024 threads, dynamic shared memory
//     above 48 KiB without the opt-in or above the H100/H200 opt-in limit),
//   - a kernel pointer argument that is neither device memory nor pinned host memory,
//   - a memory fault (SIGSEGV) while a kernel runs.
// Device memory is host memory from cudaMalloc, filled with 0xFF bytes (NaN floats, -1 integers) so that reading
// what nobody wrote shows; cudaMemcpy checks that its pointers are on the sides its kind says.
// Streams: launches, copies, memsets, event records and host functions are queued on their stream and run at the
// latest moment a GPU may run them, when the host waits for them (see "Streams" below).
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "sim_stream_abi.h"

// Under AddressSanitizer (scripts/cuda-sim-check.sh --asan) every fiber switch is announced, so that ASan knows
// which stack is live; cudaMalloc's memory then has ASan's red zones, which catches a kernel reading or writing
// past an allocation, the way compute-sanitizer's memcheck does on a GPU.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define LN_SIM_ASAN 1
#else
#define LN_SIM_ASAN 0
#endif

namespace ln_sim {
thread_local uint3 t_thread_idx{0, 0, 0}, t_block_idx{0, 0, 0};
thread_local dim3 t_block_dim, t_grid_dim;

namespace {

// ---- settings ----------------------------------------------------------------------------------------------------
bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) != "0" : fallback;
}
bool poison_memory() {
  static const bool p = env_flag("LN_SIM_POISON", true);
  return p;
}
bool check_pointers() {
  static const bool c = env_flag("LN_SIM_CHECK_POINTERS", true);
  return c;
}
bool reverse_order() {
  static const bool r = [] {
    const char* v = std::getenv("LN_SIM_ORDER");
    return v && std::string(v) == "reverse";
  }();
  return r;
}
size_t device_bytes() {
  static const size_t b = [] {
    const char* v = std::getenv("LN_SIM_DEVICE_GIB");
    return size_t(v ? std::atof(v) * double(size_t(1) << 30) : double(size_t(16) << 30));
  }();
  return b;
}
constexpr size_t kSmemDefault = 48 * 1024, kSmemOptin = 232448;  // H100 / H200: 227 KiB per block
constexpr size_t kStackBytes = 512 * 1024;

// ---- memory ------------------------------------------------------------------------------------------------------
struct Allocation {
  size_t bytes;
  bool device;  // false: pinned host memory (cudaMallocHost), which kernels may read too
};
std::mutex g_mem_mutex;
std::map<uintptr_t, Allocation> g_allocations;
size_t g_device_used = 0;

// The allocation holding [p, p + bytes), or nullptr. A pointer one past the end holds zero bytes.
const Allocation* find_allocation(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocations.upper_bound(a);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  if (a + bytes > it->first + it->second.bytes) return nullptr;
  return &it->second;
}

// ---- errors ------------------------------------------------------------------------------------------------------
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local cudaError_t t_pending_fault = cudaSuccess;  // a kernel fault, reported by the next synchronising call
cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}
cudaError_t take_fault() {
  const cudaError_t e = t_pending_fault;
  t_pending_fault = cudaSuccess;
  return set_error(e);
}

// ---- streams -----------------------------------------------------------------------------------------------------
// On a GPU the host only queues work; the device runs it later, in stream order, and the host sees its results
// only after waiting (cudaStreamSynchronize, cudaEventSynchronize, cudaDeviceSynchronize, a synchronous cudaMemcpy,
// cudaFree). Here every launch, copy, memset, event record and host function is queued on its stream and runs when
// the host waits for it, the latest moment a GPU may run it: so a host that reads a result it did not wait for
// (a copy into pinned memory; a copy's destination is filled with 0xFF bytes when it is queued), reuses a buffer a
// queued copy still reads, or relies on two streams' order without an event, sees it fail here as it may there.
// Two non-blocking streams are independent queues; the legacy default stream and the blocking streams (which are
// ordered with it) share one. LN_SIM_ORDER=reverse also runs the non-blocking streams before the legacy one when
// the whole device is waited for. LN_SIM_ASYNC=0: everything runs when it is called. After a kernel fault nothing
// queued runs (the context is broken until the fault is reported, as on a GPU).
bool async_streams() {
  static const bool a = env_flag("LN_SIM_ASYNC", true);
  return a;
}
struct WorkQueue {
  std::mutex lock;     // guards ops
  std::mutex running;  // held while ops run: a second waiter returns only once they have run
  std::deque<std::pair<uint64_t, std::function<void(uint64_t)>>> ops;  // each op is given its sequence number
};
std::atomic<uint64_t> g_op_seq{0};
WorkQueue g_legacy_queue;

// Runs a queued op unless a fault is pending.
void run_op(const std::function<void(uint64_t)>& op, uint64_t seq) {
  if (t_pending_fault == cudaSuccess) op(seq);
}
// Queues op; returns its sequence number (increasing along a queue).
uint64_t enqueue_numbered(WorkQueue& q, std::function<void(uint64_t)> op) {
  if (!async_streams()) {
    const uint64_t seq = ++g_op_seq;
    run_op(op, seq);
    return seq;
  }
  std::lock_guard<std::mutex> lock(q.lock);
  const uint64_t seq = ++g_op_seq;
  q.ops.emplace_back(seq, std::move(op));
  return seq;
}
uint64_t enqueue(WorkQueue& q, std::function<void()> op) {
  return enqueue_numbered(q, [op = std::move(op)](uint64_t) { op(); });
}
// Runs q's work queued up to sequence number `upto`.
void drain(WorkQueue& q, uint64_t upto = UINT64_MAX) {
  std::lock_guard<std::mutex> running(q.running);
  for (;;) {
    std::function<void(uint64_t)> op;
    uint64_t seq = 0;
    {
      std::lock_guard<std::mutex> lock(q.lock);
      if (q.ops.empty() || q.ops.front().first > upto) return;
      seq = q.ops.front().first;
      op = std::move(q.ops.front().second);
      q.ops.pop_front();
    }
    run_op(op, seq);
  }
}
WorkQueue& queue_of(cudaStream_t s);  // defined with CUstream_st below
void drain_all();

// ---- fibers ------------------------------------------------------------------------------------------------------
// A fiber switch on x86-64 is a few instructions of our own (callee-saved registers, MXCSR and the x87 control
// word, then the stack pointer): ucontext's swapcontext makes a system call per switch (the signal mask), which
// made a test run take minutes. Other architectures use ucontext.
}  // namespace
void fiber_main();
namespace {
#if defined(__x86_64__)
extern "C" void ln_sim_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl ln_sim_switch
  .type ln_sim_switch, @function
ln_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ln_sim_switch, .-ln_sim_switch
)");
struct Context {
  void* sp = nullptr;
  const void* stack_bottom = nullptr;  // for ASan's fiber annotations
  size_t stack_size = 0;
};
inline void switch_context(Context& from, Context& to, bool from_ends = false) {
#if LN_SIM_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(from_ends ? nullptr : &fake_stack, to.stack_bottom, to.stack_size);
  ln_sim_switch(&from.sp, to.sp);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  (void)from_ends;
  ln_sim_switch(&from.sp, to.sp);
#endif
}
// The first thing a new fiber does: tell ASan the switch is over, and learn the scheduler's stack.
inline void fiber_started(Context& scheduler) {
#if LN_SIM_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &scheduler.stack_bottom, &scheduler.stack_size);
#else
  (void)scheduler;
#endif
}
void init_context(Context& c, unsigned char* stack, size_t bytes, Context*) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  auto* slot = reinterpret_cast<uint64_t*>(top - 16);  // return address of ln_sim_switch: 16-byte aligned, so
  slot[0] = reinterpret_cast<uint64_t>(&fiber_main);   // fiber_main starts as if called (rsp = 8 mod 16)
  slot[1] = 0;
  uint64_t* regs = slot - 6;  // rbp rbx r12..r15, popped in reverse
  for (int i = 0; i < 6; ++i) regs[i] = 0;
  auto* fp = reinterpret_cast<uint32_t*>(regs - 1);
  asm volatile("stmxcsr %0" : "=m"(fp[0]));
  asm volatile("fnstcw %0" : "=m"(*reinterpret_cast<uint16_t*>(&fp[1])));
  c.sp = regs - 1;
  c.stack_bottom = stack;
  c.stack_size = bytes;
}
#else
struct Context {
  ucontext_t uc;
};
inline void switch_context(Context& from, Context& to, bool = false) { swapcontext(&from.uc, &to.uc); }
inline void fiber_started(Context&) {}
// Out of line: getcontext returns once here (the context is only ever entered through makecontext's entry).
__attribute__((noinline)) void init_context(Context& c, unsigned char* stack, size_t bytes, Context* link) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = &link->uc;
  makecontext(&c.uc, fiber_main, 0);
}
#endif

enum class State { Ready, WaitBlock, WaitWarp, Done };
struct Fiber {
  Context ctx;
  State state = State::Ready;
  unsigned warp_mask = 0;
  int lane = 0, warp = 0;
  uint3 idx{0, 0, 0};
};

struct BlockRun {
  const char* kernel = nullptr;
  ThreadBody body{};
  std::vector<Fiber> fibers;
  std::vector<uint64_t> slots;  // per warp, 32 lanes x kSlotWords: shuffles, ldmatrix, mma.sync operands
  std::vector<int> warp_waiting, warp_live;  // per warp: lanes at a warp barrier, lanes not exited
  Context scheduler;
  Fiber* current = nullptr;
  bool faulted = false;
  std::string fault;
  unsigned char* smem = nullptr;
};
thread_local BlockRun* t_run = nullptr;

// Fiber stacks, kept between launches; a PROT_NONE page below each catches a stack overflow as a memory fault.
std::vector<unsigned char*>& stack_pool() {
  static thread_local std::vector<unsigned char*> pool;
  return pool;
}
unsigned char* stack_at(size_t i) {
  auto& pool = stack_pool();
  while (pool.size() <= i) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "ln_sim: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(m, page, PROT_NONE);
    pool.push_back(static_cast<unsigned char*>(m) + page);
  }
  return pool[i];
}

std::string where(const BlockRun& r, const Fiber* f) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u)", r.kernel, t_block_idx.x, t_block_idx.y,
                t_block_idx.z);
  std::string s = buf;
  if (f) {
    std::snprintf(buf, sizeof buf, ", thread (%u,%u,%u)", f->idx.x, f->idx.y, f->idx.z);
    s += buf;
  }
  return s;
}

}  // namespace

void fiber_main() {
  BlockRun& r = *t_run;
  fiber_started(r.scheduler);
  r.body.run(r.body.ctx);
  r.current->state = State::Done;
  --r.warp_live[size_t(r.current->warp)];
  switch_context(r.current->ctx, r.scheduler, true);  // never resumed
  std::abort();
}

namespace {

void yield_to_scheduler() {
  BlockRun& r = *t_run;
  switch_context(r.current->ctx, r.scheduler);
}

// Never returns (not [[noreturn]]: see trap in the header). `why` is a plain string, formatted by callers on their
// stack: a std::string temporary in the caller's frame would never be destroyed once the fiber is abandoned (a leak
// LeakSanitizer reports under scripts/cuda-sim-check.sh --asan).
void fault_in_fiber(const char* why) {
  BlockRun& r = *t_run;
  r.faulted = true;
  r.fault = std::string(why) + " (" + where(r, r.current) + ")";
  switch_context(r.current->ctx, r.scheduler, true);  // abandon the block: its fibers are never resumed
  std::abort();
}

// Releases the lanes of warp w waiting at a warp barrier whose mask lanes have all arrived; true if any were.
bool release_warp_lanes(BlockRun& r, int w) {
  const int n = int(r.fibers.size()), first = w * 32, lanes = std::min(32, n - first);
  unsigned waiting = 0;
  for (int l = 0; l < lanes; ++l) waiting |= unsigned(r.fibers[first + l].state == State::WaitWarp) << l;
  bool released = false;
  for (int l = 0; l < lanes; ++l) {
    Fiber& f = r.fibers[first + l];
    if (f.state == State::WaitWarp && (f.warp_mask & ~waiting) == 0) {
      f.state = State::Ready;
      --r.warp_waiting[size_t(w)];
      released = true;
    }
  }
  return released;
}
// The same, checked after each arrival: nothing to do until every live lane has arrived (the common full mask;
// partial masks are released by release_barriers at the end of the pass).
bool release_warp(BlockRun& r, int w) {
  return r.warp_waiting[size_t(w)] >= r.warp_live[size_t(w)] && release_warp_lanes(r, w);
}

// Releases what can be released once every fiber is blocked or done; false when nothing can (a deadlock).
bool release_barriers(BlockRun& r, std::string* deadlock) {
  const int n = int(r.fibers.size());
  const int warps = (n + 31) / 32;
  bool released = false;
  int live = 0, at_block = 0;
  for (auto& f : r.fibers) {
    live += f.state != State::Done;
    at_block += f.state == State::WaitBlock;
  }
  for (int w = 0; w < warps; ++w) {
    unsigned done = 0;
    for (int l = 0; l < 32 && w * 32 + l < n; ++l) done |= unsigned(r.fibers[w * 32 + l].state == State::Done) << l;
    for (int l = 0; l < 32 && w * 32 + l < n; ++l) {
      const Fiber& f = r.fibers[w * 32 + l];
      if (f.state == State::WaitWarp && (f.warp_mask & done)) {
        *deadlock = "a warp-synchronous call waits for lanes that have exited (mask " + std::to_string(f.warp_mask) +
                    ", " + where(r, &f) + ")";
        return false;
      }
    }
    released = release_warp_lanes(r, w) || released;
  }
  if (!released && live > 0 && at_block == live) {
    for (auto& f : r.fibers)
      if (f.state == State::WaitBlock) f.state = State::Ready;
    released = true;
  }
  if (!released && live > 0) {
    int at_warp = live - at_block;
    *deadlock = "threads wait at barriers that cannot be released: " + std::to_string(at_block) +
                " at __syncthreads, " + std::to_string(at_warp) + " at a warp barrier, " +
                std::to_string(n - live) + " exited (" + where(r, nullptr) + ")";
  }
  return released;
}

void run_block(BlockRun& r) {
  const int n = int(r.fibers.size());
  r.warp_waiting.assign(size_t((n + 31) / 32), 0);
  r.warp_live.assign(size_t((n + 31) / 32), 32);
  if (n % 32) r.warp_live.back() = n % 32;
  for (int i = 0; i < n; ++i) {
    r.fibers[i].state = State::Ready;
    init_context(r.fibers[i].ctx, stack_at(size_t(i)), kStackBytes, &r.scheduler);
  }
  const bool rev = reverse_order();
  for (;;) {
    for (int k = 0; k < n && !r.faulted; ++k) {
      Fiber& f = r.fibers[rev ? n - 1 - k : k];
      if (f.state != State::Ready) continue;
      r.current = &f;
      t_thread_idx = f.idx;
      switch_context(r.scheduler, f.ctx);
      // A warp whose barrier is complete runs on at once, from its first lane in this pass's order: shuffles cost
      // a pass over 32 fibers, not over the block (and the warp's stacks stay in cache).
      if (f.state == State::WaitWarp && release_warp(r, f.warp)) {
        const int first = rev ? std::min(n, (f.warp + 1) * 32) - 1 : f.warp * 32;
        k = (rev ? n - 1 - first : first) - 1;
      }
    }
    r.current = nullptr;
    if (r.faulted) return;
    bool all_done = true;
    for (auto& f : r.fibers) all_done = all_done && f.state == State::Done;
    if (all_done) return;
    std::string deadlock;
    if (!release_barriers(r, &deadlock)) {
      r.faulted = true;
      r.fault = deadlock;
      return;
    }
  }
}

// ---- kernel attributes -------------------------------------------------------------------------------------------
std::mutex g_attr_mutex;
std::map<const void*, size_t> g_max_dynamic_smem;

// ---- SIGSEGV while a kernel runs -----------------------------------------------------------------------------------
void on_segv(int sig, siginfo_t* info, void*) {
  if (t_run) {
    const std::string w = where(*t_run, t_run->current);
    std::fprintf(stderr, "ln_sim: memory fault at %p in %s\n", info->si_addr, w.c_str());
  }
  signal(sig, SIG_DFL);
  raise(sig);
}
void install_segv_handler() {
  if (LN_SIM_ASAN) return;  // ASan has its own report
  static bool done = [] {
    static std::vector<unsigned char> alt(1 << 16);
    stack_t ss{};
    ss.ss_sp = alt.data();
    ss.ss_size = alt.size();
    sigaltstack(&ss, nullptr);
    struct sigaction sa{};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    return true;
  }();
  (void)done;
}

}  // namespace

// ---- device built-ins --------------------------------------------------------------------------------------------
int lane_id() {
  if (!t_run || !t_run->current) trap("a warp function called outside a kernel");
  return t_run->current->lane;
}

void sync_block() {
  if (!t_run || !t_run->current) trap("__syncthreads outside a kernel");
  t_run->current->state = State::WaitBlock;
  yield_to_scheduler();
}

void sync_warp(unsigned mask) {
  if (!t_run || !t_run->current) trap("__syncwarp outside a kernel");
  Fiber& f = *t_run->current;
  if (!((mask >> f.lane) & 1u)) fault_in_fiber("__syncwarp / shuffle / ldmatrix / mma.sync by a lane outside its own mask");
  const int n = int(t_run->fibers.size()), first = f.warp * 32;
  const unsigned present = n - first >= 32 ? 0xffffffffu : ((1u << (n - first)) - 1u);
  if (mask & ~present) fault_in_fiber("a warp mask names lanes the block does not have");
  f.state = State::WaitWarp;
  f.warp_mask = mask;
  ++t_run->warp_waiting[size_t(f.warp)];
  yield_to_scheduler();
}

uint64_t warp_exchange(unsigned mask, uint64_t mine, int src_lane) {
  if (!t_run || !t_run->current) trap("a shuffle outside a kernel");
  Fiber& f = *t_run->current;
  if (src_lane < 0 || src_lane > 31 || !((mask >> src_lane) & 1u)) {
    char why[64];
    std::snprintf(why, sizeof why, "a shuffle reads lane %d, outside the mask", src_lane);
    fault_in_fiber(why);
  }
  uint64_t* slots = t_run->slots.data() + size_t(f.warp) * 32 * kSlotWords;
  slots[f.lane * kSlotWords] = mine;
  sync_warp(mask);
  const uint64_t v = slots[src_lane * kSlotWords];
  sync_warp(mask);  // nobody overwrites its slot before every lane has read
  return v;
}

const uint64_t* warp_gather_begin(const uint64_t* mine, int n, const char* what) {
  if (!t_run || !t_run->current) trap("a warp-collective instruction outside a kernel");
  Fiber& f = *t_run->current;
  if (n < 0 || n > kSlotWords) {
    char why[96];
    std::snprintf(why, sizeof why, "%s: too many words for the warp's slots", what);
    fault_in_fiber(why);
  }
  uint64_t* slots = t_run->slots.data() + size_t(f.warp) * 32 * kSlotWords;
  for (int i = 0; i < n; ++i) slots[f.lane * kSlotWords + i] = mine[i];
  sync_warp(0xffffffffu);  // faults unless all 32 lanes arrive (mma.sync / ldmatrix are .aligned: the full warp)
  return slots;
}

void warp_gather_end() { sync_warp(0xffffffffu); }

unsigned char* dynamic_shared(size_t align) {
  if (!t_run) trap("dynamic shared memory outside a kernel");
  if (reinterpret_cast<uintptr_t>(t_run->smem) % align) trap("dynamic shared memory misaligned");
  return t_run->smem;
}

void trap(const char* why) {
  if (t_run && t_run->current) fault_in_fiber(why);
  std::fprintf(stderr, "ln_sim: %s\n", why);
  std::abort();
}

cudaError_t func_set_attribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > kSmemOptin)
    return set_error(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_attr_mutex);
  g_max_dynamic_smem[func] = size_t(value);
  return cudaSuccess;
}

void check_pointer_argument(const char* kernel, int index, const void* p) {
  if (!p || !check_pointers()) return;
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (find_allocation(p, 0)) return;
  std::fprintf(stderr, "ln_sim: kernel %s: argument %d (%p) points to neither device memory nor pinned host memory\n",
               kernel, index, p);
  t_pending_fault = cudaErrorLaunchFailure;
}

// Runs a launch's blocks, one after another, on the calling thread (the one that waits for its stream).
void run_kernel(const char* name, const LaunchConfig& cfg, ThreadBody body) {
  // One launch at a time in the process: `__shared__` statics are shared by every host thread (two models used
  // from two worker threads would otherwise write into each other's shared memory).
  static std::mutex launch_mutex;
  std::lock_guard<std::mutex> launch_lock(launch_mutex);
  install_segv_handler();
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  BlockRun r;
  r.kernel = name;
  r.body = body;
  r.fibers.resize(threads);
  r.slots.assign(((threads + 31) / 32) * 32 * kSlotWords, 0);
  std::vector<unsigned char> smem_storage(cfg.smem + 128);
  r.smem = smem_storage.data() + (128 - reinterpret_cast<uintptr_t>(smem_storage.data()) % 128) % 128;
  for (uint64_t i = 0; i < threads; ++i) {
    Fiber& f = r.fibers[i];
    f.idx = uint3{unsigned(i % b.x), unsigned((i / b.x) % b.y), unsigned(i / (uint64_t(b.x) * b.y))};
    f.lane = int(i % 32);
    f.warp = int(i / 32);
  }
  BlockRun* outer = t_run;
  t_run = &r;
  t_block_dim = b;
  t_grid_dim = g;
  const uint64_t blocks = uint64_t(g.x) * g.y * g.z;
  const bool rev = reverse_order();
  for (uint64_t k = 0; k < blocks && !r.faulted; ++k) {
    const uint64_t i = rev ? blocks - 1 - k : k;
    t_block_idx = uint3{unsigned(i % g.x), unsigned((i / g.x) % g.y), unsigned(i / (uint64_t(g.x) * g.y))};
    if (poison_memory()) std::memset(r.smem, 0xff, cfg.smem);
    run_block(r);
  }
  t_run = outer;
  if (r.faulted) {
#if LN_SIM_ASAN
    // The abandoned fibers' frames are still poisoned in ASan's shadow; the next launch reuses these stacks.
    for (uint64_t i = 0; i < threads; ++i) __asan_unpoison_memory_region(stack_at(size_t(i)), kStackBytes);
#endif
    std::fprintf(stderr, "ln_sim: kernel fault: %s\n", r.fault.c_str());
    t_pending_fault = cudaErrorLaunchFailure;
  }
}

void submit_kernel(const char* name, const LaunchConfig& cfg, const void* kernel, ThreadBody body) {
  std::shared_ptr<void> ctx(body.ctx, body.destroy);  // freed once the launch has run, or now if it is refused
  if (t_pending_fault != cudaSuccess) return;  // the context is broken until the fault is reported
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (g.x == 0 || g.y == 0 || g.z == 0 || threads == 0 || threads > 1024 || b.z > 64 || g.y > 65535 ||
      g.z > 65535 || g.x > 2147483647u) {
    std::fprintf(stderr, "ln_sim: kernel %s: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n", name,
                 g.x, g.y, g.z, b.x, b.y, b.z);
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  size_t smem_limit = kSmemDefault;
  {
    std::lock_guard<std::mutex> lock(g_attr_mutex);
    auto it = g_max_dynamic_smem.find(kernel);
    if (it != g_max_dynamic_smem.end()) smem_limit = it->second > kSmemDefault ? it->second : kSmemDefault;
  }
  if (cfg.smem > smem_limit) {
    std::fprintf(stderr, "ln_sim: kernel %s: %zu bytes of dynamic shared memory, above the %zu allowed%s\n", name,
                 cfg.smem, smem_limit, smem_limit == kSmemDefault ? " without cudaFuncSetAttribute" : "");
    set_error(cudaErrorInvalidValue);
    return;
  }
  enqueue(queue_of(cfg.stream), [name, cfg, body, ctx] { run_kernel(name, cfg, body); });
}

}  // namespace ln_sim

// ---- runtime API ---------------------------------------------------------------------------------------------------
using ln_sim::set_error;

cudaError_t cudaGetDeviceCount(int* n) {
  *n = ln_sim::env_flag("LN_SIM_NO_DEVICE", false) ? 0 : 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "langneurons CUDA simulator (CPU, not a GPU)");
  p->totalGlobalMem = ln_sim::device_bytes();
  p->sharedMemPerBlock = ln_sim::kSmemDefault;
  p->sharedMemPerBlockOptin = ln_sim::kSmemOptin;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 4;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(ln_sim::g_mem_mutex);
  *total_bytes = ln_sim::device_bytes();
  *free_bytes = *total_bytes - ln_sim::g_device_used;
  return cudaSuccess;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure (simulator: see the ln_sim line on stderr)";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError() {
  cudaError_t e = ln_sim::t_last_error;
  if (e == cudaSuccess) e = ln_sim::take_fault();
  ln_sim::t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return ln_sim::t_last_error; }
// ---- streams and events (see "Streams" in namespace ln_sim) ---------------------------------------------------------
struct CUstream_st {
  LnSimStreamAbi abi;  // first: the cuBLASLt stand-in queues its matmuls through it (sim_stream_abi.h)
  unsigned flags;
  ln_sim::WorkQueue queue;  // unused by a blocking stream, which shares the legacy stream's
};
struct EventState {
  uint64_t recorded = 0, completed = 0;  // sequence numbers of the last record and of the last record run
  ln_sim::WorkQueue* queue = nullptr;    // where the last record was queued; null: never recorded
  std::chrono::steady_clock::time_point at;
};
struct CUevent_st {
  std::shared_ptr<EventState> state = std::make_shared<EventState>();  // a queued record may outlive the event
};

namespace ln_sim {
namespace {
std::mutex g_streams_mutex;
std::set<cudaStream_t> g_streams;  // the live non-blocking streams
WorkQueue& queue_of(cudaStream_t s) { return s && (s->flags & cudaStreamNonBlocking) ? s->queue : g_legacy_queue; }
void drain_all() {
  std::vector<cudaStream_t> streams;
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    streams.assign(g_streams.begin(), g_streams.end());
  }
  if (!reverse_order()) drain(g_legacy_queue);
  for (cudaStream_t s : streams) drain(s->queue);
  if (reverse_order()) drain(g_legacy_queue);
}
}  // namespace
}  // namespace ln_sim

cudaError_t cudaDeviceSynchronize() {
  ln_sim::drain_all();
  return ln_sim::take_fault();
}

namespace {
cudaError_t allocate(void** p, size_t bytes, bool device) {
  if (!p) return set_error(cudaErrorInvalidValue);
  *p = nullptr;
  std::lock_guard<std::mutex> lock(ln_sim::g_mem_mutex);
  if (device && ln_sim::g_device_used + bytes > ln_sim::device_bytes()) return set_error(cudaErrorMemoryAllocation);
  void* m = nullptr;
  if (posix_memalign(&m, 256, bytes ? bytes : 1) != 0) return set_error(cudaErrorMemoryAllocation);
  if (device && ln_sim::poison_memory()) std::memset(m, 0xff, bytes);
  ln_sim::g_allocations[reinterpret_cast<uintptr_t>(m)] = ln_sim::Allocation{bytes, device};
  if (device) ln_sim::g_device_used += bytes;
  *p = m;
  return cudaSuccess;
}
cudaError_t release(void* p, bool device) {
  if (!p) return cudaSuccess;
  ln_sim::drain_all();  // cudaFree and cudaFreeHost wait for the device
  std::lock_guard<std::mutex> lock(ln_sim::g_mem_mutex);
  auto it = ln_sim::g_allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == ln_sim::g_allocations.end() || it->second.device != device) return set_error(cudaErrorInvalidValue);
  if (device) ln_sim::g_device_used -= it->second.bytes;
  ln_sim::g_allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}
const ln_sim::Allocation* allocation_of(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(ln_sim::g_mem_mutex);
  return ln_sim::find_allocation(p, bytes);
}
bool is_device(const void* p, size_t bytes) {
  const ln_sim::Allocation* a = allocation_of(p, bytes);
  return a && a->device;
}
bool device_accessible(const void* p, size_t bytes) { return allocation_of(p, bytes) != nullptr; }
}  // namespace

cudaError_t cudaMalloc(void** p, size_t bytes) { return allocate(p, bytes, true); }
cudaError_t cudaFree(void* p) { return release(p, true); }
cudaError_t cudaMallocHost(void** p, size_t bytes) { return allocate(p, bytes, false); }
cudaError_t cudaFreeHost(void* p) { return release(p, false); }

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (ln_sim::t_pending_fault != cudaSuccess) return ln_sim::take_fault();
  if (bytes == 0) return cudaSuccess;
  bool ok = dst && src;
  const char* why = "a null pointer";
  if (ok && (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) && !device_accessible(dst, bytes)) {
    ok = false;
    why = "the destination is not device memory (or the copy runs past its allocation)";
  }
  if (ok && (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) && !device_accessible(src, bytes)) {
    ok = false;
    why = "the source is not device memory (or the copy runs past its allocation)";
  }
  if (ok && kind == cudaMemcpyHostToDevice && is_device(src, 1)) {
    ok = false;
    why = "cudaMemcpyHostToDevice from device memory";
  }
  if (ok && kind == cudaMemcpyDeviceToHost && is_device(dst, 1)) {
    ok = false;
    why = "cudaMemcpyDeviceToHost into device memory";
  }
  if (!ok) {
    std::fprintf(stderr, "ln_sim: cudaMemcpy of %zu bytes (kind %d): %s\n", bytes, int(kind), why);
    return set_error(cudaErrorInvalidValue);
  }
  ln_sim::WorkQueue& q = ln_sim::queue_of(stream);
  if (kind == cudaMemcpyHostToDevice && !allocation_of(src, bytes) && ln_sim::async_streams()) {
    // Pageable host memory is staged before the call returns (the driver copies it into pinned memory), so the
    // caller may reuse it at once; pinned memory is read when the copy runs.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + bytes);
    ln_sim::enqueue(q, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
    return cudaSuccess;
  }
  // What a copy writes is undefined until it has run: a host that reads it without waiting sees 0xFF bytes.
  if (kind == cudaMemcpyDeviceToHost && ln_sim::async_streams() && ln_sim::poison_memory())
    std::memset(dst, 0xff, bytes);
  ln_sim::enqueue(q, [dst, src, bytes] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  // On the legacy stream, and returns once the copy has run (for a copy to the device a GPU may return a little
  // earlier, once the source is staged).
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  if (e != cudaSuccess) return e;
  ln_sim::drain(ln_sim::g_legacy_queue);
  return ln_sim::take_fault();
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (ln_sim::t_pending_fault != cudaSuccess) return ln_sim::take_fault();
  if (bytes == 0) return cudaSuccess;
  if (!device_accessible(p, bytes)) {
    std::fprintf(stderr, "ln_sim: cudaMemset of %zu bytes outside device memory\n", bytes);
    return set_error(cudaErrorInvalidValue);
  }
  // cudaMemset is asynchronous too, on the legacy default stream, which a non-blocking stream never waits for.
  ln_sim::enqueue(ln_sim::queue_of(stream), [p, value, bytes] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) { return cudaMemsetAsync(p, value, bytes, nullptr); }

namespace {
int launch_host_func_abi(void* stream, void (*fn)(void*), void* data) {
  return int(cudaLaunchHostFunc(static_cast<cudaStream_t>(stream), fn, data));
}
}  // namespace
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  if (!s) return set_error(cudaErrorInvalidValue);
  *s = new CUstream_st{LnSimStreamAbi{kLnSimStreamMagic, launch_host_func_abi}, flags, {}};
  if (flags & cudaStreamNonBlocking) {
    std::lock_guard<std::mutex> lock(ln_sim::g_streams_mutex);
    ln_sim::g_streams.insert(*s);
  }
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  // A GPU finishes the work queued on a destroyed stream; here it runs now.
  ln_sim::drain(ln_sim::queue_of(s));
  {
    std::lock_guard<std::mutex> lock(ln_sim::g_streams_mutex);
    ln_sim::g_streams.erase(s);
  }
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  ln_sim::drain(ln_sim::queue_of(s));
  return ln_sim::take_fault();
}
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* data) {
  if (!fn) return set_error(cudaErrorInvalidValue);
  if (ln_sim::t_pending_fault != cudaSuccess) return ln_sim::take_fault();
  ln_sim::enqueue(ln_sim::queue_of(s), [fn, data] { fn(data); });
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  if (!e) return set_error(cudaErrorInvalidValue);
  *e = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  std::shared_ptr<EventState> st = e->state;
  ln_sim::WorkQueue& q = ln_sim::queue_of(s);
  st->queue = &q;
  st->recorded = ln_sim::enqueue_numbered(q, [st](uint64_t seq) {
    st->at = std::chrono::steady_clock::now();
    st->completed = seq;
  });
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  if (e->state->queue) ln_sim::drain(*e->state->queue, e->state->recorded);
  return ln_sim::take_fault();
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end || !start->state->queue || !end->state->queue) return set_error(cudaErrorInvalidResourceHandle);
  if (start->state->completed < start->state->recorded || end->state->completed < end->state->recorded)
    return set_error(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(end->state->at - start->state->at).count();
  return cudaSuccess;
}
