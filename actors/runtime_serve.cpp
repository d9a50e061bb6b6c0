// Serving the runtime over HTTP and WebSocket, and draining it on shutdown.
#include <algorithm>
#include <chrono>
#include <thread>

#include "actors/http_frontend.hpp"
#include "actors/runtime_impl.hpp"
#include "net/http_server.hpp"

namespace eyrie {

uint16_t Runtime::serve(const std::string& host, uint16_t port) {
  net::HttpServerOptions o;
  o.host = host;
  o.port = port;
  impl_->server = std::make_unique<net::HttpServer>(o, make_http_frontend(*impl_));
  impl_->server->start();
  return impl_->server->port();
}

void Runtime::shutdown(std::chrono::milliseconds grace) {
  if (impl_->server) impl_->server->stop_accepting();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    RuntimeStats s = stats();
    if (s.waiting == 0 && s.running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& s : impl_->schedulers) caf::anon_send(s, drain_atom_v);
  // Let the cancellations reach their sessions before the sockets close.
  for (int i = 0; i < 100; ++i) {
    RuntimeStats s = stats();
    if (s.waiting == 0 && s.running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // A request the schedulers are done with may still have its last frame in its session's
  // mailbox; the connections close once every session has handed it over.
  const auto flushed_by = std::max(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1));
  while (impl_->replies_pending.load() > 0 && std::chrono::steady_clock::now() < flushed_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (impl_->server) {
    impl_->server->stop();
    impl_->server.reset();
  }
}

}  // namespace eyrie
