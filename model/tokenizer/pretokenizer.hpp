// Falcon's pre-tokenizer: Hugging Face's Sequence of Punctuation, ByteLevel (GPT-2 regex), Digits
// and a Split on digit triples, producing the pieces that BPE encodes one by one.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace eyrie {

// Which of the optional stages around the ByteLevel regex split are on; ByteLevel itself (without
// prefix space, with the regex) is always there.
struct PreTokenizerOptions {
  bool punctuation = false;          // Punctuation, behavior Contiguous, before ByteLevel
  bool digits = false;               // Digits, individual_digits false, after ByteLevel
  bool split_digit_triples = false;  // Split on [0-9][0-9][0-9], Isolated, after Digits
};

class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerOptions options) : options_(options) {}

  // Appends the pieces of `text` (valid UTF-8) to `pieces`, as views into `text`, in order.
  // ByteLevel maps each byte to one code point, so every later split falls on a byte boundary
  // of the original text and the pieces can stay views of it.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct CodePoint {
    uint32_t offset;  // byte offset in the text
    uint8_t cls;      // unicode::CharClass
    char ascii;       // the character when ASCII, else 0
  };

  void split_regex(std::string_view text, const std::vector<CodePoint>& cps, size_t begin,
                   size_t end, std::vector<std::string_view>& pieces) const;
  void split_digits(std::string_view piece, std::vector<std::string_view>& pieces) const;
  void split_triples(std::string_view piece, std::vector<std::string_view>& pieces) const;

  PreTokenizerOptions options_;
};

}  // namespace eyrie
