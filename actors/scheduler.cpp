// Iteration-level scheduling: decodes first, then prefill chunks under the token budget, new
// requests admitted only when the KV cache holds their whole prompt; the newest sequence is
// preempted (and later recomputed) when a decode finds no free block.
#include "actors/scheduler.hpp"

#include <algorithm>
#include <random>

#include "model/error.hpp"
#include "model/sampling/logits_processors.hpp"

namespace eyrie {

std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::length: return "length";
    case StopReason::eos_token: return "eos_token";
    case StopReason::stop_sequence: return "stop_sequence";
    case StopReason::cancelled: return "cancelled";
  }
  return "length";
}

namespace {

uint64_t draw_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

struct Scheduler::Sequence {
  Sequence(SeqRequest r, const Tokenizer& tok)
      : req(std::move(r)),
        tokens(req.prompt),
        prompt_len(static_cast<int32_t>(req.prompt.size())),
        seed(req.params.sampling() ? (req.params.seed ? *req.params.seed : draw_seed()) : 0),
        sampler(req.params, seed),
        stops(req.params.stop),
        detok(tok, /*skip_special=*/true) {}

  SeqRequest req;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t prompt_len;
  int32_t computed = 0;         // tokens whose keys and values are in the cache
  int32_t chunk = 0;            // tokens fed in the planned step
  bool all_logits = false;
  DeviceSampling device;        // the planned step's token choice, when the engine makes it
  std::vector<int32_t> blocks;
  uint64_t seed;
  Sampler sampler;
  StopMatcher stops;
  IncrementalDetokenizer detok;
  std::string text;
  std::vector<TokenDetail> prefill;
  std::vector<TokenDetail> generated;
  std::vector<std::optional<float>> prompt_logprobs;
  bool admitted = false;
  Clock::time_point scheduled_at, first_token_at, last_token_at;

