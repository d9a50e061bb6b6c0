// The batched step interface that every engine implements and the scheduler drives.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/falcon_config.hpp"
#include "model/kv_cache.hpp"

namespace eyrie {

// The choice of a sequence's next token, made by an engine where its logits are
// (Engine::chooses_tokens()) with eyrie::Sampler's semantics: repetition penalty over `history`,
// then, when sampling, temperature, top-k and top-p, and a draw in vocabulary order at
// `uniform` of the remaining mass.
struct DeviceSampling {
  bool sample = false;  // false: the argmax after the penalty
  float temperature = 1.f;
  int32_t top_k = 0;  // <= 0: off
  float top_p = 1.f;  // >= 1: off
  float repetition_penalty = 1.f;
  double uniform = 0.0;  // in [0, 1), drawn by the sequence's sampler
  std::span<const int32_t> history;
};

// One sequence's share of a step: prefill passes many tokens, decode passes one.
struct SequenceStep {
  uint64_t seq_id = 0;
  // Tokens of this sequence already in its KV blocks; the new tokens take positions
  // start_pos .. start_pos + tokens.size() - 1.
  int32_t start_pos = 0;
  std::span<const int32_t> tokens;
  // The sequence's KV blocks in position order; must cover start_pos + tokens.size() positions.
  std::span<const int32_t> block_table;
  // Logits for every new token (prompt logprobs), not only for the last one.
  bool all_logits = false;
  // Whether the caller reads this sequence's logits rows. Greedy decoding needs only the row's
  // argmax, max and logsumexp, so an engine on another device may leave the rows there.
  bool logits_to_host = true;
  // When set and the engine chooses tokens, its last row's token is chosen there and reported
  // by StepOutput::has_choice(); other engines ignore it.
  const DeviceSampling* choose = nullptr;
};

struct StepBatch {
  std::vector<SequenceStep> seqs;
};

// Logits rows of a step, [rows x vocab] in fp32, grouped by sequence in batch order.
class StepOutput {
 public:
  void reset(std::size_t num_seqs, int64_t vocab);
  // Appends rows for the next sequence and returns a pointer to their storage.
  float* add_rows(std::size_t n);

  std::size_t num_rows(std::size_t seq) const { return count_[seq]; }
  std::span<const float> row(std::size_t seq, std::size_t i) const;
  std::span<const float> last(std::size_t seq) const { return row(seq, count_[seq] - 1); }
  int64_t vocab() const { return vocab_; }
  // log(sum(exp(row))): row[id] - logsumexp is the token's logprob. Engines fill it in, once
  // per row, in parallel, so samplers need not pass over the vocabulary again.
  float logsumexp(std::size_t seq, std::size_t i) const { return lse_[first_[seq] + i]; }
  float last_logsumexp(std::size_t seq) const { return logsumexp(seq, count_[seq] - 1); }
  // The greedy choice of the sequence's last row (lowest index among equal maxima).
  int32_t last_argmax(std::size_t seq) const { return argmax_[first_[seq] + count_[seq] - 1]; }
  float last_max(std::size_t seq) const { return max_[first_[seq] + count_[seq] - 1]; }
  std::size_t first_row(std::size_t seq) const { return first_[seq]; }
  // The token an engine chose for the sequence (SequenceStep::choose), and its logprob under
  // the unprocessed row.
  bool has_choice(std::size_t seq) const { return seq < choice_.size() && choice_[seq].id >= 0; }
  int32_t choice_id(std::size_t seq) const { return choice_[seq].id; }
  float choice_logprob(std::size_t seq) const { return choice_[seq].logprob; }
  void set_choice(std::size_t seq, int32_t id, float logprob);
  float* all_logits() { return logits_.data(); }
  float* all_logsumexp() { return lse_.data(); }
  int32_t* all_argmax() { return argmax_.data(); }
  float* all_max() { return max_.data(); }

 private:
  std::vector<float> logits_;
  std::vector<float> lse_;
  std::vector<int32_t> argmax_;
  std::vector<float> max_;
  std::vector<std::size_t> first_, count_;
  struct Choice {
    int32_t id = -1;
    float logprob = 0.f;
  };
  std::vector<Choice> choice_;
  int64_t vocab_ = 0;
};

// Checks a batch against the model and the KV cache geometry; throws InvalidArgument naming the
// sequence and what is wrong. Every engine calls it first.
void validate_step(const StepBatch& batch, const FalconConfig& config, const KvCacheSpec& kv);

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const FalconConfig& config() const = 0;
  virtual const KvCacheSpec& kv_spec() const = 0;
  // Runs one forward step over every sequence of the batch, writing their new keys and values
  // into their KV blocks. Throws eyrie::InvalidArgument for a malformed batch.
  virtual void step(const StepBatch& batch, StepOutput& out) = 0;
  // Whether step() makes the token choices asked for by SequenceStep::choose.
  virtual bool chooses_tokens() const { return false; }
  // Batch sizes, smallest first, that decode steps are padded up to and prepared for ahead of
  // time (CUDA graphs); none for an engine that runs every size as it comes.
  virtual std::vector<int32_t> decode_batch_sizes() const { return {}; }
};

// For an engine that prepares decode steps ahead (decode_batch_sizes() not empty), runs what a
// server's first minutes would otherwise pay for on first sight of a shape: two decode steps
// at each of those sizes up to the first that holds max_batch sequences (one token at
// position 0 in KV block i for sequence i), then one prompt step of 16, 64, 256, ... rows and
// of max_step_rows (the kernels a GPU loads on first launch, the products' algorithm choices).
// Only for an engine whose cache holds nothing yet: it writes blocks from 0, within the cache.
void warm_up(Engine& engine, int32_t max_batch, int64_t max_step_rows);

}  // namespace eyrie
