// Continuous batching on the real CPU engine: batched, chunked, preempted and cancelled
// requests give exactly the tokens they give alone.
#include "actors/scheduler.hpp"

#include <gtest/gtest.h>

#include <map>

#include "model/cpu/cpu_engine.hpp"
#include "model/error.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

const Tokenizer& tokenizer() {
  static Tokenizer t = Tokenizer::from_file(test::test_data("tokenizer.json"));
  return t;
}

std::shared_ptr<const FalconModel> model() {
  static auto m = FalconModel::load(test::test_data("models/falcon-7b-tiny"));
  return m;
}

struct Outcome {
  std::vector<int32_t> ids;
  std::string text;
  StopReason reason;
};

// Runs the scheduler to completion, collecting each request's tokens.
std::map<uint64_t, Outcome> drain(Scheduler& sched, Engine& engine, int64_t* steps = nullptr) {
  std::map<uint64_t, Outcome> out;
  std::map<uint64_t, std::string> streamed;
  StepBatch batch;
  StepOutput logits;
  std::vector<GenerationEvent> events;
  int64_t n = 0;
  while (!sched.idle()) {
    events.clear();
    if (sched.plan(batch, events)) {
      engine.step(batch, logits);
      sched.complete(logits, events);
      ++n;
    }
    for (auto& e : events) {
      if (auto* t = std::get_if<TokenEvent>(&e)) {
        out[t->request].ids.push_back(t->token.id);
        streamed[t->request] += t->text;
      } else {
        auto& d = std::get<DoneEvent>(e);
        out[d.request].text = d.generated_text;
        out[d.request].reason = d.reason;
        EXPECT_EQ(streamed[d.request], d.generated_text);
      }
    }
  }
  if (steps) *steps = n;
  return out;
}

SeqRequest greedy(uint64_t id, const std::string& prompt, int64_t max_new) {
  SeqRequest r;
  r.id = id;
  r.prompt = tokenizer().encode(prompt);
  r.params.max_new_tokens = max_new;
  return r;
}

TEST(Scheduler, SingleRequestMatchesReference) {
  CpuEngine engine(model(), {.threads = 2, .block_size = 16, .kv_tokens = 1024});
  Scheduler sched(tokenizer(), engine.kv_spec(), {});
  auto cases = test::load_reference(test::test_data("models/falcon-7b-tiny/reference.json"));
  ASSERT_TRUE(sched.submit(greedy(1, cases[1].prompt, 24)));
  auto out = drain(sched, engine);
  EXPECT_EQ(out[1].ids, cases[1].greedy_ids);
  EXPECT_EQ(out[1].reason, StopReason::length);
  EXPECT_EQ(sched.stats().kv_blocks_used, 0);
}

// Prompts of many lengths, several output lengths, 64 at once.
std::vector<SeqRequest> mixed_requests() {
  auto cases = test::load_reference(test::test_data("models/falcon-7b-tiny/reference.json"));
  std::vector<SeqRequest> reqs;
  for (uint64_t i = 0; i < 64; ++i) {
    const auto& c = cases[i % cases.size()];
    reqs.push_back(greedy(100 + i, c.prompt + std::string(i % 5, '!'), 4 + static_cast<int64_t>(i % 9)));
  }
  return reqs;
}

std::map<uint64_t, Outcome> alone(const std::vector<SeqRequest>& reqs) {
  CpuEngine engine(model(), {.threads = 2, .block_size = 16, .kv_tokens = 1024});
  std::map<uint64_t, Outcome> res;
  for (const auto& r : reqs) {
    Scheduler one(tokenizer(), engine.kv_spec(), {});
    one.submit(r);
    res[r.id] = drain(one, engine)[r.id];
  }
  return res;
}

TEST(Scheduler, SixtyFourConcurrentRequestsMatchAlone) {
  auto reqs = mixed_requests();
  auto want = alone(reqs);
  CpuEngine engine(model(), {.threads = 2, .block_size = 16, .kv_tokens = 16 * 1024});
  // A small prefill budget splits long prompts over several steps beside running decodes.
  Scheduler sched(tokenizer(), engine.kv_spec(), {.max_running = 64, .max_queue = 64, .max_step_tokens = 48});
  for (const auto& r : reqs) ASSERT_TRUE(sched.submit(r));
  int64_t steps = 0;
  auto got = drain(sched, engine, &steps);
  for (const auto& r : reqs) {
    EXPECT_EQ(got[r.id].ids, want[r.id].ids) << "request " << r.id;
    EXPECT_EQ(got[r.id].text, want[r.id].text);
  }
  EXPECT_LT(steps, 64 * 6);  // batched: far fewer steps than one request at a time
  EXPECT_EQ(sched.stats().kv_blocks_used, 0);
}

