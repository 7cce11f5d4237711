// A persistent pool of worker threads (created once per model) with a blocking parallel_for.
// The task is passed as a (function pointer, context) pair, so dispatching work allocates nothing.
// The pool also owns the kernels' scratch buffers, one set per worker slot (see scratch()).
#pragma once
#include <atomic>
#include <memory>
#include <condition_variable>
#include <type_traits>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "core/scratch.h"

namespace ln {

class ThreadPool {
 public:
  // n_threads >= 1; the calling thread is worker 0, so n_threads - 1 threads are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // What a kernel uses a scratch buffer for. Kernels that never run inside one another's tasks share slots.
  enum class Scratch { PackA, PackB, RowPrep, Attention, kCount };
  // Worker `thread`'s buffer for `use`, at least n floats, 64-byte aligned (contents unspecified after a grow).
  // Call it from a task with the thread index the pool passed, or with 0 from the thread that calls run() (it is
  // worker 0; run() is not re-entrant, so one caller at a time owns slot 0).
  float* scratch(int thread, Scratch use, int64_t n) {
    return scratch_[size_t(thread) * size_t(Scratch::kCount) + size_t(use)].get(n);
  }
  int64_t scratch_bytes() const;  // held by all the workers' buffers

  // Runs fn(ctx, task, thread) for every task in [0, n_tasks), tasks distributed dynamically over the workers;
  // returns when all are done. Not re-entrant: a task must not call run() on the same pool.
  void run(int64_t n_tasks, void (*fn)(void* ctx, int64_t task, int thread), void* ctx);

  // Convenience wrapper for lambdas: f(task, thread). The lambda lives on the caller's stack.
  template <class F>
  void parallel_for(int64_t n_tasks, F&& f) {
    using Fn = typename std::remove_reference<F>::type;
    run(n_tasks, [](void* c, int64_t t, int th) { (*static_cast<Fn*>(c))(t, th); }, static_cast<void*>(&f));
  }

 private:
  void worker_loop(int index);
  void work(int thread);

  int n_threads_;
  std::unique_ptr<ScratchBuffer[]> scratch_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  uint64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  void (*fn_)(void*, int64_t, int) = nullptr;
  void* ctx_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t>* next_ = nullptr;
  std::atomic<int64_t> next_storage_{0};
};

}  // namespace ln
