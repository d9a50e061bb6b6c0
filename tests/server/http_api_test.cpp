// Every HTTP endpoint over loopback against the running server.
#include <thread>

#include "tests/server/server_fixture.hpp"
#include "tests/support/reference.hpp"

namespace eyrie::test {
namespace {

class HttpApi : public ServerTest {
 protected:
  void SetUp() override { start(); }
};

TEST_F(HttpApi, HealthPingInfoModels) {
  EXPECT_EQ(http_request(port_, "GET", "/health").status, 200);
  HttpResult ping = http_request(port_, "GET", "/ping");
  EXPECT_EQ(ping.status, 200);
  HttpResult info = http_request(port_, "GET", "/info");
  ASSERT_EQ(info.status, 200);
  auto doc = parser_.parse(info.body);
  EXPECT_EQ(std::string_view(doc["model_id"]), "falcon-7b-tiny");
  EXPECT_EQ(int64_t(doc["max_total_tokens"]), 512);
  EXPECT_EQ(int64_t(doc["replicas"]), 1);
  EXPECT_EQ(int64_t(doc["tensor_parallel_degree"]), 1);
  HttpResult models = http_request(port_, "GET", "/v1/models");
  EXPECT_EQ(std::string_view(parser_.parse(models.body)["data"].at(0)["id"]), "falcon-7b-tiny");
}

TEST_F(HttpApi, GenerateMatchesTransformersGreedy) {
  auto cases = load_reference(test_data("models/falcon-7b-tiny/reference.json"));
  const auto& c = cases[0];
  HttpResult r = http_request(port_, "POST", "/generate",
                              R"({"inputs":"The capital of France is","parameters":{"max_new_tokens":8,"details":true,"decoder_input_details":true}})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = parser_.parse(r.body);
  std::size_t i = 0;
  for (simdjson::dom::object t : doc["details"]["tokens"].get_array()) {
    EXPECT_EQ(int64_t(t["id"]), c.greedy_ids[i]);
    EXPECT_NEAR(double(t["logprob"]), c.greedy_logprobs[i], 1e-3);
    ++i;
  }
  EXPECT_EQ(i, 8u);
  EXPECT_EQ(std::string_view(doc["details"]["finish_reason"]), "length");
  EXPECT_EQ(doc["details"]["prefill"].get_array().size(), c.ids.size());
}

TEST_F(HttpApi, GenerateStreamSseFraming) {
  std::vector<std::string> events;
  HttpResult r = http_sse(port_, "/generate_stream",
                          R"({"inputs":"The capital of France is","parameters":{"max_new_tokens":5,"details":true}})",
                          [&](const std::string& data) {
                            events.push_back(data);
                            return true;
                          });
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  ASSERT_EQ(events.size(), 5u);
  std::string joined;
  for (std::size_t i = 0; i < events.size(); ++i) {
    simdjson::dom::element e = parser_.parse(events[i]);
    EXPECT_EQ(int64_t(e["index"]), static_cast<int64_t>(i + 1));
    joined += std::string_view(e["token"]["text"]);
    if (i + 1 < events.size()) {
      EXPECT_TRUE(e["generated_text"].is_null());
    } else {
      EXPECT_EQ(std::string_view(e["generated_text"]), joined);
      EXPECT_EQ(std::string_view(e["details"]["finish_reason"]), "length");
    }
  }
  EXPECT_EQ(joined, " funnel dehorsMFQueen polít");
}

TEST_F(HttpApi, TokenizeOffsets) {
  HttpResult r = http_request(port_, "POST", "/tokenize", R"({"inputs":"Hello world"})");
  ASSERT_EQ(r.status, 200);
  auto arr = parser_.parse(r.body).get_array();
  ASSERT_EQ(arr.size(), 2u);
  EXPECT_EQ(int64_t(arr.at(1)["start"]), 5);
  EXPECT_EQ(int64_t(arr.at(1)["stop"]), 11);
  EXPECT_EQ(std::string_view(arr.at(1)["text"]), " world");
}

TEST_F(HttpApi, SageMakerInvocations) {
  HttpResult seed = http_request(port_, "POST", "/invocations", R"({"text":"Hello there","text_length":7})");
  ASSERT_EQ(seed.status, 200) << seed.body;
  std::string_view text = parser_.parse(seed.body)["outputs"].at(0)["generated_text"];
  EXPECT_EQ(text.substr(0, 11), "Hello there");
  HttpResult tgi = http_request(port_, "POST", "/invocations",
                                R"({"inputs":"The capital of France is","parameters":{"max_new_tokens":2}})");
  ASSERT_EQ(tgi.status, 200);
  EXPECT_EQ(std::string_view(parser_.parse(tgi.body)["generated_text"]), " funnel dehors");
  EXPECT_EQ(http_request(port_, "POST", "/invocations", R"({"text":"Hello there","text_length":1})").status, 422);
}

TEST_F(HttpApi, OpenAiCompletionsAndChat) {
  HttpResult c = http_request(port_, "POST", "/v1/completions",
                              R"({"prompt":"The capital of France is","max_tokens":5,"temperature":0,"stop":["MF"]})");
  ASSERT_EQ(c.status, 200) << c.body;
  auto doc = parser_.parse(c.body);
  EXPECT_EQ(std::string_view(doc["choices"].at(0)["text"]), " funnel dehors");
  EXPECT_EQ(std::string_view(doc["choices"].at(0)["finish_reason"]), "stop");
  EXPECT_EQ(int64_t(doc["usage"]["prompt_tokens"]), 5);
  std::vector<std::string> chunks;
  HttpResult s = http_sse(port_, "/v1/chat/completions",
                          R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,"stream":true})",
                          [&](const std::string& d) {
                            chunks.push_back(d);
                            return true;
                          });
  ASSERT_EQ(s.status, 200);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks.back(), "[DONE]");
  EXPECT_EQ(std::string_view(parser_.parse(chunks[0])["choices"].at(0)["delta"]["role"]), "assistant");
  EXPECT_EQ(std::string_view(parser_.parse(chunks[chunks.size() - 2])["choices"].at(0)["finish_reason"]), "length");
}

