// One WebSocket connection after the upgrade: text messages in to a WsHandler, frames out
// through a queue with one write in flight.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <deque>
#include <memory>
#include <string>

#include "net/server_state.hpp"

namespace eyrie::net {

class WebsocketSession;

// The WsWriter handed to request logic; holds its session weakly, like SessionResponder.
class SessionWsWriter final : public WsWriter {
 public:
  SessionWsWriter(std::weak_ptr<WebsocketSession> session, std::shared_ptr<PostGate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}
  void send_text(std::string frame) override;
  void close() override;
  bool closed() const override { return closed_.load(std::memory_order_acquire); }
  void mark_closed() { closed_.store(true, std::memory_order_release); }

 private:
  std::weak_ptr<WebsocketSession> session_;
  std::shared_ptr<PostGate> gate_;
  std::atomic<bool> closed_{false};
};

class WebsocketSession final : public Session,
                               public std::enable_shared_from_this<WebsocketSession> {
 public:
  WebsocketSession(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<ServerState> state,
                   std::string remote);
  ~WebsocketSession() override;

  void run(boost::beast::http::request<boost::beast::http::string_body> upgrade);
  // Sends 1001 going away; the connection ends when the peer answers or the socket is closed.
  void shutdown() override;
  void force_close() override;
  const boost::asio::any_io_executor& executor() const { return executor_; }

  // On the strand, from SessionWsWriter.
  void queue_text(std::string frame);
  void request_close();

 private:
  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t);
  void do_write();
  void on_written(boost::beast::error_code ec, std::size_t);
  void start_close(boost::beast::websocket::close_reason reason);
  void finish();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::asio::any_io_executor executor_;
  std::shared_ptr<ServerState> state_;
  uint64_t id_ = 0;
  std::string remote_;
  HttpRequest upgrade_;  // kept for open_websocket, which runs after the handshake
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<WsHandler> handler_;
  std::shared_ptr<SessionWsWriter> writer_;
  std::deque<std::string> out_;
  std::size_t out_bytes_ = 0;
  bool writing_ = false;
  bool accepted_ = false;
  bool close_requested_ = false;  // close once the queued frames are out
  boost::beast::websocket::close_reason close_reason_{boost::beast::websocket::close_code::normal};
  bool closing_ = false;          // close frame sent or being sent
  bool finished_ = false;         // on_close reported
};

}  // namespace eyrie::net
