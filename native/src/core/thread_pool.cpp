#include "core/thread_pool.h"

namespace ln {

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads),
      scratch_(new ScratchBuffer[size_t(n_threads_) * size_t(Scratch::kCount)]) {
  next_ = &next_storage_;
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t ThreadPool::scratch_bytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < size_t(n_threads_) * size_t(Scratch::kCount); ++i) n += scratch_[i].bytes();
  return n;
}

void ThreadPool::work(int thread) {
  for (;;) {
    int64_t t = next_->fetch_add(1, std::memory_order_relaxed);
    if (t >= n_tasks_) break;
    fn_(ctx_, t, thread);
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    work(index);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--busy_ == 0) cv_done_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t n_tasks, void (*fn)(void*, int64_t, int), void* ctx) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = fn;
    ctx_ = ctx;
    n_tasks_ = n_tasks;
    next_->store(0, std::memory_order_relaxed);
    busy_ = n_threads_ - 1;
    ++generation_;
  }
  cv_start_.notify_all();
  work(0);
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return busy_ == 0; });
}

}  // namespace ln
