// The embedding API over the real actors: concurrent submissions, cancellation, backpressure.
#include "eyrie/runtime.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "actors/generator.hpp"
#include "model/cpu/cpu_engine.hpp"
#include "model/error.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

// Collects one generation's events and lets the test wait for its end.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> ids;
  std::string streamed;
  std::optional<DoneEvent> done;

  GenerationCallbacks callbacks() {
    return {[this](const TokenEvent& t) {
              std::lock_guard l(mu);
              ids.push_back(t.token.id);
              streamed += t.text;
            },
            [this](const DoneEvent& d) {
              std::lock_guard l(mu);
              done = d;
              cv.notify_all();
            }};
  }
  DoneEvent wait() {
    std::unique_lock l(mu);
    EXPECT_TRUE(cv.wait_for(l, std::chrono::seconds(60), [&] { return done.has_value(); }));
    return *done;
  }
};

RuntimeOptions tiny_options() {
  RuntimeOptions o;
  o.model_dir = test::test_data("models/falcon-7b-tiny");
  o.threads_per_replica = 1;
  o.kv_cache_tokens = 4096;
  return o;
}

TEST(Runtime, ConcurrentSubmissionsMatchGeneratorAlone) {
  RuntimeOptions o = tiny_options();
  o.replicas = 2;
  auto rt = Runtime::create(o);
  const std::vector<std::string> prompts = {"The capital of France is", "def f(x):", "Once upon a time",
                                            ">>QUESTION<< Why? >>ANSWER<<", "Zürich 東京", "x"};
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 24; ++i) {
    cs.push_back(std::make_unique<Collector>());
    SamplingParams p;
    p.max_new_tokens = 6 + i % 5;
    rt->submit(prompts[i % prompts.size()], p, cs.back()->callbacks());
  }
  auto model = FalconModel::load(o.model_dir);
  CpuEngine engine(model, {.threads = 1, .block_size = 16, .kv_tokens = 1024});
  Generator gen(engine, rt->tokenizer());
  for (int i = 0; i < 24; ++i) {
    DoneEvent d = cs[i]->wait();
    GenerateRequest req;
    req.prompt = prompts[i % prompts.size()];
    req.params.max_new_tokens = 6 + i % 5;
    DoneEvent want = gen.run(req);
    EXPECT_EQ(d.generated_text, want.generated_text) << "request " << i;
    EXPECT_EQ(cs[i]->streamed, d.generated_text);
    EXPECT_EQ(d.completion_tokens, 6 + i % 5);
    EXPECT_EQ(d.reason, StopReason::length);
  }
  RuntimeStats s = rt->stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_GT(s.kv_blocks_total, 0);
}

TEST(Runtime, CancelEndsGenerationAndFreesBlocks) {
  auto rt = Runtime::create(tiny_options());
  Collector c;
  SamplingParams p;
  p.max_new_tokens = 2000;
  const uint64_t id = rt->submit("Tell me everything", p, c.callbacks());
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard l(c.mu);
      if (c.ids.size() >= 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  rt->cancel(id);
  DoneEvent d = c.wait();
  EXPECT_EQ(d.reason, StopReason::cancelled);
  EXPECT_LT(d.completion_tokens, 2000);
  EXPECT_EQ(rt->stats().kv_blocks_used, 0);
}

TEST(Runtime, ValidationAndOverload) {
  RuntimeOptions o = tiny_options();
  o.max_queue = 1;
  o.max_batch_size = 1;
  o.max_total_tokens = 64;
  auto rt = Runtime::create(o);
  SamplingParams p;
  p.max_new_tokens = 100;
  EXPECT_THROW(rt->submit("hello", p, {}), InvalidArgument);  // 1 + 100 > 64
  p.max_new_tokens = 0;
  EXPECT_THROW(rt->submit("hello", p, {}), InvalidArgument);
  EXPECT_THROW(rt->submit("", SamplingParams{}, {}), InvalidArgument);
  RuntimeOptions bad = tiny_options();
  bad.activation_precision = "fp8";
  try {
    Runtime::create(bad);
    ADD_FAILURE() << "an unknown activation_precision was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("activation_precision must be mixed, split or bf16, got 'fp8'"),
              std::string::npos);
  }
  // One running, one waiting, then the queue is full.
  p.max_new_tokens = 50;
  std::vector<std::unique_ptr<Collector>> cs;
  int refused = 0;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 6; ++i) {
    cs.push_back(std::make_unique<Collector>());
    try {
      ids.push_back(rt->submit("one two three", p, cs.back()->callbacks()));
    } catch (const Overloaded&) {
      ++refused;
      cs.pop_back();
    }
  }
  EXPECT_GT(refused, 0);
  for (auto id : ids) rt->cancel(id);
  for (auto& c : cs) c->wait();
}

}  // namespace
}  // namespace eyrie
