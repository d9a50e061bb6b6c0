// One HTTP/1.1 connection, from the first request read to the last byte written.
#include "net/http_session.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <vector>

#include "net/beast_names.hpp"
#include "net/http_messages.hpp"
#include "net/session_responder.hpp"
#include "net/websocket_session.hpp"

namespace eyrie::net {

namespace {

// Requests a client may pipeline ahead of the one being answered; beyond this the session stops
// reading until the queue drains.
constexpr std::size_t kMaxQueuedRequests = 16;
// Response bytes waiting for a client that does not read; beyond this it is disconnected.
constexpr std::size_t kMaxPendingBytes = 16 << 20;
constexpr std::size_t kMaxBuffersPerWrite = 64;
// After the last response of a closing connection, how long unread request bytes are drained
// so the client sees the response instead of a reset.
constexpr std::chrono::seconds kLingerTime{2};

std::string peer_name(const tcp::socket& socket) {
  beast::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return {};
  auto address = ep.address().to_string();
  if (ep.address().is_v6()) address = "[" + address + "]";
  return address + ":" + std::to_string(ep.port());
}

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

std::string parse_error_reply(const beast::error_code& ec, std::size_t max_body) {
  if (ec == http::error::body_limit) {
    return error_reply(413, "request body is larger than " + std::to_string(max_body) + " bytes",
                       "payload_too_large", 11);
  }
  if (ec == http::error::header_limit) {
    return error_reply(431, "request header fields too large", "bad_request", 11);
  }
  return error_reply(400, "malformed request: " + ec.message(), "bad_request", 11);
}

}  // namespace

HttpSession::HttpSession(tcp::socket&& socket, std::shared_ptr<ServerState> state)
    : stream_(std::move(socket)),
      executor_(stream_.get_executor()),
      state_(std::move(state)),
      remote_(peer_name(stream_.socket())),
      timer_(executor_) {
  // Streamed tokens are small writes; Nagle's algorithm would hold each one back for an ACK.
  beast::error_code ignored;
  stream_.socket().set_option(tcp::no_delay(true), ignored);
}

HttpSession::~HttpSession() {
  if (id_ != 0) state_->remove(id_);
}

void HttpSession::run() {
  id_ = state_->add(weak_from_this());
  asio::post(executor_, [self = shared_from_this()] {
    // stop() may have taken its snapshot of the sessions before this one registered.
    if (self->state_->stopping()) {
      self->close_now();
      return;
    }
    self->arm_idle_timer();
    self->do_read();
  });
}

void HttpSession::shutdown() {
  asio::post(executor_, [self = shared_from_this()] { self->close_now(); });
}

void HttpSession::do_read() {
  if (closed_ || reading_) return;
  if (read_stopped_) {
    // No more requests will be read, but a disconnect must still be noticed while a reply is
    // owed or while lingering. Bytes after an upgrade request belong to the WebSocket.
    if (upgrade_pending_) return;
    reading_ = true;
    stream_.expires_never();
    stream_.async_read_some(
        asio::buffer(drain_),
        beast::bind_front_handler(&HttpSession::on_drained, shared_from_this()));
    return;
  }
  if (queue_.size() >= kMaxQueuedRequests) return;
  parser_.emplace();
  parser_->body_limit(state_->options().max_body_bytes);
  // Reads stay outstanding while a reply streams (to notice disconnects), so they get no
  // deadline of their own; the idle timer covers a silent client.
  stream_.expires_never();
  reading_ = true;
  http::async_read_header(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&HttpSession::on_header, shared_from_this()));
}

void HttpSession::on_header(beast::error_code ec, std::size_t bytes) {
  if (ec || closed_ || lingering_ || parser_->is_done()) {
    on_read(ec, bytes);
    return;
  }
  // curl and others wait for this before sending a large body. It may only go out when nothing
  // else is being written, or it would land inside the previous response.
  auto expect = parser_->get()[http::field::expect];
  if (beast::iequals(expect, "100-continue") && phase_ == Phase::idle && queue_.empty() &&
      out_.empty()) {
    queue_write("HTTP/1.1 100 Continue\r\n\r\n");
  }
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  reading_ = false;
  if (closed_) return;
  if (lingering_) {
    if (ec) {
      close_now();
    } else {
      do_read();
    }
    return;
  }
  if (ec) {
    if (!is_parse_error(ec)) {
      close_now();
      return;
    }
    queue_.push_back(Pending{{}, false, parse_error_reply(ec, state_->options().max_body_bytes)});
    read_stopped_ = true;
    pump();
    do_read();
    return;
  }
  Request request = parser_->release();
  std::string_view target = request.target();
  std::string path(target.substr(0, target.find('?')));
  bool upgrade = websocket::is_upgrade(request) && state_->handler().is_websocket_path(path);
  if (upgrade) upgrade_pending_ = true;
  if (upgrade || !request.keep_alive()) read_stopped_ = true;
  queue_.push_back(Pending{std::move(request), upgrade, {}});
  ++timer_generation_;  // no longer idle
  pump();
  do_read();
}

void HttpSession::on_drained(beast::error_code ec, std::size_t) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    close_now();
  } else {
    do_read();
  }
}

void HttpSession::pump() {
  while (!closed_ && !lingering_ && !close_after_write_ && phase_ == Phase::idle &&
         !queue_.empty()) {
    Pending& next = queue_.front();
    if (!next.error_reply.empty()) {
      std::string reply = std::move(next.error_reply);
      queue_.clear();
      close_after_write_ = true;
      queue_write(std::move(reply));
      return;
    }
    if (next.upgrade) {
      // The replies to earlier requests go out before the socket changes hands.
      if (!out_.empty() || reading_) return;
      Request request = std::move(next.request);
      queue_.clear();
      upgrade(std::move(request));
      return;
    }
    Request request = std::move(next.request);
    queue_.pop_front();
    dispatch(std::move(request));
  }
}

