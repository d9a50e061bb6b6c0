// Tokenizer: added-token split, pre-tokenization and BPE for encode; byte-level decode.
#include "model/tokenizer/tokenizer.hpp"

#include <algorithm>

#include "model/error.hpp"
#include "model/tokenizer/byte_level.hpp"
#include "model/tokenizer/tokenizer_json.hpp"
#include "model/tokenizer/unicode.hpp"

namespace eyrie {

Tokenizer Tokenizer::from_file(const std::string& path) {
  TokenizerSpec spec = read_tokenizer_json(path);
  BpeModel bpe(std::move(spec.vocab), spec.merges, path);
  return Tokenizer(std::move(bpe), PreTokenizer(spec.pre_tokenizer),
                   AddedTokenMatcher(std::move(spec.added_tokens)));
}

Tokenizer::Tokenizer(BpeModel bpe, PreTokenizer pre, AddedTokenMatcher added)
    : bpe_(std::move(bpe)), pre_(pre), added_(std::move(added)) {
  int32_t size = 0;
  for (const auto& [token, id] : bpe_.vocab()) size = std::max(size, id + 1);
  for (const auto& t : added_.tokens()) size = std::max(size, t.id + 1);
  token_bytes_.resize(size);
  special_.assign(size, 0);
  known_.assign(size, 0);
  // The ByteLevel decoder gets each token's string; added tokens take precedence over the
  // vocabulary for their id, as in tokenizers' id_to_token.
  auto set = [&](int32_t id, const std::string& token) {
    token_bytes_[id] = byte_level::decode(token).value_or(token);
    known_[id] = 1;
  };
  for (const auto& [token, id] : bpe_.vocab()) set(id, token);
  for (const auto& t : added_.tokens()) {
    set(t.id, t.content);
    special_[t.id] = t.special;
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::string repaired;
  if (!unicode::is_valid_utf8(text)) {
    unicode::append_utf8_lossy(text, repaired, true);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  size_t pos = 0;
  while (true) {
    const auto match = added_.find(text, pos);
    const size_t end = match ? match->pos : text.size();
    encode_text(text.substr(pos, end - pos), ids);
    if (!match) break;
    ids.push_back(match->id);
    pos = match->pos + match->length;
  }
  return ids;
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string_view> pieces;
  pre_.split(text, pieces);
  BpeScratch scratch;
  for (const auto piece : pieces) bpe_.encode_word(piece, out, scratch);
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !known_[id]) {
    throw Error("token id " + std::to_string(id) + " is not in the vocabulary (size " +
                std::to_string(vocab_size()) + ")");
  }
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return token_bytes_[id];
}

bool Tokenizer::is_special(int32_t id) const {
  check_id(id);
  return special_[id] != 0;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& t : added_.tokens()) {
    if (t.content == token) return t.id;
  }
  return bpe_.token_to_id(token);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (const int32_t id : ids) {
    check_id(id);
    if (skip_special && special_[id]) continue;
    bytes += token_bytes_[id];
  }
  std::string text;
  text.reserve(bytes.size());
  unicode::append_utf8_lossy(bytes, text, true);
  return text;
}

}  // namespace eyrie
