// ExitWaitedThreads: its destruction waits for work still running, up to its limit, and work
// past the limit finishes afterwards without the object.
#include "model/parallel/exit_waited_threads.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

namespace eyrie {
namespace {

using namespace std::chrono_literals;

TEST(ExitWaitedThreads, DestructionWaitsForRunningWork) {
  std::atomic<int> done{0};
  {
    ExitWaitedThreads threads(60s);
    for (int i = 0; i < 4; ++i)
      threads.start([&done] {
        std::this_thread::sleep_for(50ms);
        ++done;
      });
  }
  EXPECT_EQ(done.load(), 4);
}

TEST(ExitWaitedThreads, WhatWorkHoldsIsReleasedBeforeTheWaitEnds) {
  auto held = std::make_shared<int>(7);
  std::weak_ptr<int> watch = held;
  {
    ExitWaitedThreads threads(60s);
    threads.start([held = std::move(held)] { std::this_thread::sleep_for(20ms); });
  }
  EXPECT_TRUE(watch.expired());
}

TEST(ExitWaitedThreads, WorkPastTheLimitIsLeftRunningAndFinishesLater) {
  std::promise<void> release;
  auto released = release.get_future().share();
  // Held by the thread too, so that it may finish setting it after this test has moved on.
  auto finished = std::make_shared<std::promise<void>>();
  auto finished_future = finished->get_future();
  {
    ExitWaitedThreads threads(20ms);
    threads.start([released, finished] {
      released.wait();
      finished->set_value();
    });
  }
  // The destructor returned while the work was still blocked; it finishes once let go.
  release.set_value();
  EXPECT_EQ(finished_future.wait_for(60s), std::future_status::ready);
}

}  // namespace
}  // namespace eyrie
