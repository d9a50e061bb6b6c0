// A fixed set of worker threads for data-parallel loops in the CPU engine.
// A decode step runs about a hundred short loops, so during a step workers poll between loops:
// a futex wake-up per loop would cost a noticeable share of the step. A loop ends when
// its items are done, not when every worker has checked in, so a worker the OS has preempted
// (the server's other threads share the cores) does not hold the step up.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
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

  // Within a burst of loops (an engine step) workers keep polling between loops; outside one
  // they soon sleep, leaving the cores to the rest of the process.
  void set_busy(bool busy) { busy_.store(busy); }

  // Calls fn(lo, hi) over [0, n) in chunks of at least `grain`, spread over the threads, and
  // returns when all are done. Not reentrant: one loop at a time per pool.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  // One parallel loop, in a ring of slots reused every kSlots loops. A worker pins a slot with
  // `refs` and checks `gen` before touching it, so one that wakes late (after its loop has
  // finished, or after the slot was reused) leaves without doing anything.
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0, chunk = 1;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};  // items finished
    std::atomic<int> refs{0};
    std::atomic<uint64_t> gen{0};
  };
  static constexpr std::size_t kSlots = 8;

  void worker_loop();
  static void run_chunks(Job& job);

  std::vector<std::thread> workers_;
  std::array<Job, kSlots> jobs_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> busy_{false};
};

}  // namespace eyrie
