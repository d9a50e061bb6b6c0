// The CPU engine against float64 transformers outputs for every Falcon variant's fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "model/cpu/cpu_engine.hpp"
#include "model/sampling/logits_processors.hpp"
#include "model/sampling/sampler.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

constexpr double kLogprobTol = 1e-3;

class ReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  static const Tokenizer& tokenizer() {
    static Tokenizer t = Tokenizer::from_file(test::test_data("tokenizer.json"));
    return t;
  }
  std::string name() const { return std::filesystem::path(GetParam()).filename().string(); }
};

// Fresh blocks for one sequence: positions [0, n).
std::vector<int32_t> blocks_for(const KvCacheSpec& spec, int64_t n, int32_t first) {
  std::vector<int32_t> b(spec.blocks_for(n));
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = first + static_cast<int32_t>(i);
  return b;
}

TEST_P(ReferenceTest, PromptLogprobsTopTenAndGreedySteps) {
  auto model = FalconModel::load(GetParam());
  CpuEngine engine(model, {.threads = 2, .block_size = 16, .kv_tokens = 2048});
  auto cases = test::load_reference(GetParam() + "/reference.json");
  for (const auto& rc : cases) {
    SCOPED_TRACE(name() + ": " + rc.prompt.substr(0, 40));
    ASSERT_EQ(tokenizer().encode(rc.prompt), rc.ids);
    std::vector<int32_t> seq = rc.ids;
    std::vector<int32_t> blocks = blocks_for(engine.kv_spec(), seq.size() + rc.greedy_ids.size(), 0);
    StepBatch batch;
    batch.seqs.push_back({1, 0, seq, blocks, true});
    StepOutput out;
    engine.step(batch, out);
    for (std::size_t i = 1; i < seq.size(); ++i)
      EXPECT_NEAR(log_softmax_at(out.row(0, i - 1), seq[i]), *rc.logprobs[i], kLogprobTol)
          << "prompt token " << i;
    auto last = out.last(0);
    for (std::size_t k = 0; k < rc.top10_ids.size(); ++k)
      EXPECT_NEAR(log_softmax_at(last, rc.top10_ids[k]), rc.top10_logprobs[k], kLogprobTol);

    // Teacher-forced decode: every step is checked on its own, so a near-tie cannot derail the
    // comparison of the steps after it.
    for (std::size_t step = 0; step < rc.greedy_ids.size(); ++step) {
      const int32_t want = rc.greedy_ids[step];
      if (rc.greedy_margins[step] > kLogprobTol) {
        EXPECT_EQ(argmax(last), want) << "greedy step " << step;
      }
      EXPECT_NEAR(log_softmax_at(last, want), rc.greedy_logprobs[step], kLogprobTol)
          << "greedy step " << step;
      const int32_t tok[1] = {want};
      batch.seqs[0] = {1, static_cast<int32_t>(seq.size()), std::span<const int32_t>(tok, 1), blocks, false};
      engine.step(batch, out);
      seq.push_back(want);
      last = out.last(0);
    }
  }
}

TEST_P(ReferenceTest, BatchedMixedStepsMatchOneSequenceAtATime) {
  auto model = FalconModel::load(GetParam());
  CpuEngine engine(model, {.threads = 2, .block_size = 16, .kv_tokens = 4096});
  auto cases = test::load_reference(GetParam() + "/reference.json");
  const auto& spec = engine.kv_spec();

  // Alone: each prompt then one decode token.
  std::vector<std::vector<float>> alone_prefill, alone_decode;
  for (const auto& rc : cases) {
    auto blocks = blocks_for(spec, rc.ids.size() + 1, 0);
    StepBatch b;
    b.seqs.push_back({1, 0, rc.ids, blocks, false});
    StepOutput out;
    engine.step(b, out);
    alone_prefill.emplace_back(out.last(0).begin(), out.last(0).end());
    const int32_t t[1] = {rc.greedy_ids[0]};
    b.seqs[0] = {1, static_cast<int32_t>(rc.ids.size()), std::span<const int32_t>(t, 1), blocks, false};
    engine.step(b, out);
    alone_decode.emplace_back(out.last(0).begin(), out.last(0).end());
  }

  // Together: even cases prefill in step 1 and decode in step 2 while odd cases prefill in
  // step 2 in chunks, so one step mixes decoding and prefilling sequences of other lengths.
  std::vector<std::vector<int32_t>> blocks;
  int32_t next_block = 0;
  for (const auto& rc : cases) {
    blocks.push_back(blocks_for(spec, rc.ids.size() + 1, next_block));
    next_block += static_cast<int32_t>(blocks.back().size());
  }
  StepBatch s1, s2;
  std::vector<int32_t> firsts(cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) firsts[i] = cases[i].greedy_ids[0];
  for (std::size_t i = 0; i < cases.size(); i += 2) s1.seqs.push_back({i, 0, cases[i].ids, blocks[i], false});
  for (std::size_t i = 1; i < cases.size(); i += 2) {
    // The first half of an odd prompt goes in step 1 as a chunk, the rest in step 2.
    std::span<const int32_t> ids(cases[i].ids);
    const std::size_t half = ids.size() / 2;
    if (half > 0) s1.seqs.push_back({i, 0, ids.subspan(0, half), blocks[i], false});
    s2.seqs.push_back({i, static_cast<int32_t>(half), ids.subspan(half), blocks[i], false});
  }
  StepOutput o1, o2;
  engine.step(s1, o1);
  for (std::size_t i = 0; i < cases.size(); i += 2)
    s2.seqs.push_back({i, static_cast<int32_t>(cases[i].ids.size()),
                       std::span<const int32_t>(&firsts[i], 1), blocks[i], false});
  engine.step(s2, o2);

  auto expect_close = [](std::span<const float> a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size());
    double worst = 0;
    for (std::size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(double(a[k]) - b[k]));
    EXPECT_LT(worst, 1e-4) << what;
  };
  for (std::size_t j = 0; j < s1.seqs.size(); ++j) {
    std::size_t i = s1.seqs[j].seq_id;
    if (i % 2 == 0) expect_close(o1.last(j), alone_prefill[i], "prefill in a batch");
  }
  for (std::size_t j = 0; j < s2.seqs.size(); ++j) {
    std::size_t i = s2.seqs[j].seq_id;
    expect_close(o2.last(j), i % 2 ? alone_prefill[i] : alone_decode[i],
                 i % 2 ? "chunked prefill beside decodes" : "decode beside prefills");
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceTest, ::testing::ValuesIn(test::fixture_models()),
                         [](const auto& p) { return test::fixture_name(p.param); });

}  // namespace
}  // namespace eyrie
