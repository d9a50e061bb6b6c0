// GPT-2's reversible map between bytes and printable code points, which byte-level BPE vocabularies
// are written in (space is 'Ġ', newline 'Ċ').
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eyrie::byte_level {

char32_t byte_to_char(uint8_t byte);

// The vocabulary spelling of raw bytes.
std::string encode(std::string_view bytes);

// The raw bytes a vocabulary string stands for; nullopt when it holds a code point outside the
// map, where Hugging Face's ByteLevel decoder keeps the token's own UTF-8 instead.
std::optional<std::string> decode(std::string_view token);

}  // namespace eyrie::byte_level
