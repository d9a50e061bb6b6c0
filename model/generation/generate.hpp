// One request end to end on an engine: tokenize, prefill, decode, sample, stop, detokenize.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/sampling/params.hpp"
#include "model/step.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {

enum class FinishReason { length, eos_token, stop_sequence };
std::string_view finish_reason_name(FinishReason r);

struct TokenDetail {
  int32_t id = 0;
  std::string text;
  std::optional<float> logprob;  // none for the first prompt token
  bool special = false;
};

struct GenerateRequest {
  std::string prompt;
  SamplingParams params;
  bool prefill_details = false;  // logprobs of the prompt tokens
};

struct GenerationResult {
  std::string generated_text;
  FinishReason finish_reason = FinishReason::length;
  std::vector<TokenDetail> prefill;
  std::vector<TokenDetail> tokens;
  std::optional<uint64_t> seed;  // set when sampling
};

// Called once per generated token with its detail and the text it adds to the output.
using TokenCallback = std::function<void(const TokenDetail&, std::string_view text)>;

// Runs requests one at a time on an engine whose KV cache it owns while it lives.
class Generator {
 public:
  Generator(Engine& engine, const Tokenizer& tokenizer);
  // Throws eyrie::InvalidArgument for bad parameters, an empty or too long prompt.
  GenerationResult run(const GenerateRequest& request, const TokenCallback& on_token = {});

 private:
  Engine& engine_;
  const Tokenizer& tokenizer_;
  BlockAllocator blocks_;
};

}  // namespace eyrie
