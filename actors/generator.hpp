// One request run to completion on an engine, synchronously: the command line's path, and the
// same scheduler the server uses.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "actors/request.hpp"
#include "model/step.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {

struct GenerateRequest {
  std::string prompt;
  SamplingParams params;
  bool prefill_details = false;  // logprobs of the prompt tokens
};

// Called once per generated token with its detail and the text it adds to the output.
using TokenCallback = std::function<void(const TokenDetail&, std::string_view text)>;

class Generator {
 public:
  Generator(Engine& engine, const Tokenizer& tokenizer);
  // Throws eyrie::InvalidArgument for bad parameters, an empty or too long prompt.
  DoneEvent run(const GenerateRequest& request, const TokenCallback& on_token = {});

 private:
  Engine& engine_;
  const Tokenizer& tokenizer_;
};

}  // namespace eyrie
