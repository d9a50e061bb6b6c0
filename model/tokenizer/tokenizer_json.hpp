// Reads a Hugging Face tokenizer.json into what the Falcon tokenizer is built from, rejecting every
// configuration it would not reproduce exactly.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/tokenizer/added_tokens.hpp"
#include "model/tokenizer/bpe.hpp"
#include "model/tokenizer/pretokenizer.hpp"

namespace eyrie {

struct TokenizerSpec {
  Vocab vocab;                                              // byte-level spelling -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added_tokens;
  PreTokenizerOptions pre_tokenizer;
};

// Throws eyrie::Error naming `path` and the problem.
TokenizerSpec read_tokenizer_json(const std::string& path);

}  // namespace eyrie
