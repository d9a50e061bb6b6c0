// The thread pool runs every item of every loop exactly once, under back-to-back loops.
#include "model/cpu/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace eyrie {
namespace {

TEST(ThreadPool, EveryItemOnceAcrossManyLoops) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(5000);
  for (int round = 0; round < 3000; ++round) {
    const int64_t n = 1 + (round * 37) % 5000;
    pool.parallel_for(n, 1 + round % 7, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].exchange(0), 1) << "round " << round << " item " << i;
  }
}

TEST(ThreadPool, SleepsAndWakes) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers go to sleep
    pool.parallel_for(1000, 1, [&](int64_t lo, int64_t hi) { sum += hi - lo; });
  }
  EXPECT_EQ(sum.load(), 3000);
}

}  // namespace
}  // namespace eyrie
