// The network tests' EchoHandler.
#include "tests/net/echo_handler.hpp"

#include <cctype>
#include <string>

#include "net/sse.hpp"

namespace eyrie::test {

namespace {

int query_int(const std::string& target, const std::string& key, int fallback) {
  auto pos = target.find(key + "=");
  if (pos == std::string::npos) return fallback;
  return std::stoi(target.substr(pos + key.size() + 1));
}

class UpperEcho : public net::WsHandler {
 public:
  UpperEcho(std::shared_ptr<net::WsWriter> writer, EchoHandler& owner)
      : writer_(std::move(writer)), owner_(owner) {}
  void on_text(std::string frame) override {
    if (frame == "close") {
      writer_->close();
      return;
    }
    if (frame == "flood") {
      // 40 MiB at once: more than socket buffers and the server's pending-frame cap together.
      for (int i = 0; i < 640; ++i) writer_->send_text(std::string(64 << 10, 'f'));
      return;
    }
    for (char& c : frame) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    writer_->send_text(std::move(frame));
  }
  void on_close() override { ++owner_.ws_closed; }

 private:
  std::shared_ptr<net::WsWriter> writer_;
  EchoHandler& owner_;
};

}  // namespace

EchoHandler::~EchoHandler() {
  for (auto& t : threads_) t.join();
}

void EchoHandler::spawn(std::function<void()> fn) {
  std::lock_guard lock(threads_mutex_);
  threads_.emplace_back(std::move(fn));
}

void EchoHandler::handle(net::HttpRequest request, std::shared_ptr<net::HttpResponder> r) {
  ++requests;
  r->on_close([this] { ++http_closed; });
  if (request.path == "/echo") {
    r->send(200, "text/plain", std::move(request.body), {{"X-Method", request.method}});
  } else if (request.path == "/stream") {
    int n = query_int(request.target, "n", 5);
    spawn([r, n] {
      r->begin_stream("text/event-stream");
      for (int i = 0; i < n; ++i) {
        r->write(net::sse_event("event " + std::to_string(i)));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      r->end();
    });
  } else if (request.path == "/hang") {
    r->begin_stream("text/event-stream");
    spawn([this, r] {
      while (!r->closed()) {
        r->write(net::sse_event("tick"));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      ++hang_saw_closed;
    });
  } else if (request.path == "/delayed") {
    int ms = query_int(request.target, "ms", 50);
    spawn([r, ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      r->send(200, "text/plain", "late");
    });
  } else if (request.path == "/wait") {
    std::lock_guard lock(mutex);
    held_responder = r;
  } else {
    r->send(404, "application/json", R"({"error":"not found","error_type":"not_found"})");
  }
}

std::shared_ptr<net::WsHandler> EchoHandler::open_websocket(const net::HttpRequest&,
                                                            std::shared_ptr<net::WsWriter> writer) {
  ++ws_opened;
  return std::make_shared<UpperEcho>(std::move(writer), *this);
}

net::HttpServerOptions EchoServer::small_limits() {
  net::HttpServerOptions o;
  o.port = 0;
  o.max_body_bytes = 64 << 10;
  o.max_ws_message_bytes = 64 << 10;
  return o;
}

EchoServer::EchoServer(net::HttpServerOptions options) : server(std::move(options), handler) {
  server.start();
  port = server.port();
}

}  // namespace eyrie::test
