// HTTP/1.1 serving: echo, keep-alive, pipelining, limits, malformed input and late answers.
#include <gtest/gtest.h>

#include <string>

#include "model/error.hpp"
#include "tests/net/echo_handler.hpp"
#include "tests/support/http_client.hpp"

namespace eyrie::test {
namespace {

using namespace std::chrono_literals;

TEST(HttpServer, EchoesTheBody) {
  EchoServer s;
  auto res = http_request(s.port, "POST", "/echo", "hello", {{"Content-Type", "text/plain"}});
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, "hello");
  EXPECT_EQ(res.headers["x-method"], "POST");
  EXPECT_EQ(res.headers["content-type"], "text/plain");
  EXPECT_EQ(http_request(s.port, "GET", "/nowhere").status, 404);
}

TEST(HttpServer, KeepAliveServesTwoRequestsOnOneConnection) {
  EchoServer s;
  HttpConnection c(s.port);
  EXPECT_EQ(c.request("POST", "/echo", "one").body, "one");
  EXPECT_EQ(c.request("POST", "/echo", "two").body, "two");
  EXPECT_EQ(s.server.connections(), 1u);
}

TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  EchoServer s;
  HttpConnection c(s.port);
  // The first answer comes late from another thread; the second must still wait for it.
  c.send_raw(
      "GET /delayed?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond");
  EXPECT_EQ(c.read_response().body, "late");
  EXPECT_EQ(c.read_response().body, "second");
}

TEST(HttpServer, HandlerMayAnswerFromAnotherThreadLater) {
  EchoServer s;
  auto start = std::chrono::steady_clock::now();
  auto res = http_request(s.port, "GET", "/delayed?ms=100");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, "late");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
}

TEST(HttpServer, OversizedBodyGets413WithoutReachingTheHandler) {
  EchoServer s;
  HttpConnection c(s.port);
  auto res = c.request("POST", "/echo", std::string(100 << 10, 'x'));
  EXPECT_EQ(res.status, 413);
  EXPECT_EQ(res.headers["content-type"], "application/json");
  EXPECT_NE(res.body.find(R"("error_type":"payload_too_large")"), std::string::npos) << res.body;
  EXPECT_TRUE(c.wait_closed(2s));
  EXPECT_EQ(s.handler->requests, 0);
}

TEST(HttpServer, MalformedRequestGets400AndClose) {
  EchoServer s;
  HttpConnection c(s.port);
  c.send_raw("THIS IS NOT HTTP\r\n\r\n");
  auto res = c.read_response();
  EXPECT_EQ(res.status, 400);
  EXPECT_NE(res.body.find(R"("error_type":"bad_request")"), std::string::npos) << res.body;
  EXPECT_TRUE(c.wait_closed(2s));
  EXPECT_EQ(s.handler->requests, 0);
}

TEST(HttpServer, ConnectionCloseIsHonoured) {
  EchoServer s;
  HttpConnection c(s.port);
  auto res = c.request("POST", "/echo", "bye", {{"Connection", "close"}});
  EXPECT_EQ(res.body, "bye");
  EXPECT_EQ(res.headers["connection"], "close");
  EXPECT_TRUE(c.wait_closed(2s));
}

TEST(HttpServer, ClientGoneBeforeTheAnswerFiresOnClose) {
  EchoServer s;
  {
    HttpConnection c(s.port);
    c.send_raw("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(s.handler->wait_for([&] { return s.handler->requests == 1; }));
  }
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->http_closed == 1; }));
  std::lock_guard lock(s.handler->mutex);
  EXPECT_TRUE(s.handler->held_responder->closed());
}

TEST(HttpServer, ConnectionsBeyondTheLimitGet503) {
  auto options = EchoServer::small_limits();
  options.max_connections = 1;
  EchoServer s(options);
  HttpConnection first(s.port);
  EXPECT_EQ(first.request("POST", "/echo", "a").status, 200);
  HttpConnection second(s.port);
  auto res = second.read_response();
  EXPECT_EQ(res.status, 503);
  EXPECT_NE(res.body.find(R"("error_type":"overloaded")"), std::string::npos);
  EXPECT_EQ(first.request("POST", "/echo", "b").body, "b");
}

TEST(HttpServer, StopAcceptingKeepsOpenConnections) {
  EchoServer s;
  HttpConnection c(s.port);
  EXPECT_EQ(c.request("POST", "/echo", "a").status, 200);
  s.server.stop_accepting();
  std::this_thread::sleep_for(20ms);
  EXPECT_THROW(http_request(s.port, "GET", "/echo"), std::runtime_error);
  EXPECT_EQ(c.request("POST", "/echo", "still here").body, "still here");
}

TEST(HttpServer, PortInUseIsReportedAsError) {
  EchoServer s;
  auto options = EchoServer::small_limits();
  options.port = s.port;
  net::HttpServer second(options, s.handler);
  try {
    second.start();
    FAIL() << "start() should have thrown";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(s.port)),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace eyrie::test
