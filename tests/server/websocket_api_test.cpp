// The /ws protocol: multiplexed requests, cancel, error frames, disconnects, 64 concurrent
// streams, a full queue, and draining on shutdown.
#include <future>
#include <map>
#include <set>
#include <thread>

#include "actors/generator.hpp"
#include "model/cpu/cpu_engine.hpp"
#include "tests/server/server_fixture.hpp"

namespace eyrie::test {
namespace {

struct Frame {
  std::string type, id, text, finish_reason, error_type;
  int64_t index = -1;
};

Frame parse_frame(simdjson::dom::parser& p, const std::string& s) {
  simdjson::dom::element e = p.parse(s);
  Frame f;
  f.type = std::string(std::string_view(e["type"]));
  simdjson::dom::element id = e["id"];
  if (!id.is_null()) f.id = std::string(std::string_view(id));
  if (f.type == "token") {
    f.index = int64_t(e["index"]);
    f.text = std::string(std::string_view(e["token"]["text"]));
  } else if (f.type == "done") {
    f.text = std::string(std::string_view(e["generated_text"]));
    f.finish_reason = std::string(std::string_view(e["finish_reason"]));
  } else {
    f.error_type = std::string(std::string_view(e["error_type"]));
  }
  return f;
}

std::string generate_frame(const std::string& id, const std::string& inputs, int max_new) {
  return R"({"type":"generate","id":")" + id + R"(","inputs":")" + inputs +
         R"(","parameters":{"max_new_tokens":)" + std::to_string(max_new) + "}}";
}

class WebSocketApi : public ServerTest {};

TEST_F(WebSocketApi, TwoRequestsMultiplexedOnOneConnection) {
  start();
  WsClient ws(port_);
  ws.send(generate_frame("a", "The capital of France is", 5));
  ws.send(generate_frame("b", "Once upon a time", 7));
  std::map<std::string, std::string> streamed, done;
  std::map<std::string, int64_t> next_index{{"a", 0}, {"b", 0}};
  while (done.size() < 2) {
    auto msg = ws.receive();
    ASSERT_TRUE(msg);
    Frame f = parse_frame(parser_, *msg);
    if (f.type == "token") {
      EXPECT_EQ(f.index, next_index[f.id]++);
      streamed[f.id] += f.text;
    } else {
      ASSERT_EQ(f.type, "done") << *msg;
      EXPECT_EQ(f.finish_reason, "length");
      done[f.id] = f.text;
    }
  }
  EXPECT_EQ(done["a"], " funnel dehorsMFQueen polít");
  EXPECT_EQ(streamed["a"], done["a"]);
  EXPECT_EQ(streamed["b"], done["b"]);
  EXPECT_EQ(next_index["b"], 7);
}

TEST_F(WebSocketApi, CancelMidStreamAndErrorsKeepConnectionUsable) {
  start();
  WsClient ws(port_);
  ws.send("this is not json");
  Frame bad = parse_frame(parser_, *ws.receive());
  EXPECT_EQ(bad.type, "error");
  EXPECT_EQ(bad.error_type, "validation");
  ws.send(R"({"type":"generate","id":"x","inputs":"hi","parameters":{"temperature":-1}})");
  Frame invalid = parse_frame(parser_, *ws.receive());
  EXPECT_EQ(invalid.type, "error");
  EXPECT_EQ(invalid.id, "x");
  ws.send(R"({"type":"dance","id":"y"})");
  EXPECT_EQ(parse_frame(parser_, *ws.receive()).type, "error");

  ws.send(generate_frame("long", "Tell me everything", 400));
  int tokens = 0;
  for (;;) {
    auto msg = ws.receive();
    ASSERT_TRUE(msg);
    Frame f = parse_frame(parser_, *msg);
    if (f.type == "token" && ++tokens == 3) ws.send(R"({"type":"cancel","id":"long"})");
    if (f.type == "done") {
      EXPECT_EQ(f.finish_reason, "cancelled");
      break;
    }
  }
  EXPECT_LT(tokens, 400);
  EXPECT_TRUE(kv_drains());
  ws.send(generate_frame("after", "x", 2));
  for (;;) {
    Frame f = parse_frame(parser_, *ws.receive());
    if (f.type == "done") {
      EXPECT_EQ(f.id, "after");
      break;
    }
  }
}

