// Chunked parallel loops; workers sleep between loops so an idle engine costs no CPU.
#include "model/cpu/thread_pool.hpp"

#include <algorithm>

namespace eyrie {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
  for (;;) {
    int64_t lo = next_.fetch_add(chunk_);
    if (lo >= n_) break;
    (*fn_)(lo, std::min(n_, lo + chunk_));
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    run_chunks();
    if (active_.fetch_sub(1) == 1) {
      std::lock_guard lock(mu_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t threads = size();
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  // About four chunks per thread balances uneven rows without much contention.
  int64_t chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
  {
    std::lock_guard lock(mu_);
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_.store(0);
    active_.store(static_cast<int>(workers_.size()));
    ++generation_;
  }
  wake_.notify_all();
  run_chunks();
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return active_.load() == 0; });
  fn_ = nullptr;
}

}  // namespace eyrie
