// The HttpResponder handed to request logic: forwards each call to its HttpSession's strand and
// tracks whether the client is gone.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "net/http_types.hpp"
#include "net/server_state.hpp"

namespace eyrie::net {

class HttpSession;

class SessionResponder final : public HttpResponder,
                               public std::enable_shared_from_this<SessionResponder> {
 public:
  // Holds the session weakly: request logic may keep a responder long after the connection and
  // the server are gone.
  SessionResponder(std::weak_ptr<HttpSession> session, std::shared_ptr<PostGate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}

  void send(int status, std::string content_type, std::string body,
            std::map<std::string, std::string> extra_headers = {}) override;
  void begin_stream(std::string content_type) override;
  void write(std::string data) override;
  void end() override;
  bool closed() const override { return closed_.load(std::memory_order_acquire); }
  void on_close(std::function<void()> fn) override;

  // Network side, on the session's strand: the client is gone, or the server closed the
  // connection. Runs the on_close callback unless the response was already complete.
  void mark_closed();

 private:
  void post(std::function<void(HttpSession&, SessionResponder&)> fn);
  void mark_finished();

  std::weak_ptr<HttpSession> session_;
  std::shared_ptr<PostGate> gate_;
  std::atomic<bool> closed_{false};
  std::mutex mutex_;
  std::function<void()> on_close_;
  bool finished_ = false;  // send() or end() was called: a later disconnect is no news
  bool notified_ = false;
};

}  // namespace eyrie::net