TEST_F(WebSocketApi, DisconnectFreesKvBlocks) {
  start();
  {
    WsClient ws(port_);
    ws.send(generate_frame("a", "Tell a long story", 400));
    ws.send(generate_frame("b", "And another one", 400));
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(ws.receive());
    ws.drop();
  }
  EXPECT_TRUE(kv_drains());
}

TEST_F(WebSocketApi, SixtyFourConcurrentStreamsMatchAlone) {
  start();
  const std::vector<std::string> prompts = {"The capital of France is", "def f(x):", "Once upon a time",
                                            "Zurich and Tokyo", "x", "Falcon models were trained"};
  auto text_of = [&](int i) { return prompts[i % prompts.size()]; };
  auto len_of = [](int i) { return 3 + i % 7; };
  std::vector<std::future<std::string>> results;
  for (int i = 0; i < 64; ++i)
    results.push_back(std::async(std::launch::async, [&, i] {
      WsClient ws(port_);
      ws.send(generate_frame("r", text_of(i), len_of(i)));
      simdjson::dom::parser p;
      for (;;) {
        auto msg = ws.receive();
        if (!msg) return std::string("<timeout>");
        Frame f = parse_frame(p, *msg);
        if (f.type == "done") return f.text;
        if (f.type == "error") return "<error " + *msg + ">";
      }
    }));
  auto model = FalconModel::load(test_data("models/falcon-7b-tiny"));
  CpuEngine engine(model, {.threads = 1, .block_size = 16, .kv_tokens = 1024});
  Generator gen(engine, rt_->tokenizer());
  for (int i = 0; i < 64; ++i) {
    GenerateRequest req;
    req.prompt = text_of(i);
    req.params.max_new_tokens = len_of(i);
    EXPECT_EQ(results[i].get(), gen.run(req).generated_text) << "stream " << i;
  }
  EXPECT_TRUE(kv_drains());
}

TEST_F(WebSocketApi, FullQueueAnswersOverloaded) {
  RuntimeOptions o = default_options();
  o.max_queue = 1;
  o.max_batch_size = 1;
  start(o);
  WsClient ws(port_);
  for (int i = 0; i < 6; ++i) ws.send(generate_frame("q" + std::to_string(i), "Tell a long story", 300));
  bool overloaded = false;
  std::set<std::string> live;
  for (int i = 0; i < 6; ++i) live.insert("q" + std::to_string(i));
  while (!live.empty()) {
    auto msg = ws.receive();
    ASSERT_TRUE(msg);
    Frame f = parse_frame(parser_, *msg);
    if (f.type == "error") {
      EXPECT_EQ(f.error_type, "overloaded");
      overloaded = true;
      live.erase(f.id);
    } else if (f.type == "done") {
      live.erase(f.id);
    } else if (f.type == "token" && f.index == 0) {
      ws.send(R"({"type":"cancel","id":")" + f.id + "\"}");
    }
  }
  EXPECT_TRUE(overloaded);
  HttpResult r = http_request(port_, "POST", "/generate", R"({"inputs":"x","parameters":{"max_new_tokens":1}})");
  EXPECT_EQ(r.status, 200);
}

TEST_F(WebSocketApi, ShutdownLetsInFlightRequestsFinish) {
  start();
  WsClient ws(port_);
  ws.send(generate_frame("s", "The capital of France is", 40));
  ASSERT_TRUE(ws.receive());  // generation is under way
  std::thread stopper([&] { rt_->shutdown(std::chrono::seconds(20)); });
  std::string finish;
  for (;;) {
    auto msg = ws.receive();
    if (!msg) break;
    Frame f = parse_frame(parser_, *msg);
    if (f.type == "done") {
      finish = f.finish_reason;
      break;
    }
  }
  stopper.join();
  EXPECT_EQ(finish, "length");
  EXPECT_THROW(http_request(port_, "GET", "/health"), std::runtime_error);  // no longer accepting
}

}  // namespace
}  // namespace eyrie::test
