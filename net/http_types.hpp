// The seam between the network layer and the request logic: parsed requests in, replies and
// streams out. Nothing here knows about sockets or actors.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace eyrie::net {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string path;    // target without the query
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote;  // peer address, for logs
};

// How a handler answers one HTTP request: either one whole response, or a stream (SSE). Every
// method may be called from any thread; calls after the client has gone are ignored.
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  virtual void send(int status, std::string content_type, std::string body,
                    std::map<std::string, std::string> extra_headers = {}) = 0;
  // Starts a chunked 200 response; then write() any number of times and end() once.
  virtual void begin_stream(std::string content_type) = 0;
  virtual void write(std::string data) = 0;
  virtual void end() = 0;
  // True once the client has disconnected (a stream's producer should stop).
  virtual bool closed() const = 0;
  // Called once, from a network thread, when the client disconnects before end().
  virtual void on_close(std::function<void()> fn) = 0;
};

// Outbound side of one WebSocket connection: text frames queued, one write in flight.
class WsWriter {
 public:
  virtual ~WsWriter() = default;
  virtual void send_text(std::string frame) = 0;
  virtual void close() = 0;
  virtual bool closed() const = 0;
};

// Inbound side of one WebSocket connection, created when the upgrade succeeds.
class WsHandler {
 public:
  virtual ~WsHandler() = default;
  virtual void on_text(std::string frame) = 0;
  // The connection is gone (peer closed, error or server shutdown); called exactly once.
  virtual void on_close() = 0;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  virtual void handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) = 0;
  // Which paths accept a WebSocket upgrade.
  virtual bool is_websocket_path(const std::string& path) const = 0;
  virtual std::shared_ptr<WsHandler> open_websocket(const HttpRequest& upgrade,
                                                    std::shared_ptr<WsWriter> writer) = 0;
};

}  // namespace eyrie::net
