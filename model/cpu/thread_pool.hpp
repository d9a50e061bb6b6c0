// A fixed set of worker threads for data-parallel loops in the CPU engine.
// A decode step runs about a hundred short loops, so workers spin briefly between loops before
// sleeping: a futex wake-up per loop would cost a noticeable share of the step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace eyrie {

class ThreadPool {
 public:
  // threads == 0 uses every hardware thread. The calling thread takes part in each loop.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(lo, hi) over [0, n) in chunks of at least `grain`, spread over the threads, and
  // returns when all are done. Not reentrant: one loop at a time per pool.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace eyrie
