// A small HttpHandler for the network tests: echo, streamed and never-ending responses, late
// answers from other threads, and an uppercasing WebSocket echo; it counts what it saw.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "net/http_server.hpp"
#include "net/http_types.hpp"

namespace eyrie::test {

// Routes:
//   /echo            the request body back, with the method in x-method
//   /stream?n=N      N SSE events "event i", written from another thread with small pauses
//   /hang            an SSE stream that ticks until the client disconnects
//   /delayed?ms=N    "late", sent from another thread after N ms
//   /wait            never answered; the responder is kept in held_responder
//   /ws              WebSocket: each text message comes back uppercased; "close" makes the
//                    server close the connection, "flood" sends 40 MiB of frames at once
class EchoHandler : public net::HttpHandler {
 public:
  ~EchoHandler() override;

  void handle(net::HttpRequest request, std::shared_ptr<net::HttpResponder> responder) override;
  bool is_websocket_path(const std::string& path) const override { return path == "/ws"; }
  std::shared_ptr<net::WsHandler> open_websocket(const net::HttpRequest& upgrade,
                                                 std::shared_ptr<net::WsWriter> writer) override;

  // Waits until pred() holds or timeout passes; pred reads the counters below.
  template <typename Pred>
  bool wait_for(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  std::atomic<int> requests{0};
  std::atomic<int> http_closed{0};      // on_close calls from HTTP responders
  std::atomic<int> hang_saw_closed{0};  // /hang producers that saw closed() and stopped
  std::atomic<int> ws_opened{0};
  std::atomic<int> ws_closed{0};
  std::mutex mutex;
  std::shared_ptr<net::HttpResponder> held_responder;

 private:
  void spawn(std::function<void()> fn);
  std::mutex threads_mutex_;
  std::vector<std::thread> threads_;
};

// A started server on an ephemeral port with small limits, around an EchoHandler.
struct EchoServer {
  explicit EchoServer(net::HttpServerOptions options = small_limits());
  static net::HttpServerOptions small_limits();

  std::shared_ptr<EchoHandler> handler = std::make_shared<EchoHandler>();
  net::HttpServer server;
  uint16_t port = 0;
};

}  // namespace eyrie::test
