// A replica split over tensor-parallel CPU shards, served over HTTP, against a whole replica.
#include <thread>

#include "model/error.hpp"
#include "tests/server/server_fixture.hpp"

namespace eyrie::test {
namespace {

struct Streamed {
  std::vector<int64_t> ids;
  std::vector<double> logprobs;
  std::string text;
};

// Streams one generation and collects its tokens.
Streamed stream(uint16_t port, const std::string& body) {
  Streamed s;
  simdjson::dom::parser parser;
  HttpResult r = http_sse(port, "/generate_stream", body, [&](const std::string& data) {
    simdjson::dom::element e = parser.parse(data);
    s.ids.push_back(int64_t(e["token"]["id"]));
    s.logprobs.push_back(double(e["token"]["logprob"]));
    s.text += std::string(std::string_view(e["token"]["text"]));
    return true;
  });
  EXPECT_EQ(r.status, 200) << r.body;
  return s;
}

class TensorParallelServing : public ServerTest, public ::testing::WithParamInterface<std::tuple<std::string, int>> {};

TEST_P(TensorParallelServing, StreamsTheSameTokensAsAWholeReplica) {
  const std::vector<std::string> bodies = {
      R"({"inputs":"The capital of France is","parameters":{"max_new_tokens":12}})",
      R"({"inputs":"Once upon a time","parameters":{"max_new_tokens":12,"do_sample":true,"seed":7,"temperature":0.8,"top_k":50}})",
      R"({"inputs":"def fibonacci(n):","parameters":{"max_new_tokens":12,"repetition_penalty":1.3}})",
  };
  RuntimeOptions o = default_options();
  o.model_dir = test_data("models/" + std::get<0>(GetParam()));
  std::vector<Streamed> whole;
  start(o);
  for (const auto& b : bodies) whole.push_back(stream(port_, b));
  TearDown();

  o.tensor_parallel_degree = std::get<1>(GetParam());
  start(o);
  // Concurrently, so the sharded steps carry several sequences at once.
  std::vector<Streamed> split(bodies.size());
  std::vector<std::thread> clients;
  for (std::size_t i = 0; i < bodies.size(); ++i)
    clients.emplace_back([&, i] { split[i] = stream(port_, bodies[i]); });
  for (auto& c : clients) c.join();
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    SCOPED_TRACE(bodies[i]);
    EXPECT_EQ(split[i].ids, whole[i].ids);
    EXPECT_EQ(split[i].text, whole[i].text);
    ASSERT_EQ(split[i].logprobs.size(), whole[i].logprobs.size());
    for (std::size_t k = 0; k < whole[i].logprobs.size(); ++k)
      EXPECT_NEAR(split[i].logprobs[k], whole[i].logprobs[k], 1e-4);
  }
  EXPECT_TRUE(kv_drains());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TensorParallelServing,
                         ::testing::Values(std::make_tuple("falcon-7b-tiny", 2), std::make_tuple("falcon-40b-tiny", 3)),
                         [](const auto& p) {
                           std::string n = std::get<0>(p.param) + "_tp" + std::to_string(std::get<1>(p.param));
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

class TensorParallelStartup : public ServerTest {};

TEST_F(TensorParallelStartup, ADegreeTheModelCannotTakeIsRefusedWithTheReason) {
  RuntimeOptions o = default_options();
  o.tensor_parallel_degree = 5;  // the tiny Falcon-7B has 4 query heads
  try {
    Runtime::create(o);
    FAIL() << "degree 5 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the model's 4 attention heads"), std::string::npos) << e.what();
  }
}

TEST_F(TensorParallelStartup, MoreGpusThanVisibleIsRefused) {
  RuntimeOptions o = default_options();
  o.device = "cuda";
  o.tensor_parallel_degree = 64;
  try {
    Runtime::create(o);
    FAIL() << "64 GPUs accepted";
  } catch (const InvalidArgument& e) {
    const std::string what = e.what();
    // Without a GPU (or without the CUDA backend) the device itself is refused first.
    EXPECT_TRUE(what.find("tensor_parallel_degree 64 needs 64 GPUs") != std::string::npos ||
                what.find("device is cuda but") != std::string::npos)
        << what;
  }
}

}  // namespace
}  // namespace eyrie::test
