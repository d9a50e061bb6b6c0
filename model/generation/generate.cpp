// The single-request generation loop over the batched step interface.
#include "model/generation/generate.hpp"

#include <random>

#include "model/error.hpp"
#include "model/sampling/logits_processors.hpp"
#include "model/sampling/sampler.hpp"
#include "model/sampling/stop_matcher.hpp"
#include "model/tokenizer/detokenizer.hpp"

namespace eyrie {
namespace {

// Returns a sequence's KV blocks to the allocator however the request ends.
class SequenceBlocks {
 public:
  explicit SequenceBlocks(BlockAllocator& a) : alloc_(a) {}
  ~SequenceBlocks() { alloc_.release(blocks_); }
  void ensure(int64_t positions, const KvCacheSpec& spec) {
    int32_t need = spec.blocks_for(positions) - static_cast<int32_t>(blocks_.size());
    if (need > 0 && !alloc_.allocate(need, blocks_))
      throw Error("KV cache is full: " + std::to_string(positions) + " positions do not fit in " +
                  std::to_string(alloc_.total_blocks()) + " blocks of " +
                  std::to_string(spec.block_size));
  }
  const std::vector<int32_t>& table() const { return blocks_; }

 private:
  BlockAllocator& alloc_;
  std::vector<int32_t> blocks_;
};

}  // namespace

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::length: return "length";
    case FinishReason::eos_token: return "eos_token";
    case FinishReason::stop_sequence: return "stop_sequence";
  }
  return "length";
}

Generator::Generator(Engine& engine, const Tokenizer& tokenizer)
    : engine_(engine), tokenizer_(tokenizer), blocks_(engine.kv_spec().num_blocks) {}

GenerationResult Generator::run(const GenerateRequest& req, const TokenCallback& on_token) {
  const SamplingParams& p = req.params;
  p.validate();
  const FalconConfig& cfg = engine_.config();
  std::vector<int32_t> ids = tokenizer_.encode(req.prompt);
  if (ids.empty()) throw InvalidArgument("`inputs` must not be empty");
  const int64_t context = cfg.max_position_embeddings;
  if (static_cast<int64_t>(ids.size()) + p.max_new_tokens > context)
    throw InvalidArgument("the prompt has " + std::to_string(ids.size()) +
                          " tokens and `max_new_tokens` is " + std::to_string(p.max_new_tokens) +
                          ": together they exceed the model's context of " +
                          std::to_string(context) + " tokens");

  GenerationResult res;
  uint64_t seed = 0;
  if (p.sampling()) {
    seed = p.seed ? *p.seed : std::random_device{}() * 0x9e3779b97f4a7c15ull + std::random_device{}();
    res.seed = seed;
  }
  Sampler sampler(p, seed);
  StopMatcher stops(p.stop);
  IncrementalDetokenizer detok(tokenizer_, /*skip_special=*/true);
  SequenceBlocks blocks(blocks_);
  const KvCacheSpec& spec = engine_.kv_spec();

  StepOutput out;
  StepBatch batch;
  batch.seqs.resize(1);
  SequenceStep& s = batch.seqs[0];
  s.seq_id = 1;
  s.start_pos = 0;
  s.tokens = ids;
  s.all_logits = req.prefill_details;
  blocks.ensure(static_cast<int64_t>(ids.size()), spec);
  s.block_table = blocks.table();
  engine_.step(batch, out);

  if (req.prefill_details) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      TokenDetail d{ids[i], tokenizer_.decode(std::span<const int32_t>(&ids[i], 1)), std::nullopt,
                    tokenizer_.is_special(ids[i])};
      if (i > 0) d.logprob = static_cast<float>(log_softmax_at(out.row(0, i - 1), ids[i]));
      res.prefill.push_back(std::move(d));
    }
  }

  std::vector<int32_t> history = ids;
  int32_t next[1];
  for (int64_t n = 0;; ++n) {
    TokenChoice c = sampler.choose(out.last(0), history);
    history.push_back(c.id);
    TokenDetail d{c.id, detok.push(c.id), c.logprob, tokenizer_.is_special(c.id)};
    std::string piece = d.text;
    if (d.special) d.text = tokenizer_.decode(std::span<const int32_t>(&c.id, 1));
    res.generated_text += piece;
    std::optional<std::string> stopped = stops.push(piece);
    const bool eos = c.id == cfg.eos_token_id;
    const bool last = eos || stopped || n + 1 >= p.max_new_tokens;
    if (last) {
      std::string rest = detok.flush();
      res.generated_text += rest;
      piece += rest;
      if (!d.special) d.text += rest;
    }
    if (on_token) on_token(d, piece);
    res.tokens.push_back(std::move(d));
    if (last) {
      res.finish_reason = eos ? FinishReason::eos_token
                          : stopped ? FinishReason::stop_sequence
                                    : FinishReason::length;
      break;
    }
    next[0] = c.id;
    s.start_pos = static_cast<int32_t>(history.size()) - 1;
    s.tokens = std::span<const int32_t>(next, 1);
    s.all_logits = false;
    blocks.ensure(static_cast<int64_t>(history.size()), spec);
    s.block_table = blocks.table();
    engine_.step(batch, out);
  }
  return res;
}

}  // namespace eyrie
