// Tensor parallelism on the CPU: shard plans, the in-process communicator, and sharded engines
// at degrees 2-4 against the whole model on every fixture variant.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "model/cpu/cpu_engine.hpp"
#include "model/parallel/communicator.hpp"
#include "model/parallel/shard_group.hpp"
#include "model/parallel/shard_plan.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

FalconConfig real_config(const std::string& name) {
  return FalconConfig::from_file(test::test_data("configs/" + name + ".json"));
}

TEST(ShardPlanTest, Falcon7bSplitsItsPrimeHeadCountUnevenlyAndKeepsTheKvHeadEverywhere) {
  const FalconConfig c = real_config("falcon-7b");
  ASSERT_EQ(c.num_heads, 71);
  const ShardPlan a = ShardPlan::make(c, 2, 0), b = ShardPlan::make(c, 2, 1);
  EXPECT_EQ(a.q_begin, 0);
  EXPECT_EQ(a.q_count, 36);
  EXPECT_EQ(b.q_begin, 36);
  EXPECT_EQ(b.q_count, 35);
  EXPECT_EQ(a.kv_count, 1);
  EXPECT_EQ(b.kv_count, 1);
  EXPECT_EQ(b.kv_of(34), 0);
}

TEST(ShardPlanTest, Falcon40bSplitsWholeKvGroupsUnevenlyUpToEightShards) {
  const FalconConfig c = real_config("falcon-40b");
  ASSERT_EQ(c.num_kv_heads, 8);
  std::vector<int64_t> heads;
  for (int r = 0; r < 3; ++r) {
    const ShardPlan p = ShardPlan::make(c, 3, r);
    heads.push_back(p.q_count);
    EXPECT_EQ(p.q_count, p.kv_count * c.group_size());
  }
  EXPECT_EQ(heads, (std::vector<int64_t>{48, 48, 32}));
}

TEST(ShardPlanTest, Falcon40bPastEightShardsReplicatesKvHeads) {
  const FalconConfig c = real_config("falcon-40b");
  const ShardPlan p16 = ShardPlan::make(c, 16, 3);
  EXPECT_EQ(p16.q_count, 8);
  EXPECT_EQ(p16.kv_count, 1);
  EXPECT_EQ(p16.kv_begin, 1);
  // 12 shards of 10 or 11 heads: some straddle two groups and keep both KV heads.
  const ShardPlan p12 = ShardPlan::make(c, 12, 1);
  EXPECT_EQ(p12.q_begin, 11);
  EXPECT_EQ(p12.kv_begin, 0);
  EXPECT_EQ(p12.kv_count, 2);
  EXPECT_EQ(p12.kv_of(0), 0);   // global head 11, group 0
  EXPECT_EQ(p12.kv_of(10), 1);  // global head 21, group 1
}

// Every head, KV head read, FFN column and vocabulary row is owned exactly as the model needs.
TEST(ShardPlanTest, EveryDegreeCoversTheModelExactlyOnce) {
  for (const char* name : {"falcon-7b", "falcon-40b", "falcon-180b"}) {
    const FalconConfig c = real_config(name);
    for (int degree = 1; degree <= 24; ++degree) {
      SCOPED_TRACE(std::string(name) + " degree " + std::to_string(degree));
      int64_t next_q = 0, next_f = 0;
      std::vector<int> vocab_owner(static_cast<std::size_t>(c.vocab_size), 0);
      for (int r = 0; r < degree; ++r) {
        const ShardPlan p = ShardPlan::make(c, degree, r);
        EXPECT_EQ(p.q_begin, next_q);
        EXPECT_GE(p.q_count, 1);
        next_q += p.q_count;
        EXPECT_EQ(p.ffn_begin, next_f);
        next_f += p.ffn_count;
        for (int64_t h = 0; h < p.q_count; ++h) {
          EXPECT_EQ(p.kv_begin + p.kv_of(h), (p.q_begin + h) / c.group_size());
          EXPECT_GE(p.kv_of(h), 0);
          EXPECT_LT(p.kv_of(h), p.kv_count);
        }
        for (int64_t v = 0; v < p.vocab_count; ++v) ++vocab_owner[p.vocab_begin + v];
        EXPECT_LE(p.vocab_count, p.vocab_shard);
      }
      EXPECT_EQ(next_q, c.num_heads);
      EXPECT_EQ(next_f, c.ffn_hidden_size);
      EXPECT_TRUE(std::all_of(vocab_owner.begin(), vocab_owner.end(), [](int n) { return n == 1; }));
    }
  }
}

