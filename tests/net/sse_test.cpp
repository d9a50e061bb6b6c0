// SSE framing and streamed responses: chunked delivery, headers, and disconnect detection.
#include "net/sse.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/net/echo_handler.hpp"
#include "tests/support/http_client.hpp"

namespace eyrie::test {
namespace {

using namespace std::chrono_literals;

TEST(SseFormat, FramesDataAndEventLines) {
  EXPECT_EQ(net::sse_event("hello"), "data: hello\n\n");
  EXPECT_EQ(net::sse_event("a\nb\r\nc", "token"), "event: token\ndata: a\ndata: b\ndata: c\n\n");
  EXPECT_EQ(net::sse_event(""), "data: \n\n");
  EXPECT_EQ(net::sse_event("x\n"), "data: x\ndata: \n\n");
  EXPECT_EQ(net::sse_comment("keep-alive"), ": keep-alive\n\n");
}

TEST(SseStream, StreamsEventsWrittenFromAnotherThread) {
  EchoServer s;
  std::vector<std::string> events;
  auto res = http_sse(s.port, "/stream?n=5", "", [&](const std::string& data) {
    events.push_back(data);
    return true;
  });
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-type"], "text/event-stream");
  EXPECT_EQ(res.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(res.headers["cache-control"], "no-cache");
  EXPECT_EQ(res.headers["x-accel-buffering"], "no");
  ASSERT_EQ(events.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(events[i], "event " + std::to_string(i));
}

TEST(SseStream, ConnectionIsReusableAfterAStream) {
  EchoServer s;
  HttpConnection c(s.port);
  auto streamed = c.request("GET", "/stream?n=3");
  EXPECT_EQ(streamed.body, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
  EXPECT_EQ(c.request("POST", "/echo", "after").body, "after");
}

TEST(SseStream, ClientDisconnectStopsTheProducer) {
  EchoServer s;
  int seen = 0;
  http_sse(s.port, "/hang", "", [&](const std::string& data) {
    EXPECT_EQ(data, "tick");
    return ++seen < 3;
  });
  EXPECT_EQ(seen, 3);
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->http_closed == 1; }));
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->hang_saw_closed == 1; }));
}

}  // namespace
}  // namespace eyrie::test
