// Blocking HTTP, SSE and WebSocket clients for tests and load generation. Every operation has a
// deadline, so a broken server fails a test instead of hanging it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace eyrie::test {

inline constexpr std::chrono::milliseconds kClientTimeout{10000};

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// One keep-alive connection to 127.0.0.1:port. Failures and timeouts throw std::runtime_error.
class HttpConnection {
 public:
  explicit HttpConnection(uint16_t port, std::chrono::milliseconds timeout = kClientTimeout);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  HttpResult request(std::string method, std::string target, std::string body = "",
                     std::map<std::string, std::string> headers = {});
  // Writes bytes as they are: malformed requests, pipelined batches.
  void send_raw(std::string_view bytes);
  HttpResult read_response();
  // True when the server closes the connection within timeout; bytes it sends meanwhile are
  // discarded.
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

HttpResult http_request(uint16_t port, std::string method, std::string target,
                        std::string body = "", std::map<std::string, std::string> headers = {});

// Reads a chunked SSE response event by event and passes each event's data (data lines joined
// with \n) to on_event; returning false disconnects at once. POSTs body when it is not empty,
// else GETs. A response that is not an event stream is returned whole. result.body holds the
// raw event text received.
HttpResult http_sse(uint16_t port, std::string target, std::string body,
                    std::function<bool(const std::string& data)> on_event);

class WsClient {
 public:
  // Connects and completes the handshake; throws if the server refuses the upgrade.
  explicit WsClient(uint16_t port, std::string target = "/ws",
                    std::chrono::milliseconds timeout = kClientTimeout);
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  void send(std::string text);
  void send_binary(std::string bytes);
  // The next text or binary message; nullopt on timeout or once the connection is closed.
  std::optional<std::string> receive(std::chrono::milliseconds timeout = kClientTimeout);
  // Closing handshake with code 1000.
  void close();
  // Abrupt disconnect: the socket is closed without a close frame.
  void drop();
  bool is_open() const;
  // The code of the close frame the server sent; 0 before one arrives.
  int close_code() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace eyrie::test
