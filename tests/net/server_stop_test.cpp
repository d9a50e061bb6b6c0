// Shutting the server down with work in flight, and responders that outlive the server.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/net/echo_handler.hpp"
#include "tests/support/http_client.hpp"

namespace eyrie::test {
namespace {

using namespace std::chrono_literals;

TEST(HttpServerStop, ClosesStreamsSocketsAndWaitingRequests) {
  EchoServer s;
  std::thread stream([&] {
    try {
      http_sse(s.port, "/hang", "", [](const std::string&) { return true; });
    } catch (const std::runtime_error&) {
      // The server cut the stream, as it should.
    }
  });
  HttpConnection waiting(s.port);
  waiting.send_raw("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  HttpConnection idle(s.port);
  EXPECT_EQ(idle.request("POST", "/echo", "x").status, 200);

  std::vector<std::unique_ptr<WsClient>> sockets;
  for (int i = 0; i < 3; ++i) sockets.push_back(std::make_unique<WsClient>(s.port));
  std::vector<std::thread> readers;
  for (auto& ws : sockets) readers.emplace_back([&ws] { ws->receive(5s); });
  // A client's handshake can complete before the server has opened its handler.
  ASSERT_TRUE(s.handler->wait_for([&] { return s.handler->requests == 3; }));
  ASSERT_TRUE(s.handler->wait_for([&] { return s.handler->ws_opened == 3; }));

  auto start = std::chrono::steady_clock::now();
  s.server.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 900ms);
  stream.join();
  for (auto& t : readers) t.join();

  EXPECT_EQ(s.server.connections(), 0u);
  EXPECT_EQ(s.handler->http_closed, 2);  // /hang and /wait; /echo was answered
  EXPECT_EQ(s.handler->ws_closed, 3);
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->hang_saw_closed == 1; }));
  EXPECT_TRUE(waiting.wait_closed(1s));
  s.server.stop();  // idempotent
}

TEST(HttpServerStop, ResponderOutlivesTheServer) {
  auto handler = std::make_shared<EchoHandler>();
  {
    auto options = EchoServer::small_limits();
    net::HttpServer server(options, handler);
    server.start();
    HttpConnection c(server.port());
    c.send_raw("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(handler->wait_for([&] { return handler->requests == 1; }));
  }
  std::lock_guard lock(handler->mutex);
  auto& r = handler->held_responder;
  EXPECT_TRUE(r->closed());
  r->send(200, "text/plain", "too late");
  r->begin_stream("text/plain");
  r->write("ignored");
  r->end();
}

TEST(HttpServerStop, ServerNeverStartedStopsCleanly) {
  auto handler = std::make_shared<EchoHandler>();
  net::HttpServer server(EchoServer::small_limits(), handler);
  server.stop();
  server.stop();
}

}  // namespace
}  // namespace eyrie::test
