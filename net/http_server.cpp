// HttpServer: the io_context and its threads, the listener, and the order of shutdown.
#include "net/http_server.hpp"

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <pthread.h>

#include "model/error.hpp"
#include "net/listener.hpp"
#include "net/server_state.hpp"

namespace eyrie::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// How long stop() lets peers answer a WebSocket close frame before dropping them.
constexpr std::chrono::milliseconds kCloseGrace{1000};
constexpr std::chrono::milliseconds kForceGrace{2000};

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions options, std::shared_ptr<HttpHandler> handler)
      : ioc(std::max(1, options.io_threads)),
        state(std::make_shared<ServerState>(std::move(options), std::move(handler))) {}

  // Declared first so it is destroyed last: everything below holds I/O objects bound to it.
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<ServerState> state;
  std::shared_ptr<Listener> listener;
  std::vector<std::thread> threads;
  std::mutex mutex;
  bool started = false;
  bool stopped = false;
  uint16_t port = 0;
};

HttpServer::HttpServer(HttpServerOptions options, std::shared_ptr<HttpHandler> handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->started || impl_->stopped) throw Error("the HTTP server can only be started once");
  const auto& options = impl_->state->options();
  std::string where = options.host + ":" + std::to_string(options.port);

  boost::system::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) throw Error("cannot listen on " + where + ": " + ec.message());
  if (endpoints.empty()) throw Error("cannot listen on " + where + ": no address");

  auto listener = std::make_shared<Listener>(impl_->ioc, impl_->state);
  if ((ec = listener->listen(endpoints.begin()->endpoint()))) {
    throw Error("cannot listen on " + where + ": " + ec.message());
  }
  impl_->listener = listener;
  impl_->port = listener->port();
  impl_->started = true;
  listener->run();

  impl_->work.emplace(impl_->ioc.get_executor());
  int n = std::max(1, options.io_threads);
  for (int i = 0; i < n; ++i) {
    impl_->threads.emplace_back([this] {
      pthread_setname_np(pthread_self(), "eyrie.io");  // for top, perf and the load generator
      // Sessions catch what request logic throws; anything reaching here is a bug, but one
      // connection's bug must not take the whole server down with std::terminate.
      while (true) {
        try {
          impl_->ioc.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "eyrie: network thread: %s\n", e.what());
        } catch (...) {
          std::fprintf(stderr, "eyrie: network thread: unknown exception\n");
        }
      }
    });
  }
}

uint16_t HttpServer::port() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->port;
}

void HttpServer::stop_accepting() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->listener) impl_->listener->close();
}

void HttpServer::stop() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->stopped) return;
  impl_->stopped = true;
  if (impl_->started) {
    impl_->listener->close();
    impl_->state->shutdown_all();
    if (!impl_->state->wait_until_empty(kCloseGrace)) {
      impl_->state->force_close_all();
      impl_->state->wait_until_empty(kForceGrace);
    }
    impl_->work.reset();
    impl_->ioc.stop();
    for (auto& t : impl_->threads) t.join();
    impl_->threads.clear();
  }
  // From here responders and writers still held by request logic post nothing.
  impl_->state->gate()->shut();
}

std::size_t HttpServer::connections() const {
  return impl_->state->connections();
}

}  // namespace eyrie::net
