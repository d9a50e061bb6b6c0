// WebSocket serving: echo in order, message limits, unsupported frames, many connections and
// on_close reporting.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <string>
#include <vector>

#include "tests/net/echo_handler.hpp"
#include "tests/support/http_client.hpp"

namespace eyrie::test {
namespace {

using namespace std::chrono_literals;

constexpr int kCloseGoingAway = 1001;
constexpr int kCloseUnsupportedData = 1003;
constexpr int kCloseTooBig = 1009;

TEST(Ws, EchoesFramesInOrder) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send("one");
  ws.send("two");
  ws.send("three");
  EXPECT_EQ(ws.receive(), "ONE");
  EXPECT_EQ(ws.receive(), "TWO");
  EXPECT_EQ(ws.receive(), "THREE");
  ws.close();
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == 1; }));
}

TEST(Ws, MessageOverTheLimitClosesWith1009) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send(std::string(100 << 10, 'x'));
  EXPECT_EQ(ws.receive(), std::nullopt);
  EXPECT_FALSE(ws.is_open());
  EXPECT_EQ(ws.close_code(), kCloseTooBig);
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == 1; }));
}

TEST(Ws, BinaryMessageClosesWith1003) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send_binary("\x01\x02");
  EXPECT_EQ(ws.receive(), std::nullopt);
  EXPECT_EQ(ws.close_code(), kCloseUnsupportedData);
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == 1; }));
}

TEST(Ws, ServerSideCloseThroughTheWriter) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send("close");
  EXPECT_EQ(ws.receive(), std::nullopt);
  EXPECT_EQ(ws.close_code(), 1000);
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == 1; }));
}

TEST(Ws, ClientThatDoesNotReadIsDisconnected) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send("flood");
  // Without a cap the server would buffer all 40 MiB for this client.
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == 1; }));
}

TEST(Ws, AbruptDisconnectReportsOnCloseOnce) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send("hi");
  EXPECT_EQ(ws.receive(), "HI");
  ws.drop();
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == 1; }));
  EXPECT_TRUE(s.handler->wait_for([&] { return s.server.connections() == 0; }));
  EXPECT_EQ(s.handler->ws_closed, 1);
}

TEST(Ws, UpgradeOnAnotherPathIsAnOrdinaryRequest) {
  EchoServer s;
  EXPECT_THROW(WsClient(s.port, "/nowhere"), std::runtime_error);
  EXPECT_EQ(s.handler->requests, 1);
  EXPECT_EQ(s.handler->ws_opened, 0);
}

TEST(Ws, ManyConcurrentConnectionsEachEcho) {
  // Each client has its own io_context (three descriptors) besides its socket and the server's.
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 4096) {
    limit.rlim_cur = std::min<rlim_t>(4096, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  constexpr int kClients = 200;
  EchoServer s;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<WsClient>(s.port));
  EXPECT_EQ(s.server.connections(), static_cast<std::size_t>(kClients));
  for (int i = 0; i < kClients; ++i) clients[i]->send("client " + std::to_string(i));
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(clients[i]->receive(), "CLIENT " + std::to_string(i));
  }
  clients.clear();
  EXPECT_TRUE(s.handler->wait_for([&] { return s.handler->ws_closed == kClients; }));
}

TEST(Ws, ServerStopSendsGoingAway) {
  EchoServer s;
  WsClient ws(s.port);
  ws.send("x");
  EXPECT_EQ(ws.receive(), "X");
  // The client must be reading to answer the close frame, so it waits in another thread.
  std::optional<std::string> got = "unset";
  std::thread reader([&] { got = ws.receive(5s); });
  s.server.stop();
  reader.join();
  EXPECT_EQ(got, std::nullopt);
  EXPECT_EQ(ws.close_code(), kCloseGoingAway);
  EXPECT_EQ(s.handler->ws_closed, 1);
}

}  // namespace
}  // namespace eyrie::test
