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

void ThreadPool::run_chunks(Job& job) {
  for (;;) {
    const int64_t lo = job.next.fetch_add(job.chunk, std::memory_order_relaxed);
    if (lo >= job.n) break;
    const int64_t hi = std::min(job.n, lo + job.chunk);
    (*job.fn)(lo, hi);
    job.done.fetch_add(hi - lo, std::memory_order_release);
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
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      if (stop_.load()) return;
      seen = generation_.load();
      job = job_;
    }
    if (job) run_chunks(*job);
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
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  // About four chunks per thread balances uneven rows without much contention.
  job->chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
  {
    std::lock_guard lock(mu_);
    job_ = job;
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  run_chunks(*job);
  while (job->done.load(std::memory_order_acquire) != n) _mm_pause();
  std::lock_guard lock(mu_);
  if (job_ == job) job_.reset();
}

}  // namespace eyrie
