// Streaming detokenization: text for each new token as soon as it forms whole UTF-8 characters.
#pragma once

#include <cstdint>
#include <string>

#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {

// The pieces returned by push() and then flush() concatenate to exactly Tokenizer::decode() of
// all the ids pushed, and each piece is valid UTF-8: a character cut across tokens is held back
// until it is complete (or, at flush, replaced by U+FFFD as decode would).
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // Throws eyrie::Error for an id outside the vocabulary, leaving the state unchanged.
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of a character not complete yet
};

}  // namespace eyrie
