// Reads the transformers reference outputs stored beside each fixture model.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace eyrie::test {

struct ReferenceCase {
  std::string prompt;
  std::vector<int32_t> ids;
  std::vector<std::optional<double>> logprobs;
  std::vector<int32_t> top10_ids;
  std::vector<double> top10_logprobs;
  std::vector<int32_t> greedy_ids;
  std::vector<double> greedy_logprobs;
  std::vector<double> greedy_margins;
  std::string greedy_text;
};

std::vector<ReferenceCase> load_reference(const std::string& path);

// Fixture model directories under tests/data/models.
std::vector<std::string> fixture_models();
// A GoogleTest-safe name for a fixture directory parameter ("falcon_7b_tiny").
std::string fixture_name(const std::string& dir);

}  // namespace eyrie::test
