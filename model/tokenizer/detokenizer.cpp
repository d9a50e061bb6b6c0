// Incremental detokenizer over token bytes and lossy UTF-8 decoding.
#include "model/tokenizer/detokenizer.hpp"

#include "model/tokenizer/unicode.hpp"

namespace eyrie {

std::string IncrementalDetokenizer::push(int32_t id) {
  const std::string& bytes = tokenizer_.token_bytes(id);
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += bytes;
  std::string text;
  // Lossy decoding never looks back past a finished sequence, so whatever precedes an incomplete
  // tail decodes now exactly as it will within the whole text.
  const size_t consumed = unicode::append_utf8_lossy(pending_, text, false);
  pending_.erase(0, consumed);
  return text;
}

std::string IncrementalDetokenizer::flush() {
  std::string text;
  unicode::append_utf8_lossy(pending_, text, true);
  pending_.clear();
  return text;
}

}  // namespace eyrie
