// BPE merge loop matching Hugging Face tokenizers' Word::merge_all: always apply the lowest-ranked
// merge available, leftmost first.
#include "model/tokenizer/bpe.hpp"

#include <bit>
#include <climits>
#include <queue>

#include "model/error.hpp"
#include "model/tokenizer/byte_level.hpp"

namespace eyrie {
namespace {

constexpr MergeTable::Merge kNoMerge{INT32_MAX, -1};

// Above this many symbols the quadratic scan of merge_small loses to a heap.
constexpr size_t kSmallWord = 48;

}  // namespace

void MergeTable::reserve(size_t count) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, count * 2));
  slots_.assign(capacity, Slot{kEmpty, kNoMerge});
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
}

void MergeTable::insert_or_assign(int32_t left, int32_t right, Merge merge) {
  const uint64_t key = make_key(left, right);
  for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key || s.key == kEmpty) {
      s = Slot{key, merge};
      return;
    }
  }
}

BpeModel::BpeModel(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                   const std::string& source)
    : vocab_(std::move(vocab)) {
  merges_.reserve(merges.size());
  auto id_of = [&](const std::string& token, size_t rank, const char* role) {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) {
      throw Error(source + ": merge " + std::to_string(rank) + " " + role + " '" + token +
                  "', which is not in the vocabulary");
    }
    return it->second;
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const int32_t left_id = id_of(left, rank, "names token");
    const int32_t right_id = id_of(right, rank, "names token");
    const int32_t merged_id = id_of(left + right, rank, "makes token");
    // As in tokenizers, a later duplicate of a pair overrides the earlier one.
    merges_.insert_or_assign(left_id, right_id, {static_cast<int32_t>(rank), merged_id});
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(byte_level::encode(std::string(1, static_cast<char>(b))));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out,
                           BpeScratch& scratch) const {
  auto& ids = scratch.ids;
  ids.clear();
  for (const char c : bytes) {
    // Without an unknown token, tokenizers drops a symbol missing from the vocabulary.
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) ids.push_back(id);
  }
  if (ids.size() > kSmallWord) {
    merge_large(ids);
  } else if (ids.size() > 1) {
    merge_small(scratch);
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

void BpeModel::merge_small(BpeScratch& scratch) const {
  auto& ids = scratch.ids;
  auto& pairs = scratch.pairs;
  auto lookup = [&](size_t i) {
    const MergeTable::Merge* m = merges_.find(ids[i], ids[i + 1]);
    return m ? *m : kNoMerge;
  };
  pairs.resize(ids.size() - 1);
  for (size_t i = 0; i + 1 < ids.size(); ++i) pairs[i] = lookup(i);
  while (!pairs.empty()) {
    size_t best = 0;
    for (size_t i = 1; i < pairs.size(); ++i) {
      if (pairs[i].rank < pairs[best].rank) best = i;
    }
    if (pairs[best].id < 0) break;
    ids[best] = pairs[best].id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    pairs.erase(pairs.begin() + static_cast<std::ptrdiff_t>(best));
    if (best > 0) pairs[best - 1] = lookup(best - 1);
    if (best < pairs.size()) pairs[best] = lookup(best);
  }
}

// The same order of merges as merge_small, with a heap over a linked list as tokenizers does, so
// long pieces (whitespace runs, text without spaces) stay O(n log n).
void BpeModel::merge_large(std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const auto n = static_cast<int32_t>(ids.size());
  std::vector<Symbol> symbols(ids.size());
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  for (int32_t i = 0; i < n; ++i) symbols[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  auto push = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const MergeTable::Merge* m = merges_.find(symbols[pos].id, symbols[next].id)) {
      queue.push({m->rank, pos, m->id});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    // A stale entry: one side has merged since, so the pair now yields a different token.
    const MergeTable::Merge* m = merges_.find(left.id, symbols[left.next].id);
    if (m == nullptr || m->id != top.id) continue;
    Symbol& right = symbols[left.next];
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  ids.clear();
  for (int32_t i = 0; i >= 0 && i < n; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace eyrie
