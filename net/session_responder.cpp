// Thread-safe forwarding from request logic to one HTTP connection.
#include "net/session_responder.hpp"

#include <boost/asio/post.hpp>

#include "net/http_session.hpp"

namespace eyrie::net {

void SessionResponder::post(std::function<void(HttpSession&, SessionResponder&)> fn) {
  gate_->run_if_open([&] {
    auto session = session_.lock();
    if (!session) return;
    boost::asio::post(session->executor(), [session, self = shared_from_this(),
                                            fn = std::move(fn)] { fn(*session, *self); });
  });
}

void SessionResponder::mark_finished() {
  std::lock_guard lock(mutex_);
  finished_ = true;
}

void SessionResponder::send(int status, std::string content_type, std::string body,
                            std::map<std::string, std::string> extra_headers) {
  mark_finished();
  post([status, content_type = std::move(content_type), body = std::move(body),
        extra_headers = std::move(extra_headers)](HttpSession& s, SessionResponder& r) mutable {
    s.on_send(r, status, std::move(content_type), std::move(body), std::move(extra_headers));
  });
}

void SessionResponder::begin_stream(std::string content_type) {
  post([content_type = std::move(content_type)](HttpSession& s, SessionResponder& r) mutable {
    s.on_begin_stream(r, std::move(content_type));
  });
}

void SessionResponder::write(std::string data) {
  if (closed()) return;
  post([data = std::move(data)](HttpSession& s, SessionResponder& r) mutable {
    s.on_write(r, std::move(data));
  });
}

void SessionResponder::end() {
  mark_finished();
  post([](HttpSession& s, SessionResponder& r) { s.on_end(r); });
}

void SessionResponder::on_close(std::function<void()> fn) {
  std::unique_lock lock(mutex_);
  if (closed() && !finished_ && !notified_) {
    // Registered after the disconnect: run it now so the producer still learns of it.
    notified_ = true;
    lock.unlock();
    if (fn) fn();
    return;
  }
  on_close_ = std::move(fn);
}

void SessionResponder::mark_closed() {
  std::function<void()> fn;
  {
    std::lock_guard lock(mutex_);
    closed_.store(true, std::memory_order_release);
    if (finished_ || notified_ || !on_close_) return;
    notified_ = true;
    fn = std::move(on_close_);
  }
  try {
    fn();
  } catch (...) {
    // The connection is gone either way; a throwing callback must not unwind the network thread.
  }
}

}  // namespace eyrie::net