void HttpSession::dispatch(Request request) {
  ++timer_generation_;
  timer_.cancel();
  version_ = request.version();
  keep_alive_ = request.keep_alive();
  current_ = std::make_shared<SessionResponder>(weak_from_this(), state_->gate());
  phase_ = Phase::waiting;
  self_ = shared_from_this();
  auto responder = current_;
  try {
    state_->handler().handle(to_http_request(std::move(request), remote_), responder);
  } catch (const std::exception& e) {
    on_send(*responder, 500, "application/json", json_error(e.what(), "internal"), {});
  } catch (...) {
    on_send(*responder, 500, "application/json", json_error("unknown error", "internal"), {});
  }
}

void HttpSession::upgrade(Request request) {
  closed_ = true;  // the socket now belongs to the WebSocket session
  ++timer_generation_;
  timer_.cancel();
  // The connection is counted once: from here by the WebSocket session.
  state_->remove(id_);
  id_ = 0;
  auto ws = std::make_shared<WebsocketSession>(stream_.release_socket(), state_, remote_);
  ws->run(std::move(request));
}

bool HttpSession::is_current(const SessionResponder& r) const {
  return !closed_ && current_.get() == &r;
}

void HttpSession::on_send(SessionResponder& r, int status, std::string content_type,
                          std::string body, std::map<std::string, std::string> extra_headers) {
  if (!is_current(r) || phase_ != Phase::waiting) return;
  queue_write(serialize_response(static_cast<unsigned>(status), version_, keep_alive_, content_type,
                                 std::move(body), extra_headers));
  finish_response();
}

void HttpSession::on_begin_stream(SessionResponder& r, std::string content_type) {
  if (!is_current(r) || phase_ != Phase::waiting) return;
  if (version_ < 11) keep_alive_ = false;  // an HTTP/1.0 stream ends when the connection does
  phase_ = Phase::streaming;
  queue_write(stream_header(version_, keep_alive_, content_type));
}

void HttpSession::on_write(SessionResponder& r, std::string data) {
  // An empty chunk would end the body, so empty writes are dropped.
  if (!is_current(r) || phase_ != Phase::streaming || data.empty()) return;
  queue_write(version_ >= 11 ? chunk(data) : std::move(data));
}

void HttpSession::on_end(SessionResponder& r) {
  if (!is_current(r)) return;
  if (phase_ == Phase::waiting) {
    on_send(r, 500, "application/json",
            json_error("the handler ended a response it never began", "internal"), {});
    return;
  }
  if (phase_ != Phase::streaming) return;
  if (version_ >= 11) queue_write(std::string(kLastChunk));
  finish_response();
}

void HttpSession::finish_response() {
  current_.reset();
  phase_ = Phase::idle;
  self_.reset();  // callers hold their own reference
  if (closed_) return;
  if (!keep_alive_) {
    queue_.clear();
    read_stopped_ = true;
    close_after_write_ = true;
    if (out_.empty()) linger();
    return;
  }
  pump();
  do_read();
  arm_idle_timer();
}

void HttpSession::queue_write(std::string bytes) {
  if (closed_) return;
  out_bytes_ += bytes.size();
  if (out_bytes_ > kMaxPendingBytes) {
    close_now();
    return;
  }
  out_.push_back(std::move(bytes));
  if (writing_count_ == 0) do_write();
}

void HttpSession::do_write() {
  std::vector<asio::const_buffer> buffers;
  for (std::size_t i = 0; i < out_.size() && i < kMaxBuffersPerWrite; ++i) {
    buffers.push_back(asio::buffer(out_[i]));
  }
  writing_count_ = buffers.size();
  stream_.expires_after(state_->options().idle_timeout);
  asio::async_write(stream_, buffers,
                    beast::bind_front_handler(&HttpSession::on_written, shared_from_this()));
}

void HttpSession::on_written(beast::error_code ec, std::size_t) {
  std::size_t count = writing_count_;
  writing_count_ = 0;
  if (closed_) return;
  if (ec) {
    close_now();
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    out_bytes_ -= out_.front().size();
    out_.pop_front();
  }
  if (!out_.empty()) {
    do_write();
  } else if (close_after_write_) {
    linger();
  } else {
    pump();
  }
}

void HttpSession::arm_idle_timer() {
  if (closed_ || lingering_ || phase_ != Phase::idle || !queue_.empty()) return;
  uint64_t generation = ++timer_generation_;
  timer_.expires_after(state_->options().idle_timeout);
  timer_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
    if (!ec && generation == self->timer_generation_) self->close_now();
  });
}

void HttpSession::linger() {
  if (lingering_ || closed_) return;
  lingering_ = true;
  read_stopped_ = true;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  uint64_t generation = ++timer_generation_;
  timer_.expires_after(kLingerTime);
  timer_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
    if (!ec && generation == self->timer_generation_) self->close_now();
  });
  do_read();
}

void HttpSession::close_now() {
  if (closed_) return;
  closed_ = true;
  ++timer_generation_;
  timer_.cancel();
  stream_.close();
  queue_.clear();
  // A write in flight still points into out_; it is dropped with the session.
  if (writing_count_ == 0) out_.clear();
  phase_ = Phase::idle;
  auto responder = std::move(current_);
  auto self = std::move(self_);
  if (responder) responder->mark_closed();
}

}  // namespace eyrie::net
