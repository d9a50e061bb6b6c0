// One HTTP/1.1 connection: reads requests (pipelined ones queue up), hands each to the
// HttpHandler in turn, writes its reply or stream, and upgrades to a WebsocketSession.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "net/server_state.hpp"

namespace eyrie::net {

class SessionResponder;

class HttpSession final : public Session, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<ServerState> state);
  ~HttpSession() override;

  void run();
  void shutdown() override;
  void force_close() override { shutdown(); }
  const boost::asio::any_io_executor& executor() const { return executor_; }

  // Called on the strand by SessionResponder; calls from a responder that is no longer the
  // current one, or out of order, are ignored.
  void on_send(SessionResponder& r, int status, std::string content_type, std::string body,
               std::map<std::string, std::string> extra_headers);
  void on_begin_stream(SessionResponder& r, std::string content_type);
  void on_write(SessionResponder& r, std::string data);
  void on_end(SessionResponder& r);

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  // A request read but not yet handled, or an error reply that ends the connection.
  struct Pending {
    Request request;
    bool upgrade = false;
    std::string error_reply;
  };
  enum class Phase { idle, waiting, streaming };

  void do_read();
  void on_header(boost::beast::error_code ec, std::size_t);
  void on_read(boost::beast::error_code ec, std::size_t);
  void on_drained(boost::beast::error_code ec, std::size_t);
  void pump();
  void dispatch(Request request);
  void upgrade(Request request);
  void finish_response();
  void queue_write(std::string bytes);
  void do_write();
  void on_written(boost::beast::error_code ec, std::size_t);
  void arm_idle_timer();
  void linger();
  void close_now();
  bool is_current(const SessionResponder& r) const;

  boost::beast::tcp_stream stream_;
  boost::asio::any_io_executor executor_;
  std::shared_ptr<ServerState> state_;
  uint64_t id_ = 0;
  std::string remote_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::deque<Pending> queue_;
  bool reading_ = false;
  bool read_stopped_ = false;  // after an error, an upgrade or Connection: close
  bool upgrade_pending_ = false;

  std::shared_ptr<SessionResponder> current_;
  Phase phase_ = Phase::idle;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  // Keeps the session alive while request logic owes it a reply and no I/O is pending.
  std::shared_ptr<HttpSession> self_;

  std::deque<std::string> out_;
  std::size_t out_bytes_ = 0;
  std::size_t writing_count_ = 0;  // buffers of out_ in the write in flight; 0 when none
  bool close_after_write_ = false;

  boost::asio::steady_timer timer_;  // idle timeout, then the linger deadline
  uint64_t timer_generation_ = 0;
  bool lingering_ = false;
  bool closed_ = false;
  char drain_[4096];  // bytes read only to notice a disconnect, then dropped
};

}  // namespace eyrie::net
