// Accepts TCP connections and starts an HttpSession for each, or turns them away when the
// server is at its connection limit.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <memory>

#include "net/server_state.hpp"

namespace eyrie::net {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(boost::asio::io_context& ioc, std::shared_ptr<ServerState> state);

  // Opens, binds and listens; the error is returned rather than thrown so the server can word it.
  boost::system::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint);
  uint16_t port() const { return port_; }
  void run();
  // Any thread: closes the acceptor on its strand.
  void close();

 private:
  void do_accept();
  void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);
  void reject(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;
  std::shared_ptr<ServerState> state_;
  uint16_t port_ = 0;
};

}  // namespace eyrie::net
