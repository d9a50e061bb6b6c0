// State every session of one HttpServer shares: options, the request handler, the registry of
// live connections that stop() walks, and the gate that keeps late callers off a dead io_context.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "net/http_server.hpp"
#include "net/http_types.hpp"

namespace eyrie::net {

// A live connection as the server sees it: something it can count and shut down.
class Session {
 public:
  virtual ~Session() = default;
  // Closes the connection from the server side and reports on_close to its handler; may be
  // called from any thread.
  virtual void shutdown() = 0;
  // Drops the connection without any closing handshake; for peers that ignore shutdown().
  virtual void force_close() = 0;
};

// Responders and writers are handed to request logic that may outlive the server. They post to
// their session only while this gate is open; the server shuts it after its io threads are
// joined, so nothing is posted to an io_context that is being destroyed.
class PostGate {
 public:
  template <typename F>
  void run_if_open(F&& f) {
    std::lock_guard lock(mutex_);
    if (open_) f();
  }
  void shut() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }

 private:
  std::mutex mutex_;
  bool open_ = true;
};

class ServerState {
 public:
  ServerState(HttpServerOptions options, std::shared_ptr<HttpHandler> handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        gate_(std::make_shared<PostGate>()) {}

  const HttpServerOptions& options() const { return options_; }
  HttpHandler& handler() const { return *handler_; }
  const std::shared_ptr<PostGate>& gate() const { return gate_; }

  uint64_t add(std::weak_ptr<Session> session);
  void remove(uint64_t id);
  std::size_t connections() const;
  // Marks the server as stopping (sessions registered later close at once) and shuts down
  // every live session.
  void shutdown_all();
  bool stopping() const;
  void force_close_all();
  // Waits until every registered session is gone or the timeout passes; true when all gone.
  bool wait_until_empty(std::chrono::milliseconds timeout);

 private:
  std::vector<std::shared_ptr<Session>> live_sessions() const;

  HttpServerOptions options_;
  std::shared_ptr<HttpHandler> handler_;
  std::shared_ptr<PostGate> gate_;
  mutable std::mutex mutex_;
  std::condition_variable empty_;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;
};

}  // namespace eyrie::net
