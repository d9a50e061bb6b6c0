// Hugging Face reference results for the tokenizer tests, and the Falcon tokenizer they share.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.hpp"

namespace eyrie::test {

struct EncodeCase {
  std::string name;
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
  std::string decoded_skip_special;
};

struct DecodeCase {
  std::string name;
  std::vector<int32_t> ids;
  bool skip_special;
  std::string text;
};

struct TokenizerCases {
  std::vector<EncodeCase> encode;
  std::vector<DecodeCase> decode;
};

// Loaded once: tests/data/tokenizer_cases.json and tests/data/tokenizer.json.
const TokenizerCases& tokenizer_cases();
const Tokenizer& falcon_tokenizer();

}  // namespace eyrie::test
