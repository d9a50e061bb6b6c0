// Token choice on the GPU against eyrie::Sampler on the host, fed the same rows and the same
// seeded draws: every parameter mix (repetition penalty, temperature, top-k, top-p, greedy),
// Falcon's vocabulary size and a small one, continuous logits and logits full of ties.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <cmath>
#include <random>

#include "cuda/check.hpp"
#include "tests/cuda/device_buffer.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/sampling.hpp"
#include "model/sampling/sampler.hpp"

namespace eyrie {
namespace {

using test::Device;

double logsumexp(const std::vector<float>& row) {
  double mx = -INFINITY, sum = 0;
  for (float v : row) mx = std::max(mx, static_cast<double>(v));
  for (float v : row) sum += std::exp(v - mx);
  return mx + std::log(sum);
}

std::vector<SamplingParams> parameter_mixes() {
  std::vector<SamplingParams> mixes;
  auto add = [&](auto&& set) {
    SamplingParams p;
    set(p);
    mixes.push_back(p);
  };
  add([](SamplingParams& p) { p.repetition_penalty = 1.3; });  // greedy with a penalty
  add([](SamplingParams& p) { p.do_sample = true; });
  add([](SamplingParams& p) { p.temperature = 0.7; });
  add([](SamplingParams& p) { p.top_k = 1; });
  add([](SamplingParams& p) { p.top_k = 40; });
  add([](SamplingParams& p) { p.top_p = 0.9; });
  add([](SamplingParams& p) { p.top_p = 0.35; });
  add([](SamplingParams& p) {
    p.temperature = 1.4;
    p.top_k = 200;
    p.top_p = 0.8;
  });
  add([](SamplingParams& p) {
    p.temperature = 0.6;
    p.top_p = 0.95;
    p.repetition_penalty = 1.2;
  });
  add([](SamplingParams& p) {
    p.do_sample = true;
    p.top_k = 5;
    p.repetition_penalty = 0.8;
  });
  return mixes;
}

// rows_per_mix rows for every parameter mix, each with its own seed; ties: logits on a coarse
// grid, so top-k and top-p boundaries fall inside runs of equal values.
void check_choices(int32_t vocab, bool ties, float spread, int rows_per_mix) {
  SCOPED_TRACE("vocab " + std::to_string(vocab) + (ties ? " with ties" : "") + " spread " + std::to_string(spread));
  const auto mixes = parameter_mixes();
  std::mt19937 rng(vocab + ties);
  std::normal_distribution<float> normal(0.f, spread);
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  std::vector<float> logits;
  std::vector<float> lse;
  std::vector<cuda::SampleRow> rows;
  std::vector<int32_t> history;
  std::vector<std::vector<int32_t>> histories;
  std::vector<TokenChoice> expected;
  uint64_t seed = 1;
  for (const auto& params : mixes) {
    for (int k = 0; k < rows_per_mix; ++k, ++seed) {
      std::vector<float> row(vocab);
      for (float& v : row) v = ties ? std::round(normal(rng) * 2.f) / 2.f : normal(rng);
      std::vector<int32_t> hist(50);
      for (int32_t& t : hist) t = token(rng);
      hist.push_back(hist.front());  // a repeated id is penalised once
      Sampler host(params, seed), device(params, seed);
      DeviceSampling d;
      ASSERT_TRUE(device.device_choice(d, hist));
      expected.push_back(host.choose(row, hist));
      cuda::SampleRow r{};
      r.row = static_cast<int32_t>(rows.size());
      r.sample = d.sample;
      r.top_k = d.top_k;
      r.temperature = d.temperature;
      r.top_p = d.top_p;
      r.repetition_penalty = d.repetition_penalty;
      r.uniform = d.uniform;
      r.history_begin = static_cast<int32_t>(history.size());
      r.history_count = static_cast<int32_t>(hist.size());
      history.insert(history.end(), hist.begin(), hist.end());
      rows.push_back(r);
      lse.push_back(static_cast<float>(logsumexp(row)));
      logits.insert(logits.end(), row.begin(), row.end());
    }
  }
  const auto n = static_cast<int32_t>(rows.size());
  Device<float> d_logits(logits), d_lse(lse), work(static_cast<std::size_t>(n) * vocab), d_lp(n);
  Device<cuda::SampleRow> d_rows(rows);
  Device<int32_t> d_history(history), d_ids(n);
  cuda::sample_rows(d_logits.p, d_lse.p, vocab, d_rows.p, n, d_history.p, work.p, d_ids.p, d_lp.p, nullptr);
  EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
  const auto ids = d_ids.get(n);
  const auto lps = d_lp.get(n);
  int distinct = 0;
  for (int32_t i = 0; i < n; ++i) {
    const std::size_t mix = static_cast<std::size_t>(i) / rows_per_mix;
    ASSERT_EQ(ids[i], expected[i].id) << "row " << i << " (parameter mix " << mix << ")";
    EXPECT_NEAR(lps[i], expected[i].logprob, 2e-4) << "row " << i;
    distinct += i > 0 && ids[i] != ids[i - 1];
  }
  EXPECT_GT(distinct, n / 4) << "the draws should not all land on the same token";
}

class SamplingKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(SamplingKernel, ChoosesAsTheHostSamplerDoes) {
  check_choices(65024, false, 3.f, 12);
  check_choices(65024, true, 3.f, 12);
  check_choices(1000, false, 1.f, 24);
  check_choices(1000, true, 2.f, 24);
  check_choices(37, true, 1.f, 24);
}

}  // namespace
}  // namespace eyrie
#endif
