// Added tokens (Falcon's >>QUESTION<<, <|endoftext|>, ...), found in the raw text before
// pre-tokenization.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eyrie {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
};

class AddedTokenMatcher {
 public:
  struct Match {
    size_t pos;
    size_t length;
    int32_t id;
  };

  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // The first added token in text[from...]: leftmost, and the longest of those starting there,
  // as the Aho-Corasick LeftmostLongest search of tokenizers picks.
  std::optional<Match> find(std::string_view text, size_t from) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;  // longest first, so the first hit at a position is the longest
  std::array<bool, 256> first_byte_{};
};

}  // namespace eyrie
