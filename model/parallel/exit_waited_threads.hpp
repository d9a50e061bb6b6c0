// Detached threads whose owner, at its destruction, waits a bounded time for them to finish.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

namespace eyrie {

// For work that must not block its caller but should not outlive the process's orderly exit:
// aborting a tensor-parallel group's NCCL communicators, say, which a thread still inside NCCL
// while the CUDA runtime and NCCL tear down would turn into a crash at exit. Held as a
// function-local static made after the libraries it races, its destructor runs before theirs.
// Work past the limit is left running: the count it reports to outlives this object.
class ExitWaitedThreads {
 public:
  explicit ExitWaitedThreads(std::chrono::milliseconds limit);
  ~ExitWaitedThreads();
  ExitWaitedThreads(const ExitWaitedThreads&) = delete;
  ExitWaitedThreads& operator=(const ExitWaitedThreads&) = delete;

  // Runs work on a thread of its own; what work holds is released before it counts as done.
  void start(std::function<void()> work);

 private:
  struct State;
  std::chrono::milliseconds limit_;
  std::shared_ptr<State> state_;
};

}  // namespace eyrie
