// Byte-level BPE model: vocabulary, merge ranks, and the merge loop that turns one pre-tokenized
// piece into token ids.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace eyrie {

// Open-addressing map from a pair of token ids to the merge's rank and result; the merge loop
// looks pairs up far more often than anything else.
class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  void reserve(size_t count);
  void insert_or_assign(int32_t left, int32_t right, Merge merge);
  const Merge* find(int32_t left, int32_t right) const {
    const uint64_t key = make_key(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.merge;
      if (s.key == kEmpty) return nullptr;
    }
  }

 private:
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t make_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  size_t slot_of(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Working memory for encode_word, reused across the pieces of one encode call.
struct BpeScratch {
  std::vector<int32_t> ids;
  std::vector<MergeTable::Merge> pairs;  // merge of ids[i] and ids[i + 1]
};

class BpeModel {
 public:
  // `vocab` maps vocabulary strings (byte-level spelling) to ids; merges are in rank order.
  // `source` names the file for error messages.
  BpeModel(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges,
           const std::string& source);

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const Vocab& vocab() const { return vocab_; }

  // Appends the ids of one piece of raw bytes.
  void encode_word(std::string_view bytes, std::vector<int32_t>& out, BpeScratch& scratch) const;

 private:
  void merge_small(BpeScratch& scratch) const;
  void merge_large(std::vector<int32_t>& ids) const;

  Vocab vocab_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_ids_{};  // -1 where the byte's symbol is not in the vocabulary
};

}  // namespace eyrie
