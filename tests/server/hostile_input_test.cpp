// Hostile and malformed input never crashes or wedges the server.
#include <thread>

#include "tests/server/server_fixture.hpp"

namespace eyrie::test {
namespace {

class HostileInput : public ServerTest {
 protected:
  void SetUp() override { start(); }
};

TEST_F(HostileInput, BodiesAndFrames) {
  const std::vector<std::string> bodies = {
      "",
      "null",
      "[]",
      "\"inputs\"",
      std::string(100000, '['),
      R"({"inputs": 5})",
      R"({"inputs": "x", "parameters": []})",
      R"({"inputs": "x", "parameters": {"max_new_tokens": 1e300}})",
      R"({"inputs": "x", "parameters": {"max_new_tokens": -5}})",
      R"({"inputs": "x", "parameters": {"max_new_tokens": 18446744073709551615}})",
      R"({"inputs": "x", "parameters": {"seed": -1}})",
      R"({"inputs": "x", "parameters": {"stop": "not-an-array"}})",
      R"({"inputs": "x", "parameters": {"stop": [""]}})",
      R"({"inputs": "x", "parameters": {"temperature": "hot"}})",
      R"({"inputs": "x", "parameters": {"truncate": 0}})",
      "{\"inputs\": \"\xff\xfe bad utf8 \xc3\", \"parameters\": {\"max_new_tokens\": 2}}",
      std::string("{\"inputs\": \"nul\\u0000byte\", \"parameters\": {\"max_new_tokens\": 2}}"),
  };
  for (const auto& b : bodies) {
    HttpResult r = http_request(port_, "POST", "/generate", b);
    EXPECT_TRUE(r.status == 200 || r.status == 400 || r.status == 422) << r.status << " for " << b.substr(0, 60);
    if (r.status != 200) {
      auto doc = parser_.parse(r.body);
      EXPECT_FALSE(std::string_view(doc["error"]).empty());
    }
  }
  WsClient ws(port_);
  for (const auto& b : bodies) {
    if (b.find('\xff') != std::string::npos) continue;  // not valid in a text frame
    ws.send(b);
    auto reply = ws.receive();
    ASSERT_TRUE(reply) << "no reply to " << b.substr(0, 60);
  }
  // RFC 6455: a text frame that is not UTF-8 fails the connection (1007); others are unaffected.
  WsClient bad_utf8(port_);
  bad_utf8.send("\xff\xfe");
  EXPECT_FALSE(bad_utf8.receive(std::chrono::milliseconds(2000)));
  EXPECT_EQ(bad_utf8.close_code(), 1007);
  WsClient binary(port_);
  binary.send_binary("\x01\x02");
  EXPECT_FALSE(binary.receive(std::chrono::milliseconds(2000)));
  EXPECT_EQ(binary.close_code(), 1003);
  ws.send(R"({"type":"generate","id":"ok","inputs":"x","parameters":{"max_new_tokens":1}})");
  ASSERT_TRUE(ws.receive());
  // The server is still healthy and serving.
  EXPECT_EQ(http_request(port_, "GET", "/health").status, 200);
  HttpResult ok = http_request(port_, "POST", "/generate", R"({"inputs":"still","parameters":{"max_new_tokens":2}})");
  EXPECT_EQ(ok.status, 200);
  EXPECT_TRUE(kv_drains());
}

TEST_F(HostileInput, ManyClientsVanishMidRequest) {
  std::vector<std::thread> ts;
  for (int i = 0; i < 16; ++i)
    ts.emplace_back([this] {
      WsClient ws(port_);
      ws.send(R"({"type":"generate","id":"x","inputs":"go on and on","parameters":{"max_new_tokens":300}})");
      ws.drop();
    });
  for (auto& t : ts) t.join();
  EXPECT_TRUE(kv_drains());
  EXPECT_EQ(http_request(port_, "GET", "/health").status, 200);
}

}  // namespace
}  // namespace eyrie::test
