// Storage of per-step logits.
#include "model/step.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "model/error.hpp"

namespace eyrie {

void StepOutput::reset(std::size_t num_seqs, int64_t vocab) {
  vocab_ = vocab;
  // logits_ keeps its size across steps: re-filling tens of MB with zeros every step would cost
  // more than the step's own host work.
  lse_.clear();
  argmax_.clear();
  max_.clear();
  first_.clear();
  count_.clear();
  first_.reserve(num_seqs);
  count_.reserve(num_seqs);
  choice_.assign(num_seqs, Choice{});
}

void StepOutput::set_choice(std::size_t seq, int32_t id, float logprob) {
  if (choice_.size() <= seq) choice_.resize(seq + 1);
  choice_[seq] = {id, logprob};
}

float* StepOutput::add_rows(std::size_t n) {
  std::size_t first = first_.empty() ? 0 : first_.back() + count_.back();
  first_.push_back(first);
  count_.push_back(n);
  const std::size_t need = (first + n) * static_cast<std::size_t>(vocab_);
  if (logits_.size() < need) logits_.resize(need);
  lse_.resize(first + n);
  argmax_.resize(first + n);
  max_.resize(first + n);
  return logits_.data() + first * static_cast<std::size_t>(vocab_);
}

std::span<const float> StepOutput::row(std::size_t seq, std::size_t i) const {
  return {logits_.data() + (first_[seq] + i) * static_cast<std::size_t>(vocab_),
          static_cast<std::size_t>(vocab_)};
}

}  // namespace eyrie

namespace eyrie {

void validate_step(const StepBatch& batch, const FalconConfig& c, const KvCacheSpec& kv) {
  std::set<uint64_t> ids;
  for (const SequenceStep& s : batch.seqs) {
    const std::string where = "step: sequence " + std::to_string(s.seq_id);
    if (!ids.insert(s.seq_id).second) throw InvalidArgument(where + " appears twice in one batch");
    if (s.tokens.empty()) throw InvalidArgument(where + " has no tokens");
    if (s.start_pos < 0) throw InvalidArgument(where + " has a negative start position");
    const int64_t end = static_cast<int64_t>(s.start_pos) + static_cast<int64_t>(s.tokens.size());
    if (static_cast<int64_t>(s.block_table.size()) * kv.block_size < end)
      throw InvalidArgument(where + ": " + std::to_string(s.block_table.size()) +
                            " KV blocks cannot hold " + std::to_string(end) + " positions");
    for (int32_t b : s.block_table)
      if (b < 0 || b >= kv.num_blocks)
        throw InvalidArgument(where + ": KV block " + std::to_string(b) + " is out of range");
    for (int32_t t : s.tokens)
      if (t < 0 || t >= c.vocab_size)
        throw InvalidArgument(where + ": token id " + std::to_string(t) + " is outside the vocabulary");
    if (const DeviceSampling* d = s.choose) {
      if (!(d->temperature > 0.f) || !std::isfinite(d->temperature))
        throw InvalidArgument(where + ": sampling temperature must be a finite number > 0");
      if (!(d->top_p > 0.f))
        throw InvalidArgument(where + ": top_p must be > 0");
      if (!(d->repetition_penalty > 0.f) || !std::isfinite(d->repetition_penalty))
        throw InvalidArgument(where + ": repetition penalty must be a finite number > 0");
      if (!(d->uniform >= 0.0 && d->uniform < 1.0))
        throw InvalidArgument(where + ": the sampling draw must lie in [0, 1)");
    }
  }
}

void warm_up(Engine& engine, int32_t max_batch, int64_t max_step_rows) {
  const std::vector<int32_t> sizes = engine.decode_batch_sizes();
  if (sizes.empty()) return;
  const KvCacheSpec& kv = engine.kv_spec();
  std::vector<int32_t> tokens, table;
  StepOutput out;
  for (int32_t size : sizes) {
    if (size > kv.num_blocks) break;
    tokens.assign(size, 0);
    table.resize(size);
    StepBatch batch;
    for (int32_t i = 0; i < size; ++i) {
      table[i] = i;
      batch.seqs.push_back({static_cast<uint64_t>(i), 0, std::span<const int32_t>(&tokens[i], 1),
                            std::span<const int32_t>(&table[i], 1), false, false});
    }
    for (int pass = 0; pass < 2; ++pass) engine.step(batch, out);
    if (size >= max_batch) break;
  }
  const int64_t room = std::min<int64_t>(max_step_rows, static_cast<int64_t>(kv.num_blocks) * kv.block_size);
  for (int64_t rows = 16; rows > 0; rows = rows == room ? 0 : std::min(room, rows * 4)) {
    if (rows > room) break;
    tokens.assign(rows, 0);
    table.resize(kv.blocks_for(rows));
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>(i);
    StepBatch batch;
    batch.seqs.push_back({0, 0, tokens, table, false, false});
    engine.step(batch, out);
  }
}

}  // namespace eyrie