TEST(ShardPlanTest, RefusesMoreShardsThanHeads) {
  const FalconConfig c = real_config("falcon-7b");
  try {
    ShardPlan::make(c, 72, 0);
    FAIL() << "degree 72 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("71 attention heads"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ShardPlan::make(c, 0, 0), InvalidArgument);
}

// Runs fn(rank) on one thread per rank and rethrows the first failure.
void on_ranks(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(n);
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

TEST(InProcessCommunicatorTest, AllReduceGivesEveryRankTheSameSum) {
  constexpr int n = 3;
  auto group = make_in_process_group(n);
  std::vector<std::vector<float>> data(n);
  on_ranks(n, [&](int r) {
    data[r].assign(1001, 0.f);
    for (std::size_t i = 0; i < data[r].size(); ++i) data[r][i] = 0.1f * static_cast<float>(r + 1) + 1e-3f * i;
    group[r]->all_reduce_sum(data[r].data(), data[r].size(), nullptr);
  });
  for (std::size_t i = 0; i < 1001; ++i) {
    EXPECT_NEAR(data[0][i], 0.6f + 3e-3f * i, 1e-4f);
    EXPECT_EQ(data[1][i], data[0][i]);
    EXPECT_EQ(data[2][i], data[0][i]);
  }
}

TEST(InProcessCommunicatorTest, AllGatherConcatenatesInRankOrder) {
  constexpr int n = 4;
  auto group = make_in_process_group(n);
  std::vector<std::vector<float>> out(n, std::vector<float>(2 * n));
  on_ranks(n, [&](int r) {
    const float mine[2] = {static_cast<float>(10 * r), static_cast<float>(10 * r + 1)};
    group[r]->all_gather(mine, out[r].data(), 2, nullptr);
  });
  for (int r = 0; r < n; ++r)
    EXPECT_EQ(out[r], (std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31}));
}

TEST(InProcessCommunicatorTest, AbortReleasesARankWaitingForItsPeers) {
  auto group = make_in_process_group(2);
  std::atomic<bool> released{false};
  std::thread waiter([&] {
    float x = 1.f;
    EXPECT_THROW(group[0]->all_reduce_sum(&x, 1, nullptr), GroupAborted);
    released = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  group[1]->abort("rank 1 failed");
  waiter.join();
  EXPECT_TRUE(released);
  float y = 0.f;
  try {
    group[1]->all_reduce_sum(&y, 1, nullptr);
    FAIL() << "an aborted group ran a collective";
  } catch (const GroupAborted& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 failed"), std::string::npos);
  }
}

// Sharded engines of one group and a whole engine, all fed the same steps.
class ShardedCpuTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  void SetUp() override {
    model_ = FalconModel::load(std::get<0>(GetParam()));
    degree_ = std::get<1>(GetParam());
    whole_ = std::make_unique<CpuEngine>(model_, CpuEngineOptions{.threads = 1, .block_size = 16, .kv_tokens = 1024});
    auto group = make_in_process_group(degree_);
    for (int r = 0; r < degree_; ++r)
      shards_.push_back(std::make_unique<CpuEngine>(
          model_, CpuEngineOptions{.threads = 1, .block_size = 16, .kv_tokens = 1024}, group[r]));
  }

  // Steps the group and the whole engine; every rank's rows must equal the whole model's.
  void step_and_compare(const StepBatch& batch, const char* what) {
    StepOutput want;
    whole_->step(batch, want);
    std::vector<StepOutput> got(degree_);
    on_ranks(degree_, [&](int r) { shards_[r]->step(batch, got[r]); });
    for (int r = 0; r < degree_; ++r) {
      SCOPED_TRACE(std::string(what) + ", rank " + std::to_string(r));
      for (std::size_t s = 0; s < batch.seqs.size(); ++s) {
        ASSERT_EQ(got[r].num_rows(s), want.num_rows(s));
        for (std::size_t i = 0; i < want.num_rows(s); ++i) {
          auto a = got[r].row(s, i), b = want.row(s, i);
          double worst = 0;
          for (std::size_t k = 0; k < a.size(); ++k)
            worst = std::max(worst, std::abs(double(a[k]) - b[k]) / std::max(1.0, std::abs(double(b[k]))));
          ASSERT_LT(worst, 1e-4) << "sequence " << s << " row " << i;
          EXPECT_NEAR(got[r].logsumexp(s, i), want.logsumexp(s, i), 1e-4);
        }
        EXPECT_EQ(got[r].last_argmax(s), want.last_argmax(s));
      }
    }
  }

  std::shared_ptr<const FalconModel> model_;
  int degree_ = 1;
  std::unique_ptr<CpuEngine> whole_;
  std::vector<std::unique_ptr<CpuEngine>> shards_;
};

TEST_P(ShardedCpuTest, LogitsEqualTheWholeModelThroughPrefillChunksAndDecodes) {
  auto cases = test::load_reference(std::get<0>(GetParam()) + "/reference.json");
  ASSERT_GE(cases.size(), 2u);
  const auto& a = cases[0].ids;
  const auto& b = cases[1].ids;
  std::vector<int32_t> blocks_a, blocks_b;
  for (int32_t i = 0; i < 8; ++i) blocks_a.push_back(i), blocks_b.push_back(8 + i);
  // Step 1: all of prompt a with every row's logits, and the first half of prompt b.
  const std::size_t half = b.size() / 2;
  StepBatch s1;
  s1.seqs.push_back({1, 0, a, blocks_a, true});
  if (half > 0) s1.seqs.push_back({2, 0, std::span<const int32_t>(b).subspan(0, half), blocks_b, false});
  step_and_compare(s1, "prefill");
  // Step 2: a decodes while the rest of b prefills.
  const int32_t next[1] = {cases[0].greedy_ids[0]};
  StepBatch s2;
  s2.seqs.push_back({1, static_cast<int32_t>(a.size()), std::span<const int32_t>(next, 1), blocks_a, false});
  s2.seqs.push_back({2, static_cast<int32_t>(half), std::span<const int32_t>(b).subspan(half), blocks_b, false});
  step_and_compare(s2, "decode beside a prefill chunk");
}

TEST_P(ShardedCpuTest, EveryShardRefusesABadBatchBeforeAnyExchange) {
  StepBatch bad;
  const int32_t tok[1] = {static_cast<int32_t>(model_->config.vocab_size)};
  const int32_t blocks[1] = {0};
  bad.seqs.push_back({1, 0, std::span<const int32_t>(tok, 1), std::span<const int32_t>(blocks, 1), false});
  std::atomic<int> refused{0};
  on_ranks(degree_, [&](int r) {
    StepOutput out;
    try {
      shards_[r]->step(bad, out);
    } catch (const InvalidArgument&) {
      ++refused;
    }
  });
  EXPECT_EQ(refused, degree_);
}

TEST_P(ShardedCpuTest, AShardGroupStepsLikeTheWholeModel) {
  auto cases = test::load_reference(std::get<0>(GetParam()) + "/reference.json");
  auto group = make_in_process_group(degree_);
  std::vector<std::shared_ptr<Engine>> shards;
  for (int r = 0; r < degree_; ++r)
    shards.push_back(std::make_shared<CpuEngine>(model_, CpuEngineOptions{.threads = 1, .block_size = 16, .kv_tokens = 512},
                                                 group[r]));
  ShardGroup g(shards, group);
  EXPECT_EQ(g.kv_spec().num_blocks, shards[0]->kv_spec().num_blocks);
  std::vector<int32_t> blocks{0, 1, 2, 3};
  StepBatch b;
  b.seqs.push_back({1, 0, cases[0].ids, blocks, true});
  StepOutput got, want;
  for (int i = 0; i < 2; ++i) {  // twice: the group's threads are reused
    g.step(b, got);
    whole_->step(b, want);
    ASSERT_EQ(got.num_rows(0), want.num_rows(0));
    for (std::size_t r = 0; r < want.num_rows(0); ++r)
      for (std::size_t k = 0; k < static_cast<std::size_t>(want.vocab()); ++k)
        ASSERT_NEAR(got.row(0, r)[k], want.row(0, r)[k], 1e-4 * std::max(1.0f, std::abs(want.row(0, r)[k])));
  }
}

// A shard that fails mid-step, after its peers have entered the step's first exchange.
class FailingShard final : public Engine {
 public:
  explicit FailingShard(const Engine& like) : like_(like) {}
  const FalconConfig& config() const override { return like_.config(); }
  const KvCacheSpec& kv_spec() const override { return like_.kv_spec(); }
  void step(const StepBatch&, StepOutput&) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    throw Error("device lost");
  }

 private:
  const Engine& like_;
};

TEST(ShardGroupTest, AFailingShardStopsItsPeersInsteadOfHangingThem) {
  auto model = FalconModel::load(test::test_data("models/falcon-7b-tiny"));
  auto group = make_in_process_group(2);
  auto rank0 = std::make_shared<CpuEngine>(model, CpuEngineOptions{.threads = 1, .block_size = 16, .kv_tokens = 256},
                                           group[0]);
  ShardGroup g({rank0, std::make_shared<FailingShard>(*rank0)}, group);
  const int32_t tok[2] = {11, 12};
  const int32_t blocks[1] = {0};
  StepBatch b;
  b.seqs.push_back({1, 0, std::span<const int32_t>(tok, 2), std::span<const int32_t>(blocks, 1), false});
  StepOutput out;
  try {
    g.step(b, out);
    FAIL() << "the step succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device lost"), std::string::npos) << e.what();
  }
  // The group stays stopped, and says why, rather than running a half-broken replica.
  try {
    g.step(b, out);
    FAIL() << "a stopped group stepped";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device lost"), std::string::npos) << e.what();
  }
}

std::vector<std::tuple<std::string, int>> sharded_cases() {
  std::vector<std::tuple<std::string, int>> out;
  for (const auto& m : test::fixture_models())
    for (int d : {1, 2, 3, 4}) out.emplace_back(m, d);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ShardedCpuTest, ::testing::ValuesIn(sharded_cases()), [](const auto& p) {
  return test::fixture_name(std::get<0>(p.param)) + "_tp" + std::to_string(std::get<1>(p.param));
});

}  // namespace
}  // namespace eyrie
