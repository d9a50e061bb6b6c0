// The accept loop of HttpServer.
#include "net/listener.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "net/beast_names.hpp"
#include "net/http_messages.hpp"
#include "net/http_session.hpp"

namespace eyrie::net {

Listener::Listener(asio::io_context& ioc, std::shared_ptr<ServerState> state)
    : ioc_(ioc),
      acceptor_(asio::make_strand(ioc)),
      retry_timer_(acceptor_.get_executor()),
      state_(std::move(state)) {}

boost::system::error_code Listener::listen(const tcp::endpoint& endpoint) {
  boost::system::error_code ec;
  if (acceptor_.open(endpoint.protocol(), ec)) return ec;
  if (acceptor_.set_option(asio::socket_base::reuse_address(true), ec)) return ec;
  if (acceptor_.bind(endpoint, ec)) return ec;
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) return ec;
  port_ = acceptor_.local_endpoint(ec).port();
  return ec;
}

void Listener::run() {
  asio::post(acceptor_.get_executor(),
             beast::bind_front_handler(&Listener::do_accept, shared_from_this()));
}

void Listener::close() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
    self->retry_timer_.cancel();
  });
}

void Listener::do_accept() {
  if (!acceptor_.is_open()) return;
  // Each connection gets its own strand, so its handlers never run concurrently.
  acceptor_.async_accept(asio::make_strand(ioc_),
                         beast::bind_front_handler(&Listener::on_accept, shared_from_this()));
}

void Listener::on_accept(boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec) {
    // Typically out of file descriptors: retrying at once would spin, so back off briefly.
    retry_timer_.expires_after(std::chrono::milliseconds(50));
    retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
      if (!wait_ec) self->do_accept();
    });
    return;
  }
  if (state_->connections() >= state_->options().max_connections) {
    reject(std::move(socket));
  } else {
    std::make_shared<HttpSession>(std::move(socket), state_)->run();
  }
  do_accept();
}

void Listener::reject(tcp::socket socket) {
  struct Rejected {
    beast::tcp_stream stream;
    std::string reply;
  };
  auto r = std::make_shared<Rejected>(
      Rejected{beast::tcp_stream(std::move(socket)),
               error_reply(503, "too many connections", "overloaded", 11)});
  r->stream.expires_after(std::chrono::seconds(5));
  asio::async_write(r->stream, asio::buffer(r->reply), [r](boost::system::error_code, std::size_t) {
    boost::system::error_code ignored;
    r->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    r->stream.close();
  });
}

}  // namespace eyrie::net
