// Pre-tokenization with the exact split rules of Hugging Face tokenizers for Falcon.
#include "model/tokenizer/pretokenizer.hpp"

#include "model/tokenizer/unicode.hpp"

namespace eyrie {
namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kOther;
using unicode::kPunct;
using unicode::kRegexMask;
using unicode::kSpace;

// Digits runs after ByteLevel, so Rust's char::is_numeric() sees the byte-level code points: the
// ASCII digits, and U+00B2 U+00B3 U+00B9 U+00BC..U+00BE, which stand for those bytes. The latter
// are UTF-8 continuation bytes, so Digits also cuts inside characters such as '½' or some CJK.
constexpr bool is_numeric_byte(unsigned char b) {
  return (b >= '0' && b <= '9') || b == 0xB2 || b == 0xB3 || b == 0xB9 || (b >= 0xBC && b <= 0xBE);
}

constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (text.empty()) return;
  std::vector<CodePoint> cps;
  cps.reserve(text.size() + 1);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t cp = unicode::next_code_point(text, pos);
    cps.push_back({static_cast<uint32_t>(start), unicode::char_class(cp),
                   cp < 0x80 ? static_cast<char>(cp) : '\0'});
  }
  cps.push_back({static_cast<uint32_t>(text.size()), kOther, '\0'});  // sentinel for offsets
  const size_t n = cps.size() - 1;
  if (!options_.punctuation) {
    split_regex(text, cps, 0, n, pieces);
    return;
  }
  // Punctuation (Contiguous): each run of punctuation is a piece, and so is each run between.
  size_t i = 0;
  while (i < n) {
    const bool punct = (cps[i].cls & kPunct) != 0;
    size_t j = i + 1;
    while (j < n && ((cps[j].cls & kPunct) != 0) == punct) ++j;
    split_regex(text, cps, i, j, pieces);
    i = j;
  }
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ applied to the code
// points [begin, end) on their own, as Oniguruma's leftmost-first alternation does. Every code
// point starts a match of some alternative, so matches tile the piece.
void PreTokenizer::split_regex(std::string_view text, const std::vector<CodePoint>& cps,
                               size_t begin, size_t end,
                               std::vector<std::string_view>& pieces) const {
  auto cls = [&](size_t k) { return static_cast<uint8_t>(cps[k].cls & kRegexMask); };
  auto ascii = [&](size_t k) { return k < end ? cps[k].ascii : '\0'; };
  auto emit = [&](size_t from, size_t to) {
    split_digits(text.substr(cps[from].offset, cps[to].offset - cps[from].offset), pieces);
  };
  size_t i = begin;
  while (i < end) {
    // The contractions, case-sensitive as the regex is.
    if (ascii(i) == '\'') {
      const char a = ascii(i + 1), b = ascii(i + 2);
      size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        len = 2;
      } else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        len = 3;
      }
      if (len > 0) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    // An optional leading ' ' joins the run of letters, numbers or other symbols after it.
    const size_t body = (ascii(i) == ' ' && i + 1 < end && cls(i + 1) != kSpace) ? i + 1 : i;
    const uint8_t c = cls(body);
    size_t j = body + 1;
    if (c != kSpace) {
      while (j < end && cls(j) == c) ++j;
      emit(i, j);
      i = j;
      continue;
    }
    // Whitespace: \s+(?!\S) leaves the last space for the word that follows, unless the run is a
    // single character (then \s+ takes it) or reaches the end of the piece.
    while (j < end && cls(j) == kSpace) ++j;
    if (j < end && j - i >= 2) --j;
    emit(i, j);
    i = j;
  }
}

void PreTokenizer::split_digits(std::string_view piece,
                                std::vector<std::string_view>& pieces) const {
  if (!options_.digits) {
    split_triples(piece, pieces);
    return;
  }
  size_t i = 0;
  while (i < piece.size()) {
    const bool numeric = is_numeric_byte(static_cast<unsigned char>(piece[i]));
    size_t j = i + 1;
    while (j < piece.size() && is_numeric_byte(static_cast<unsigned char>(piece[j])) == numeric)
      ++j;
    if (numeric) {
      split_triples(piece.substr(i, j - i), pieces);
    } else {
      pieces.push_back(piece.substr(i, j - i));  // holds no ASCII digit
    }
    i = j;
  }
}

// Split on [0-9][0-9][0-9] with behavior Isolated: each match is a piece, as is the text between.
void PreTokenizer::split_triples(std::string_view piece,
                                 std::vector<std::string_view>& pieces) const {
  if (!options_.split_digit_triples || piece.size() < 3) {
    pieces.push_back(piece);
    return;
  }
  size_t last = 0, i = 0;
  while (i + 3 <= piece.size()) {
    if (is_digit(piece[i]) && is_digit(piece[i + 1]) && is_digit(piece[i + 2])) {
      if (i > last) pieces.push_back(piece.substr(last, i - last));
      pieces.push_back(piece.substr(i, 3));
      i += 3;
      last = i;
    } else {
      ++i;
    }
  }
  if (last < piece.size()) pieces.push_back(piece.substr(last));
}

}  // namespace eyrie
