// Blocking clients built on Beast's asynchronous operations, each run on a private io_context
// with a deadline (Beast's synchronous calls cannot time out).
#include "tests/support/http_client.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cctype>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace eyrie::test {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// How long an operation cancelled at its deadline may take to report back.
constexpr std::chrono::seconds kCancelGrace{5};

bool run_until(asio::io_context& ioc, const bool& done, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!done) {
    auto now = Clock::now();
    if (now >= deadline) return false;
    ioc.restart();
    ioc.run_one_for(deadline - now);
  }
  return true;
}

// Starts an operation and waits for its completion. At the deadline cancel() is called and the
// aborted handler is still run here, because it refers to this stack frame.
template <typename Start, typename Cancel>
beast::error_code await(asio::io_context& ioc, std::chrono::milliseconds timeout, Start&& start,
                        Cancel&& cancel) {
  bool done = false;
  beast::error_code result;
  start([&](beast::error_code ec, auto&&...) {
    result = ec;
    done = true;
  });
  if (run_until(ioc, done, timeout)) return result;
  cancel();
  if (!run_until(ioc, done, kCancelGrace)) std::abort();
  return asio::error::timed_out;
}

void check(const beast::error_code& ec, const char* what) {
  if (ec) throw std::runtime_error(std::string("test client: ") + what + ": " + ec.message());
}

tcp::endpoint local(uint16_t port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

template <typename Fields>
std::map<std::string, std::string> header_map(const Fields& fields) {
  std::map<std::string, std::string> out;
  for (const auto& f : fields) out[lower(f.name_string())] = std::string(f.value());
  return out;
}

// The data of one SSE event block, or nullopt for a block without data lines (a comment).
std::optional<std::string> event_data(std::string_view block) {
  std::optional<std::string> data;
  while (!block.empty()) {
    std::size_t end = block.find('\n');
    std::string_view line = block.substr(0, end);
    block = end == std::string_view::npos ? std::string_view() : block.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.starts_with("data:")) continue;
    line.remove_prefix(5);
    if (line.starts_with(' ')) line.remove_prefix(1);
    if (data) {
      data->append("\n").append(line);
    } else {
      data.emplace(line);
    }
  }
  return data;
}

class ClientStream {
 public:
  ClientStream(uint16_t port, std::chrono::milliseconds timeout) : port_(port), timeout_(timeout) {
    check(wait([&](auto h) { stream_.async_connect(local(port), std::move(h)); }), "connect");
    stream_.socket().set_option(tcp::no_delay(true));
  }

  template <typename Start>
  beast::error_code wait(Start&& start, std::optional<std::chrono::milliseconds> timeout = {}) {
    return await(ioc_, timeout.value_or(timeout_), start, [this] {
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
    });
  }

  void write_request(const std::string& method, const std::string& target, std::string body,
                     const std::map<std::string, std::string>& headers) {
    http::request<http::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    for (const auto& [name, value] : headers) req.set(name, value);
    if (!body.empty() || method == "POST" || method == "PUT") {
      req.body() = std::move(body);
      req.prepare_payload();
    }
    check(wait([&](auto h) { http::async_write(stream_, req, std::move(h)); }), "write request");
  }

  void write_raw(std::string_view bytes) {
    check(wait([&](auto h) { asio::async_write(stream_, asio::buffer(bytes), std::move(h)); }),
          "write");
  }

  HttpResult read_response() {
    while (true) {
      http::response_parser<http::string_body> parser;
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      check(wait([&](auto h) { http::async_read(stream_, buffer_, parser, std::move(h)); }),
            "read response");
      auto& res = parser.get();
      if (res.result_int() == 100) continue;
      return {static_cast<int>(res.result_int()), header_map(res), std::move(res.body())};
    }
  }

  HttpResult read_events(const std::function<bool(const std::string&)>& on_event) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    check(wait([&](auto h) { http::async_read_header(stream_, buffer_, parser, std::move(h)); }),
          "read response header");
    HttpResult result{static_cast<int>(parser.get().result_int()), header_map(parser.get()), {}};
    std::string& pending = parser.get().body();
    if (!result.headers["content-type"].starts_with("text/event-stream")) {
      check(wait([&](auto h) { http::async_read(stream_, buffer_, parser, std::move(h)); }),
            "read response");
      result.body = std::move(pending);
      return result;
    }
    while (true) {
      for (std::size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
        std::string block = pending.substr(0, end + 2);
        pending.erase(0, end + 2);
        result.body += block;
        auto data = event_data(block);
        if (data && !on_event(*data)) {
          close();
          return result;
        }
      }
      if (parser.is_done()) return result;
      check(wait([&](auto h) { http::async_read_some(stream_, buffer_, parser, std::move(h)); }),
            "read event stream");
    }
  }

  bool wait_closed(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    char scratch[4096];
    buffer_.clear();
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      auto ec = wait(
          [&](auto h) { stream_.socket().async_read_some(asio::buffer(scratch), std::move(h)); },
          left);
      if (ec == asio::error::timed_out) return false;
      if (ec) return true;
    }
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

 private:
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
};

}  // namespace

