// Generation parameters with TGI's names, defaults and validation rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace eyrie {

struct SamplingParams {
  bool do_sample = false;
  // Unset or 0 means greedy unless do_sample or another warper asks for sampling.
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<double> typical_p;
  std::optional<double> repetition_penalty;
  std::optional<uint64_t> seed;
  int64_t max_new_tokens = 20;
  std::vector<std::string> stop;

  // Sampling happens when asked for or when any warper is set, as in TGI.
  bool sampling() const;
  // Throws eyrie::InvalidArgument naming the parameter and the allowed range.
  void validate() const;
};

}  // namespace eyrie
