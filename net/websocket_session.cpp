// One WebSocket connection: handshake, read loop, outbound queue and the closing handshake.
#include "net/websocket_session.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/field.hpp>

#include "net/beast_names.hpp"
#include "net/http_messages.hpp"

namespace eyrie::net {

namespace {

// Frames waiting for a client that does not read; beyond this it is disconnected, since a
// close frame would only queue behind them.
constexpr std::size_t kMaxPendingBytes = 16 << 20;
// Messages are read in pieces of this size, so one over the limit is noticed early.
constexpr std::size_t kReadChunk = 64 << 10;

}  // namespace

void SessionWsWriter::send_text(std::string frame) {
  if (closed()) return;
  gate_->run_if_open([&] {
    auto session = session_.lock();
    if (!session) return;
    asio::post(session->executor(), [session, frame = std::move(frame)]() mutable {
      session->queue_text(std::move(frame));
    });
  });
}

void SessionWsWriter::close() {
  mark_closed();
  gate_->run_if_open([&] {
    auto session = session_.lock();
    if (!session) return;
    asio::post(session->executor(), [session] { session->request_close(); });
  });
}

WebsocketSession::WebsocketSession(tcp::socket&& socket, std::shared_ptr<ServerState> state,
                                   std::string remote)
    : ws_(std::move(socket)),
      executor_(ws_.get_executor()),
      state_(std::move(state)),
      remote_(std::move(remote)) {}

WebsocketSession::~WebsocketSession() {
  if (id_ != 0) state_->remove(id_);
}

void WebsocketSession::run(http::request<http::string_body> upgrade) {
  id_ = state_->add(weak_from_this());
  if (state_->stopping()) {
    finish();
    return;
  }
  upgrade_ = to_http_request(http::request<http::string_body>(upgrade), remote_);

  // The WebSocket stream keeps its own timeouts (handshake, idle pings); the TCP layer's would
  // cut long-lived connections.
  beast::get_lowest_layer(ws_).expires_never();
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "eyrie"); }));
  // The message limit is enforced in on_read: Beast's own check tears the connection down in a
  // way that can reset it before the client has read the 1009 close frame.
  ws_.read_message_max(0);
  ws_.async_accept(upgrade,
                   beast::bind_front_handler(&WebsocketSession::on_accept, shared_from_this()));
}

void WebsocketSession::on_accept(beast::error_code ec) {
  // A failed handshake has already been answered by Beast; nothing was opened, nothing to report.
  if (ec || finished_) return;
  accepted_ = true;
  writer_ = std::make_shared<SessionWsWriter>(weak_from_this(), state_->gate());
  try {
    handler_ = state_->handler().open_websocket(upgrade_, writer_);
    if (!handler_) start_close({websocket::close_code::policy_error, "not accepted"});
  } catch (...) {
    start_close(websocket::close_code::internal_error);
  }
  do_read();
}

void WebsocketSession::shutdown() {
  asio::post(executor_, [self = shared_from_this()] {
    if (!self->accepted_) {
      self->finish();
      return;
    }
    // After the frames already queued, which a close must not overtake (nor run beside their write).
    self->close_reason_ = {websocket::close_code::going_away, "server shutting down"};
    self->request_close();
  });
}

void WebsocketSession::force_close() {
  asio::post(executor_, [self = shared_from_this()] { self->finish(); });
}

void WebsocketSession::do_read() {
  ws_.async_read_some(buffer_, kReadChunk,
                      beast::bind_front_handler(&WebsocketSession::on_read, shared_from_this()));
}

// After start_close() no further read is issued: the close operation itself reads and discards
// the rest of the peer's frames until its close frame arrives, then the session finishes.
void WebsocketSession::on_read(beast::error_code ec, std::size_t) {
  // Errors include the peer's close and the idle timeout; all of them end the connection.
  if (ec) {
    finish();
    return;
  }
  if (!ws_.got_text()) {
    buffer_.clear();
    start_close({websocket::close_code::unknown_data, "binary messages are not supported"});
    return;
  }
  if (buffer_.size() > state_->options().max_ws_message_bytes) {
    buffer_.clear();
    start_close({websocket::close_code::too_big, "message too big"});
    return;
  }
  if (!ws_.is_message_done()) {
    do_read();
    return;
  }
  std::string text = beast::buffers_to_string(buffer_.data());
  buffer_.clear();
  if (handler_ && !closing_) {
    try {
      handler_->on_text(std::move(text));
    } catch (...) {
      start_close(websocket::close_code::internal_error);
    }
  }
  do_read();
}

void WebsocketSession::queue_text(std::string frame) {
  if (finished_ || closing_ || close_requested_) return;
  out_bytes_ += frame.size();
  if (out_bytes_ > kMaxPendingBytes) {
    finish();
    return;
  }
  out_.push_back(std::move(frame));
  if (!writing_) do_write();
}

void WebsocketSession::do_write() {
  writing_ = true;
  ws_.text(true);
  ws_.async_write(asio::buffer(out_.front()),
                  beast::bind_front_handler(&WebsocketSession::on_written, shared_from_this()));
}

void WebsocketSession::on_written(beast::error_code ec, std::size_t) {
  writing_ = false;
  if (finished_) return;
  if (ec) {
    finish();
    return;
  }
  out_bytes_ -= out_.front().size();
  out_.pop_front();
  if (closing_) return;
  if (!out_.empty()) {
    do_write();
  } else if (close_requested_) {
    start_close(close_reason_);
  }
}

void WebsocketSession::request_close() {
  if (finished_ || closing_) return;
  close_requested_ = true;
  if (!writing_) start_close(close_reason_);
}

void WebsocketSession::start_close(websocket::close_reason reason) {
  if (closing_ || finished_) return;
  closing_ = true;
  if (writer_) writer_->mark_closed();
  ws_.async_close(reason, [self = shared_from_this()](beast::error_code) { self->finish(); });
}

void WebsocketSession::finish() {
  if (finished_) return;
  finished_ = true;
  closing_ = true;
  if (writer_) writer_->mark_closed();
  // A write in flight still points into the front frame; it is dropped with the session.
  if (!writing_) out_.clear();
  beast::get_lowest_layer(ws_).close();
  if (auto handler = std::move(handler_)) {
    try {
      handler->on_close();
    } catch (...) {
      // The connection is gone either way; there is no one left to tell.
    }
  }
}

}  // namespace eyrie::net