struct HttpConnection::Impl : ClientStream {
  using ClientStream::ClientStream;
};

HttpConnection::HttpConnection(uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(port, timeout)) {}

HttpConnection::~HttpConnection() = default;

HttpResult HttpConnection::request(std::string method, std::string target, std::string body,
                                   std::map<std::string, std::string> headers) {
  impl_->write_request(method, target, std::move(body), headers);
  return impl_->read_response();
}

void HttpConnection::send_raw(std::string_view bytes) {
  impl_->write_raw(bytes);
}

HttpResult HttpConnection::read_response() {
  return impl_->read_response();
}

bool HttpConnection::wait_closed(std::chrono::milliseconds timeout) {
  return impl_->wait_closed(timeout);
}

HttpResult http_request(uint16_t port, std::string method, std::string target, std::string body,
                        std::map<std::string, std::string> headers) {
  return HttpConnection(port).request(std::move(method), std::move(target), std::move(body),
                                      std::move(headers));
}

HttpResult http_sse(uint16_t port, std::string target, std::string body,
                    std::function<bool(const std::string& data)> on_event) {
  ClientStream stream(port, kClientTimeout);
  std::map<std::string, std::string> headers{{"Accept", "text/event-stream"}};
  if (!body.empty()) headers["Content-Type"] = "application/json";
  std::string method = body.empty() ? "GET" : "POST";
  stream.write_request(method, target, std::move(body), headers);
  return stream.read_events(on_event);
}

struct WsClient::Impl {
  Impl(uint16_t port, std::chrono::milliseconds t) : timeout(t) {
    check(
        wait([&](auto h) { beast::get_lowest_layer(ws).async_connect(local(port), std::move(h)); }),
        "connect");
    beast::get_lowest_layer(ws).socket().set_option(tcp::no_delay(true));
  }
  ~Impl() { drop(); }

  template <typename Start>
  beast::error_code wait(Start&& start) {
    // A WebSocket stream is unusable after a cancelled operation, so a deadline drops it.
    return await(ioc, timeout, start, [this] { close_socket(); });
  }

  void close_socket() {
    beast::error_code ignored;
    beast::get_lowest_layer(ws).socket().close(ignored);
  }

  void drop() {
    close_socket();
    // Lets pending operations report their abort while this object still exists.
    ioc.restart();
    ioc.run_for(kCancelGrace);
  }

  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer buffer;
  std::chrono::milliseconds timeout;
  bool reading = false;
  bool read_done = false;
  beast::error_code read_ec;
};

WsClient::WsClient(uint16_t port, std::string target, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(port, timeout)) {
  std::string host = "127.0.0.1:" + std::to_string(port);
  check(impl_->wait([&](auto h) { impl_->ws.async_handshake(host, target, std::move(h)); }),
        "websocket handshake");
}

WsClient::~WsClient() = default;

void WsClient::send(std::string text) {
  impl_->ws.text(true);
  check(impl_->wait([&](auto h) { impl_->ws.async_write(asio::buffer(text), std::move(h)); }),
        "websocket send");
}

void WsClient::send_binary(std::string bytes) {
  impl_->ws.binary(true);
  check(impl_->wait([&](auto h) { impl_->ws.async_write(asio::buffer(bytes), std::move(h)); }),
        "websocket send");
}

std::optional<std::string> WsClient::receive(std::chrono::milliseconds timeout) {
  Impl& c = *impl_;
  // A read that timed out stays pending and is picked up by the next call.
  if (!c.reading) {
    if (!c.ws.is_open()) return std::nullopt;
    c.reading = true;
    c.read_done = false;
    c.ws.async_read(c.buffer, [&c](beast::error_code ec, std::size_t) {
      c.read_ec = ec;
      c.read_done = true;
      c.reading = false;
    });
  }
  if (!run_until(c.ioc, c.read_done, timeout)) return std::nullopt;
  c.read_done = false;
  if (c.read_ec) return std::nullopt;
  std::string message = beast::buffers_to_string(c.buffer.data());
  c.buffer.consume(c.buffer.size());
  return message;
}

void WsClient::close() {
  Impl& c = *impl_;
  if (!c.ws.is_open()) return;
  auto ec = c.wait([&](auto h) { c.ws.async_close(websocket::close_code::normal, std::move(h)); });
  if (ec || (c.reading && !run_until(c.ioc, c.read_done, c.timeout))) c.drop();
}

void WsClient::drop() {
  impl_->drop();
}

bool WsClient::is_open() const {
  return impl_->ws.is_open();
}

int WsClient::close_code() const {
  return static_cast<int>(impl_->ws.reason().code);
}

}  // namespace eyrie::test
