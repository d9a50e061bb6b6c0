// Falcon's byte-level BPE tokenizer, reproducing Hugging Face tokenizers' ids for tokenizer.json.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/added_tokens.hpp"
#include "model/tokenizer/bpe.hpp"
#include "model/tokenizer/pretokenizer.hpp"

namespace eyrie {

class Tokenizer {
 public:
  // Throws eyrie::Error naming the file and the problem.
  static Tokenizer from_file(const std::string& path);

  // Ids as tokenizers' encode(text, add_special_tokens) gives them (Falcon has no post-processor,
  // so there is nothing to add). Added tokens in the text are recognised. Invalid UTF-8, which a
  // Rust &str cannot hold, is first repaired as String::from_utf8_lossy would (U+FFFD per maximal
  // invalid subsequence). Thread-safe.
  std::vector<int32_t> encode(std::string_view text) const;

  // Concatenated token bytes as UTF-8, invalid sequences replaced like String::from_utf8_lossy.
  // Throws eyrie::Error for an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The raw bytes a token stands for (a fragment of a UTF-8 character for some tokens). This and
  // is_special() throw eyrie::Error for an id outside the vocabulary.
  const std::string& token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;  // by vocabulary string
  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }

 private:
  Tokenizer(BpeModel bpe, PreTokenizer pre, AddedTokenMatcher added);
  void check_id(int32_t id) const;
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;

  BpeModel bpe_;
  PreTokenizer pre_;
  AddedTokenMatcher added_;
  std::vector<std::string> token_bytes_;  // by id
  std::vector<uint8_t> special_;          // by id
  std::vector<uint8_t> known_;            // by id: whether any token has it
};

}  // namespace eyrie
