// Sampling maths against transformers' logits processors, seeded draws and stop sequences.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "model/error.hpp"
#include "model/sampling/logits_processors.hpp"
#include "model/sampling/params.hpp"
#include "model/sampling/sampler.hpp"
#include "model/sampling/stop_matcher.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

TEST(LogitsProcessors, MatchTransformers) {
  simdjson::dom::parser parser;
  simdjson::dom::element root = parser.load(test::test_data("logits_processors.json"));
  int checked = 0;
  for (simdjson::dom::object c : root["cases"].get_array()) {
    std::string kind{std::string_view(c["kind"])};
    simdjson::dom::object params = c["params"];
    std::vector<float> logits;
    for (auto v : c["logits"].get_array()) logits.push_back(static_cast<float>(double(v)));
    std::vector<int32_t> history;
    for (auto v : c["history"].get_array()) history.push_back(static_cast<int32_t>(int64_t(v)));
    std::span<float> s(logits);
    if (kind == "temperature") apply_temperature(s, static_cast<float>(double(params["temperature"])));
    else if (kind == "top_k") apply_top_k(s, int64_t(params["top_k"]));
    else if (kind == "top_p") apply_top_p(s, static_cast<float>(double(params["top_p"])));
    else if (kind == "typical_p") apply_typical_p(s, static_cast<float>(double(params["typical_p"])));
    else if (kind == "repetition_penalty")
      apply_repetition_penalty(s, history, static_cast<float>(double(params["repetition_penalty"])));
    else FAIL() << "unknown case " << kind;
    std::size_t i = 0;
    for (auto v : c["expected"].get_array()) {
      SCOPED_TRACE(kind + " element " + std::to_string(i));
      if (v.is_null()) EXPECT_TRUE(std::isinf(logits[i]) && logits[i] < 0);
      else EXPECT_NEAR(logits[i], double(v), 1e-5 * (1 + std::abs(double(v))));
      ++i;
    }
    EXPECT_EQ(i, logits.size());
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

// transformers' TopP written out in full: every value sorted ascending, stable.
void top_p_by_full_sort(std::vector<float>& logits, float p) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] < logits[b]; });
  double mx = -INFINITY, sum = 0;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  std::vector<double> probs(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) sum += probs[i] = std::exp(logits[i] - mx);
  double cum = 0;
  const double cut = 1.0 - static_cast<double>(p);
  for (std::size_t i = 0; i + 1 < order.size(); ++i) {
    cum += probs[order[i]] / sum;
    if (cum <= cut) logits[order[i]] = -INFINITY;
    else break;
  }
}

// The head-only selection removes exactly what sorting everything would: flat and peaked rows,
// rows full of ties, small and Falcon-sized vocabularies.
TEST(LogitsProcessors, TopPKeepsWhatAFullSortKeeps) {
  std::mt19937 rng(7);
  for (int32_t vocab : {5, 300, 65024})
    for (float spread : {0.05f, 1.f, 6.f})
      for (bool ties : {false, true})
        for (float p : {0.1f, 0.5f, 0.9f, 0.999f}) {
          std::normal_distribution<float> normal(0.f, spread);
          std::vector<float> row(vocab);
          for (float& v : row) v = ties ? std::round(normal(rng) * 4.f) / 4.f : normal(rng);
          std::vector<float> expected = row;
          top_p_by_full_sort(expected, p);
          apply_top_p(row, p);
          for (int32_t i = 0; i < vocab; ++i)
            ASSERT_EQ(std::isinf(row[i]), std::isinf(expected[i]))
                << "vocab " << vocab << " spread " << spread << (ties ? " ties" : "") << " p " << p << " at " << i;
        }
}

TEST(Sampler, GreedyTakesFirstMaximumAndReportsRawLogprob) {
  SamplingParams p;
  p.repetition_penalty = 2.0;
  Sampler s(p, 0);
  std::vector<float> logits{1.f, 3.f, 3.f, 0.f};
  std::vector<int32_t> history{};
  TokenChoice c = s.choose(logits, history);
  EXPECT_EQ(c.id, 1);
  EXPECT_NEAR(c.logprob, log_softmax_at(logits, 1), 1e-6);
  history = {1};  // penalised: 3 / 2 = 1.5 < 3
  EXPECT_EQ(s.choose(logits, history).id, 2);
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedDifferentDraws) {
  SamplingParams p;
  p.temperature = 1.5;
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 1.7f) * 2;
  auto draws = [&](uint64_t seed) {
    Sampler s(p, seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.choose(logits, {}).id);
    return out;
  };
  EXPECT_EQ(draws(42), draws(42));
  EXPECT_NE(draws(42), draws(43));
}

TEST(Sampler, DrawsFollowTheDistribution) {
  SamplingParams p;
  p.do_sample = true;
  std::vector<float> logits{std::log(0.7f), std::log(0.2f), std::log(0.1f)};
  Sampler s(p, 7);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.choose(logits, {}).id];
  EXPECT_NEAR(counts[0] / double(n), 0.7, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.2, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.1, 0.02);
}

TEST(Sampler, TopKOfOneIsGreedy) {
  SamplingParams p;
  p.top_k = 1;
  p.temperature = 5.0;
  Sampler s(p, 3);
  std::vector<float> logits{0.1f, 0.5f, 0.4f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.choose(logits, {}).id, 1);
}

TEST(SamplingParams, ValidationNamesTheParameter) {
  auto msg = [](auto set) {
    SamplingParams p;
    set(p);
    try {
      p.validate();
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg([](SamplingParams& p) { p.temperature = -1; }).find("temperature"), std::string::npos);
  EXPECT_NE(msg([](SamplingParams& p) { p.top_p = 1.5; }).find("top_p"), std::string::npos);
  EXPECT_NE(msg([](SamplingParams& p) { p.top_k = 0; }).find("top_k"), std::string::npos);
  EXPECT_NE(msg([](SamplingParams& p) { p.typical_p = 0; }).find("typical_p"), std::string::npos);
  EXPECT_NE(msg([](SamplingParams& p) { p.repetition_penalty = 0; }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(msg([](SamplingParams& p) { p.max_new_tokens = 0; }).find("max_new_tokens"), std::string::npos);
  EXPECT_NE(msg([](SamplingParams& p) { p.stop = {""}; }).find("stop"), std::string::npos);
  EXPECT_EQ(msg([](SamplingParams& p) { p.top_p = 1.0; }), "");
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.top_k = 5;
  EXPECT_FALSE(greedy.sampling());
}

TEST(StopMatcher, FindsSequencesSplitAcrossPieces) {
  StopMatcher m({"\n\nUser:", "END"});
  EXPECT_FALSE(m.push("Hello"));
  EXPECT_FALSE(m.push(" world\n"));
  EXPECT_FALSE(m.push("\nUs"));
  auto hit = m.push("er: more");
  ASSERT_TRUE(hit);
  EXPECT_EQ(*hit, "\n\nUser:");
  StopMatcher e({"END"});
  EXPECT_FALSE(e.push("EN"));
  EXPECT_TRUE(e.push("D"));
  StopMatcher none({});
  EXPECT_FALSE(none.push("anything END"));
}

}  // namespace
}  // namespace eyrie
