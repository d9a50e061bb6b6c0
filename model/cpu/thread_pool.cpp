// Chunked parallel loops; workers sleep once idle for a while, so an idle engine costs no CPU.
#include "model/cpu/thread_pool.hpp"

#include <immintrin.h>

#include <algorithm>

namespace eyrie {
namespace {

// About 100 microseconds of polling before a worker goes to sleep.
constexpr int kSpins = 20000;

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_.store(true);
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
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load() && spins < kSpins) {
      _mm_pause();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunks();
    active_.fetch_sub(1, std::memory_order_acq_rel);
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
  const int64_t chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
  fn_ = &fn;
  n_ = n;
  chunk_ = chunk;
  next_.store(0);
  active_.store(static_cast<int>(workers_.size()));
  {
    // Under the lock so that a worker about to sleep either sees the new generation or is
    // already waiting when notified.
    std::lock_guard lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  run_chunks();
  // Every worker must leave this generation before the next one may start.
  while (active_.load(std::memory_order_acquire) != 0) _mm_pause();
  fn_ = nullptr;
}

}  // namespace eyrie