TEST(Scheduler, PreemptionUnderMemoryPressureKeepsResults) {
  auto reqs = mixed_requests();
  reqs.resize(16);
  auto want = alone(reqs);
  // Room for only a few sequences: decodes run out of blocks and preempt the newest.
  CpuEngine engine(model(), {.threads = 2, .block_size = 4, .kv_tokens = 4 * 24});
  Scheduler sched(tokenizer(), engine.kv_spec(), {.max_running = 16, .max_queue = 64, .max_step_tokens = 64});
  for (const auto& r : reqs) {
    if (r.prompt.size() + r.params.max_new_tokens > 96) continue;
    ASSERT_TRUE(sched.submit(r));
  }
  auto got = drain(sched, engine);
  for (const auto& [id, o] : got) EXPECT_EQ(o.ids, want[id].ids) << "request " << id;
  EXPECT_GT(sched.stats().preemptions, 0);
  EXPECT_EQ(sched.stats().kv_blocks_used, 0);
}

TEST(Scheduler, CancelFreesBlocksAtNextPlan) {
  CpuEngine engine(model(), {.threads = 2, .block_size = 16, .kv_tokens = 1024});
  Scheduler sched(tokenizer(), engine.kv_spec(), {});
  ASSERT_TRUE(sched.submit(greedy(1, "The capital of France is", 100)));
  ASSERT_TRUE(sched.submit(greedy(2, "Waiting in line", 5)));
  StepBatch batch;
  StepOutput logits;
  std::vector<GenerationEvent> events;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sched.plan(batch, events));
    engine.step(batch, logits);
    sched.complete(logits, events);
  }
  EXPECT_GT(sched.stats().kv_blocks_used, 0);
  sched.cancel(1);
  events.clear();
  sched.plan(batch, events);
  ASSERT_FALSE(events.empty());
  auto& done = std::get<DoneEvent>(events[0]);
  EXPECT_EQ(done.request, 1u);
  EXPECT_EQ(done.reason, StopReason::cancelled);
  EXPECT_EQ(done.completion_tokens, 3);
  EXPECT_EQ(batch.seqs.size(), 1u);  // only request 2 runs on
  engine.step(batch, logits);
  sched.complete(logits, events);
  while (sched.plan(batch, events)) {
    engine.step(batch, logits);
    sched.complete(logits, events);
  }
  EXPECT_TRUE(sched.idle());
  EXPECT_EQ(sched.stats().kv_blocks_used, 0);
  sched.cancel(42);  // unknown ids are ignored
  EXPECT_FALSE(sched.plan(batch, events));
}

TEST(Scheduler, QueueBoundAndImpossibleRequests) {
  CpuEngine engine(model(), {.threads = 1, .block_size = 16, .kv_tokens = 64});
  Scheduler sched(tokenizer(), engine.kv_spec(), {.max_running = 4, .max_queue = 2});
  EXPECT_TRUE(sched.submit(greedy(1, "a", 4)));
  EXPECT_TRUE(sched.submit(greedy(2, "b", 4)));
  EXPECT_FALSE(sched.submit(greedy(3, "c", 4)));
  EXPECT_THROW(sched.submit(greedy(4, "too long for this cache", 200)), InvalidArgument);
  SeqRequest empty;
  empty.id = 5;
  EXPECT_THROW(sched.submit(empty), InvalidArgument);
}

TEST(Scheduler, PrefillLogprobsSurviveChunking) {
  auto cases = test::load_reference(test::test_data("models/falcon-7b-tiny/reference.json"));
  const auto& c = cases[5];  // the long prompt
  CpuEngine engine(model(), {.threads = 2, .block_size = 16, .kv_tokens = 1024});
  Scheduler sched(tokenizer(), engine.kv_spec(), {.max_step_tokens = 37});
  SeqRequest r = greedy(1, c.prompt, 2);
  r.prefill_details = true;
  ASSERT_TRUE(sched.submit(r));
  StepBatch batch;
  StepOutput logits;
  std::vector<GenerationEvent> events;
  while (!sched.idle())
    if (sched.plan(batch, events)) {
      engine.step(batch, logits);
      sched.complete(logits, events);
    }
  auto& done = std::get<DoneEvent>(events.back());
  ASSERT_EQ(done.prefill.size(), c.ids.size());
  EXPECT_FALSE(done.prefill[0].logprob.has_value());
  for (std::size_t i = 1; i < c.ids.size(); ++i) EXPECT_NEAR(*done.prefill[i].logprob, *c.logprobs[i], 1e-3);
  EXPECT_EQ(done.tokens[0].id, c.greedy_ids[0]);
}

}  // namespace
}  // namespace eyrie
