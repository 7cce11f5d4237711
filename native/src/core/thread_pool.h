// A persistent pool of worker threads (created once per model) with a blocking parallel_for.
// The task is passed as a (function pointer, context) pair, so dispatching work allocates nothing.
#pragma once
#include <atomic>
#include <condition_variable>
#include <type_traits>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ln {

class ThreadPool {
 public:
  // n_threads >= 1; the calling thread is worker 0, so n_threads - 1 threads are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

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
