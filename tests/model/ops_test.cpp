// CPU ops against double-precision references on random inputs.
#include "model/cpu/ops.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/cpu/cpu_engine.hpp"
#include "model/sampling/logits_processors.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

TEST(CpuOps, LogSumExpMatchesDouble) {
  std::mt19937 rng(3);
  for (int64_t n : {1, 7, 8, 100, 65024}) {
    for (float scale : {0.1f, 5.0f, 60.0f}) {
      std::normal_distribution<float> d(0.f, scale);
      std::vector<float> x(n);
      for (auto& v : x) v = d(rng);
      double mx = *std::max_element(x.begin(), x.end()), sum = 0;
      for (float v : x) sum += std::exp(static_cast<double>(v) - mx);
      EXPECT_NEAR(logsumexp_row(x.data(), n), mx + std::log(sum), 1e-5 * (1 + std::abs(mx))) << n << " " << scale;
    }
  }
  std::vector<float> masked{-INFINITY, 2.0f, -INFINITY};
  EXPECT_NEAR(logsumexp_row(masked.data(), 3), 2.0f, 1e-6);
}

TEST(CpuOps, EngineLogSumExpAgreesWithLogits) {
  CpuEngine engine(FalconModel::load(test::test_data("models/falcon-40b-tiny")),
                   {.threads = 2, .block_size = 16, .kv_tokens = 256});
  std::vector<int32_t> tokens{11, 500, 2000, 30000}, blocks{0};
  StepBatch b;
  b.seqs.push_back({1, 0, tokens, blocks, true});
  StepOutput out;
  engine.step(b, out);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    EXPECT_NEAR(out.row(0, i)[7] - out.logsumexp(0, i), log_softmax_at(out.row(0, i), 7), 1e-4);
}

}  // namespace
}  // namespace eyrie

namespace eyrie {
namespace {

TEST(CpuOps, RowStatsArgmaxIsFirstMaximum) {
  std::vector<float> x(37, 0.f);
  x[20] = 3.f;
  x[30] = 3.f;
  EXPECT_EQ(row_stats(x.data(), 37).argmax, 20);
  x[36] = 4.f;  // in the scalar tail
  EXPECT_EQ(row_stats(x.data(), 37).argmax, 36);
}

}  // namespace
}  // namespace eyrie