TEST_F(HttpApi, OpenAiStreamLeavesTheStopSequenceOut) {
  // The same greedy completion as above, streamed: the pieces add up to the text the whole
  // response gives, without the stop sequence, even where a token carries part of it.
  std::string text, finish;
  HttpResult s = http_sse(port_, "/v1/completions",
                          R"({"prompt":"The capital of France is","max_tokens":5,"temperature":0,"stop":["MF"],"stream":true})",
                          [&](const std::string& d) {
                            if (d == "[DONE]") return true;
                            auto doc = parser_.parse(d);
                            text += std::string(std::string_view(doc["choices"].at(0)["text"]));
                            simdjson::dom::element reason = doc["choices"].at(0)["finish_reason"];
                            if (!reason.is_null()) finish = std::string(std::string_view(reason));
                            return true;
                          });
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(text, " funnel dehors");
  EXPECT_EQ(finish, "stop");
}

TEST_F(HttpApi, ErrorsUseTgiStatusCodes) {
  auto error_type = [&](const HttpResult& r) { return std::string(std::string_view(parser_.parse(r.body)["error_type"])); };
  HttpResult bad = http_request(port_, "POST", "/generate", "{\"inputs\": ");
  EXPECT_EQ(bad.status, 400);
  HttpResult invalid = http_request(port_, "POST", "/generate", R"({"inputs":"x","parameters":{"top_p":3}})");
  EXPECT_EQ(invalid.status, 422);
  EXPECT_EQ(error_type(invalid), "validation");
  EXPECT_NE(invalid.body.find("top_p"), std::string::npos);
  HttpResult too_long = http_request(port_, "POST", "/generate",
                                     R"({"inputs":"x","parameters":{"max_new_tokens":600}})");
  EXPECT_EQ(too_long.status, 422);
  EXPECT_NE(too_long.body.find("max_new_tokens"), std::string::npos);
  EXPECT_EQ(http_request(port_, "POST", "/generate", R"({"parameters":{}})").status, 422);
  EXPECT_EQ(http_request(port_, "POST", "/generate", R"({"inputs":""})").status, 422);
  EXPECT_EQ(http_request(port_, "POST", "/generate", R"({"inputs":"x","parameters":{"best_of":2}})").status, 422);
  EXPECT_EQ(http_request(port_, "GET", "/nope").status, 404);
  HttpResult wrong = http_request(port_, "GET", "/generate");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.headers["allow"], "POST");
  EXPECT_EQ(http_request(port_, "POST", "/generate", std::string(3 << 20, 'x')).status, 413);
  EXPECT_EQ(http_request(port_, "POST", "/v1/chat/completions", R"({"messages":[{"role":"robot","content":"x"}]})").status, 422);
  // Still serving after all that.
  EXPECT_EQ(http_request(port_, "POST", "/generate", R"({"inputs":"x","parameters":{"max_new_tokens":1}})").status, 200);
  EXPECT_GT(metric("eyrie_generated_tokens_total"), 0);
}

TEST_F(HttpApi, StreamDisconnectFreesKvBlocks) {
  int seen = 0;
  http_sse(port_, "/generate_stream", R"({"inputs":"Tell a long story","parameters":{"max_new_tokens":400}})",
           [&](const std::string&) { return ++seen < 3; });
  EXPECT_EQ(seen, 3);
  EXPECT_TRUE(kv_drains());
  EXPECT_EQ(metric("eyrie_running_sequences"), 0);
}

TEST_F(HttpApi, ShutdownLetsAnEventStreamFinish) {
  std::thread stopper;
  std::vector<std::string> events;
  HttpResult r = http_sse(port_, "/generate_stream",
                          R"({"inputs":"The capital of France is","parameters":{"max_new_tokens":40,"details":true}})",
                          [&](const std::string& data) {
                            events.push_back(data);
                            if (events.size() == 1) stopper = std::thread([&] { rt_->shutdown(std::chrono::seconds(20)); });
                            return true;
                          });
  if (stopper.joinable()) stopper.join();
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(events.size(), 40u);
  simdjson::dom::element last = parser_.parse(events.back());
  EXPECT_EQ(std::string_view(last["details"]["finish_reason"]), "length");
}

}  // namespace
}  // namespace eyrie::test
