#include "model/parallel/exit_waited_threads.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

namespace eyrie {

struct ExitWaitedThreads::State {
  std::mutex mu;
  std::condition_variable idle;
  int running = 0;
};

ExitWaitedThreads::ExitWaitedThreads(std::chrono::milliseconds limit)
    : limit_(limit), state_(std::make_shared<State>()) {}

ExitWaitedThreads::~ExitWaitedThreads() {
  std::unique_lock lock(state_->mu);
  state_->idle.wait_for(lock, limit_, [this] { return state_->running == 0; });
}

void ExitWaitedThreads::start(std::function<void()> work) {
  {
    std::lock_guard lock(state_->mu);
    ++state_->running;
  }
  std::thread([state = state_, work = std::move(work)]() mutable {
    work();
    work = nullptr;
    std::lock_guard done(state->mu);
    --state->running;
    state->idle.notify_all();
  }).detach();
}

}  // namespace eyrie
