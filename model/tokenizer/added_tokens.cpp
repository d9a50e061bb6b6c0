// Leftmost-longest search for added tokens.
#include "model/tokenizer/added_tokens.hpp"

#include <algorithm>

namespace eyrie {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) {
  for (auto& t : tokens) {
    if (!t.content.empty()) tokens_.push_back(std::move(t));  // tokenizers ignores empty ones
  }
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (const auto& t : tokens_) first_byte_[static_cast<uint8_t>(t.content[0])] = true;
}

std::optional<AddedTokenMatcher::Match> AddedTokenMatcher::find(std::string_view text,
                                                                size_t from) const {
  if (tokens_.empty()) return std::nullopt;
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) continue;
    const std::string_view rest = text.substr(pos);
    for (const auto& t : tokens_) {
      if (rest.starts_with(t.content)) return Match{pos, t.content.size(), t.id};
    }
  }
  return std::nullopt;
}

}  // namespace eyrie
