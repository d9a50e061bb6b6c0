// The HTTP/1.1 and WebSocket server that drives an HttpHandler: binds, runs the io threads,
// tracks connections and shuts them down.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "net/http_types.hpp"

namespace eyrie::net {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0 picks an ephemeral port (tests)
  int io_threads = 2;
  std::size_t max_body_bytes = 2 << 20;  // larger bodies get 413 and the connection is closed
  std::size_t max_ws_message_bytes = 2 << 20;
  std::size_t max_connections = 10000;     // beyond this new connections get 503 and are closed
  std::chrono::seconds idle_timeout{300};  // keep-alive wait and per-write limit
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, std::shared_ptr<HttpHandler> handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the io threads; throws eyrie::Error "cannot listen on host:port: reason".
  void start();
  uint16_t port() const;  // the bound port, valid after start()
  // Closes the listener; connections already open keep being served.
  void stop_accepting();
  // Closes every connection (WebSocket ones with 1001 going away), reports on_close to their
  // handlers and joins the io threads. Idempotent. Must not be called from a handler callback
  // running on a network thread, since it joins those threads.
  void stop();
  std::size_t connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace eyrie::net