  int32_t remaining() const { return static_cast<int32_t>(tokens.size()) - computed; }
};

Scheduler::Scheduler(const Tokenizer& tokenizer, KvCacheSpec kv, SchedulerOptions options)
    : tokenizer_(tokenizer), kv_(kv), opt_(options), blocks_(kv.num_blocks) {}

Scheduler::~Scheduler() = default;

bool Scheduler::submit(SeqRequest request) {
  if (request.prompt.empty()) throw InvalidArgument("`inputs` must not be empty");
  const int64_t positions = static_cast<int64_t>(request.prompt.size()) + request.params.max_new_tokens;
  if (kv_.blocks_for(positions) > blocks_.total_blocks())
    throw InvalidArgument("the prompt (" + std::to_string(request.prompt.size()) +
                          " tokens) plus `max_new_tokens` (" +
                          std::to_string(request.params.max_new_tokens) +
                          ") do not fit in the KV cache (" +
                          std::to_string(int64_t{blocks_.total_blocks()} * kv_.block_size) + " tokens)");
  if (static_cast<int32_t>(waiting_.size()) >= opt_.max_queue) return false;
  auto s = std::make_unique<Sequence>(std::move(request), tokenizer_);
  if (s->req.prefill_details) s->prompt_logprobs.assign(s->prompt_len, std::nullopt);
  waiting_.push_back(std::move(s));
  return true;
}

void Scheduler::cancel(uint64_t id) { cancelled_.push_back(id); }

void Scheduler::cancel_all() {
  for (const auto& s : waiting_) cancelled_.push_back(s->req.id);
  for (const auto& s : running_) cancelled_.push_back(s->req.id);
}

bool Scheduler::admit_blocks(Sequence& s, int64_t positions) {
  const int32_t need = kv_.blocks_for(positions) - static_cast<int32_t>(s.blocks.size());
  return need <= 0 || blocks_.allocate(need, s.blocks);
}

void Scheduler::release(Sequence& s) {
  blocks_.release(s.blocks);
  s.blocks.clear();
}

void Scheduler::preempt(Sequence& s) {
  release(s);
  s.computed = 0;
  s.chunk = 0;
  ++preemptions_;
  auto it = std::find_if(running_.begin(), running_.end(), [&](const SeqPtr& p) { return p.get() == &s; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

DoneEvent Scheduler::finish(Sequence& s, StopReason reason) {
  release(s);
  DoneEvent d;
  d.request = s.req.id;
  d.reason = reason;
  s.text += s.detok.flush();
  d.generated_text = std::move(s.text);
  d.prompt_tokens = s.prompt_len;
  d.completion_tokens = static_cast<int64_t>(s.generated.size());
  if (s.req.params.sampling()) d.seed = s.seed;
  d.prefill = std::move(s.prefill);
  d.tokens = std::move(s.generated);
  if (s.admitted) d.timing.queue_ms = ms_between(s.req.arrival, s.scheduled_at);
  if (!d.tokens.empty()) {
    d.timing.ttft_ms = ms_between(s.req.arrival, s.first_token_at);
    if (d.tokens.size() > 1)
      d.timing.tpot_ms = ms_between(s.first_token_at, s.last_token_at) / static_cast<double>(d.tokens.size() - 1);
  }
  return d;
}

bool Scheduler::plan(StepBatch& batch, std::vector<GenerationEvent>& events) {
  batch.seqs.clear();
  planned_.clear();
  for (uint64_t id : cancelled_) {
    auto match = [&](const SeqPtr& p) { return p->req.id == id; };
    if (auto it = std::find_if(waiting_.begin(), waiting_.end(), match); it != waiting_.end()) {
      events.emplace_back(finish(**it, StopReason::cancelled));
      waiting_.erase(it);
    } else if (auto r = std::find_if(running_.begin(), running_.end(), match); r != running_.end()) {
      events.emplace_back(finish(**r, StopReason::cancelled));
      running_.erase(r);
    }
  }
  cancelled_.clear();

  // Every decoding sequence advances each step; a long prompt cannot stall them.
  for (std::size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = *running_[i];
    if (s.remaining() != 1) continue;
    bool preempted_self = false;
    while (!admit_blocks(s, s.computed + 1)) {
      Sequence& victim = *running_.back();
      if (&victim == &s) {
        preempt(s);
        preempted_self = true;
        break;
      }
      preempt(victim);
    }
    if (preempted_self) break;  // s was the last running sequence
    s.chunk = 1;
  }
  int32_t budget = opt_.max_step_tokens;
  for (auto& p : running_) {
    Sequence& s = *p;
    if (s.remaining() <= 1 || budget <= 0) continue;
    s.chunk = std::min(s.remaining(), budget);
    budget -= s.chunk;
  }
  // Admission: first come, first served, and only when the whole prompt and its first decode
  // fit in the free blocks, so an admitted prefill never waits for memory midway.
  while (budget > 0 && !waiting_.empty() && static_cast<int32_t>(running_.size()) < opt_.max_running) {
    Sequence& s = *waiting_.front();
    if (kv_.blocks_for(static_cast<int64_t>(s.tokens.size()) + 1) > blocks_.free_blocks()) break;
    admit_blocks(s, static_cast<int64_t>(s.tokens.size()) + 1);
    if (!s.admitted) {
      s.admitted = true;
      s.scheduled_at = Clock::now();
    }
    s.chunk = std::min(s.remaining(), budget);
    budget -= s.chunk;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }

  for (auto& p : running_) {
    Sequence& s = *p;
    if (s.chunk == 0) continue;
    s.all_logits = s.req.prefill_details && s.computed + 1 < s.prompt_len;
    // A step that reaches the end of the sequence's tokens chooses its next one: on the device
    // when the engine can, so the row never crosses to the host.
    const bool chooses = s.chunk == s.remaining();
    const bool on_device = chooses && opt_.device_sampling && s.sampler.device_choice(s.device, s.tokens);
    batch.seqs.push_back({s.req.id, s.computed,
                          std::span<const int32_t>(s.tokens.data() + s.computed, s.chunk),
                          s.blocks, s.all_logits, s.all_logits || (!on_device && s.sampler.needs_logits()),
                          on_device ? &s.device : nullptr});
    planned_.push_back(&s);
  }
  return !batch.seqs.empty();
}

void Scheduler::complete(const StepOutput& out, std::vector<GenerationEvent>& events) {
  std::vector<Sequence*> finished;
  for (std::size_t j = 0; j < planned_.size(); ++j) {
    Sequence& s = *planned_[j];
    if (s.all_logits) {
      for (int32_t r = 0; r < s.chunk; ++r) {
        const int32_t next = s.computed + r + 1;
        if (next < s.prompt_len)
          s.prompt_logprobs[next] = out.row(j, r)[s.tokens[next]] - out.logsumexp(j, r);
      }
    }
    s.computed += s.chunk;
    s.chunk = 0;
    if (s.remaining() != 0) continue;  // a prefill chunk that did not reach the end yet

    const Clock::time_point now = Clock::now();
    if (s.generated.empty()) {
      s.first_token_at = now;
      if (s.req.prefill_details)
        for (int32_t i = 0; i < s.prompt_len; ++i) {
          const int32_t id = s.tokens[i];
          s.prefill.push_back({id, tokenizer_.decode(std::span<const int32_t>(&id, 1)),
                               s.prompt_logprobs[i], tokenizer_.is_special(id)});
        }
    }
    s.last_token_at = now;
    const TokenChoice c =
        out.has_choice(j)
            ? TokenChoice{out.choice_id(j), out.choice_logprob(j)}
            : s.sampler.choose(out.last(j), s.tokens,
                               Sampler::RowInfo{out.last_logsumexp(j), out.last_argmax(j), out.last_max(j)});
    s.tokens.push_back(c.id);
    TokenEvent ev;
    ev.request = s.req.id;
    ev.index = static_cast<int32_t>(s.generated.size());
    ev.token = {c.id, "", c.logprob, tokenizer_.is_special(c.id)};
    ev.text = s.detok.push(c.id);
    std::optional<std::string> stopped = s.stops.push(ev.text);
    const bool eos = c.id == opt_.eos_token_id;
    const bool length = static_cast<int64_t>(s.generated.size()) + 1 >= s.req.params.max_new_tokens;
    ev.last = eos || stopped || length;
    if (ev.last) ev.text += s.detok.flush();
    s.text += ev.text;
    ev.token.text = ev.token.special ? tokenizer_.decode(std::span<const int32_t>(&c.id, 1)) : ev.text;
    s.generated.push_back(ev.token);
    events.emplace_back(std::move(ev));
    if (eos || stopped || length) {
      events.emplace_back(finish(s, eos ? StopReason::eos_token
                                    : stopped ? StopReason::stop_sequence
                                              : StopReason::length));
      finished.push_back(&s);
    }
  }
  planned_.clear();
  for (Sequence* f : finished)
    running_.erase(std::find_if(running_.begin(), running_.end(), [&](const SeqPtr& p) { return p.get() == f; }));
}

std::vector<uint64_t> Scheduler::abort_step(std::vector<GenerationEvent>& events) {
  std::vector<uint64_t> ids;
  for (Sequence* s : planned_) {
    ids.push_back(s->req.id);
    s->chunk = 0;
    events.emplace_back(finish(*s, StopReason::cancelled));
    running_.erase(std::find_if(running_.begin(), running_.end(), [&](const SeqPtr& p) { return p.get() == s; }));
  }
  planned_.clear();
  return ids;
}

SchedulerStats Scheduler::stats() const {
  return {static_cast<int32_t>(waiting_.size()), static_cast<int32_t>(running_.size()),
          blocks_.total_blocks() - blocks_.free_blocks(), blocks_.total_blocks(), preemptions_};
}

}  // namespace eyrie
