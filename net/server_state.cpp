// The connection registry of one HttpServer.
#include "net/server_state.hpp"

#include <vector>

namespace eyrie::net {

uint64_t ServerState::add(std::weak_ptr<Session> session) {
  std::lock_guard lock(mutex_);
  uint64_t id = next_id_++;
  sessions_.emplace(id, std::move(session));
  return id;
}

void ServerState::remove(uint64_t id) {
  std::lock_guard lock(mutex_);
  sessions_.erase(id);
  if (sessions_.empty()) empty_.notify_all();
}

std::size_t ServerState::connections() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::vector<std::shared_ptr<Session>> ServerState::live_sessions() const {
  std::vector<std::shared_ptr<Session>> live;
  std::lock_guard lock(mutex_);
  for (const auto& [id, weak] : sessions_) {
    if (auto s = weak.lock()) live.push_back(std::move(s));
  }
  return live;
}

// The sessions are called outside the lock: one released here unregisters itself, which takes
// the lock.
bool ServerState::stopping() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void ServerState::shutdown_all() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  for (auto& s : live_sessions()) s->shutdown();
}

void ServerState::force_close_all() {
  for (auto& s : live_sessions()) s->force_close();
}

bool ServerState::wait_until_empty(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return empty_.wait_for(lock, timeout, [this] { return sessions_.empty(); });
}

}  // namespace eyrie::net
