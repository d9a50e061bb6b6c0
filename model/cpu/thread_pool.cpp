// Chunked parallel loops; workers sleep once idle for a while, so an idle engine costs no CPU.
#include "model/cpu/thread_pool.hpp"

#include <immintrin.h>

#include <algorithm>

namespace eyrie {
namespace {

// Polling before a worker sleeps: about 10 microseconds between bursts, 2 milliseconds within
// one (longer gaps inside a step are serial work worth sleeping through).
constexpr int kIdleSpins = 2000;
constexpr int kBusySpins = 400000;

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
    const int64_t lo = job.next.fetch_add(job.chunk);
    if (lo >= job.n) break;
    const int64_t hi = std::min(job.n, lo + job.chunk);
    (*job.fn)(lo, hi);
    job.done.fetch_add(hi - lo);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load() == seen && !stop_.load() &&
           spins < (busy_.load(std::memory_order_relaxed) ? kBusySpins : kIdleSpins)) {
      _mm_pause();
      ++spins;
    }
    if (generation_.load() == seen && !stop_.load()) {
      sleepers_.fetch_add(1);
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    const uint64_t g = generation_.load();
    Job& job = jobs_[g % kSlots];
    job.refs.fetch_add(1);
    if (job.gen.load() == g) run_chunks(job);
    job.refs.fetch_sub(1);
    seen = g;
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
  const uint64_t g = generation_.load() + 1;
  Job& job = jobs_[g % kSlots];
  // Retire the slot: wait out workers still inside it, invalidate it, and wait out any that
  // pinned it before seeing the invalidation.
  while (job.refs.load() != 0) _mm_pause();
  job.gen.store(0);
  while (job.refs.load() != 0) _mm_pause();
  job.fn = &fn;
  job.n = n;
  // About four chunks per thread balances uneven rows without much contention.
  job.chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
  job.next.store(0);
  job.done.store(0);
  job.gen.store(g);
  generation_.store(g);
  if (sleepers_.load() > 0) {
    { std::lock_guard lock(mu_); }
    wake_.notify_all();
  }
  job.refs.fetch_add(1);
  run_chunks(job);
  job.refs.fetch_sub(1);
  while (job.done.load() != n) _mm_pause();
}

}  // namespace eyrie
