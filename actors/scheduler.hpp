// Continuous batching for one replica: which sequences run in the next step, and what their
// logits mean afterwards. A plain class; the scheduler actor only feeds it messages.
#pragma once

#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "actors/request.hpp"
#include "model/kv_cache.hpp"
#include "model/sampling/sampler.hpp"
#include "model/sampling/stop_matcher.hpp"
#include "model/step.hpp"
#include "model/tokenizer/detokenizer.hpp"

namespace eyrie {

struct SchedulerOptions {
  int32_t max_running = 64;         // sequences in one step (option.max_rolling_batch_size)
  int32_t max_queue = 256;          // waiting requests before submit refuses (HTTP 429)
  int32_t max_step_tokens = 512;    // prefill tokens per step; decodes come on top
  int64_t eos_token_id = 11;
  // The engine chooses tokens where the logits are (Engine::chooses_tokens()).
  bool device_sampling = false;
};

struct SchedulerStats {
  int32_t waiting = 0;
  int32_t running = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
  int64_t preemptions = 0;
};

class Scheduler {
 public:
  Scheduler(const Tokenizer& tokenizer, KvCacheSpec kv, SchedulerOptions options);
  ~Scheduler();

  // Queues a request; false when the queue is full. Throws InvalidArgument for a request
  // that could never fit the KV cache (prompt + max_new_tokens positions).
  bool submit(SeqRequest request);
  // Cancels a waiting or running request; its blocks are freed by the next plan().
  void cancel(uint64_t id);
  void cancel_all();

  bool idle() const { return waiting_.empty() && running_.empty(); }

  // Builds the next step. Also finishes cancelled requests (their DoneEvents go to events).
  // Returns false when there is nothing to run. The batch refers to memory owned here and
  // stays valid until complete().
  bool plan(StepBatch& batch, std::vector<GenerationEvent>& events);
  // Samples from the step's logits, advancing every sequence of the planned batch.
  void complete(const StepOutput& out, std::vector<GenerationEvent>& events);
  // The planned step failed: its sequences are finished as cancelled. Returns their ids.
  std::vector<uint64_t> abort_step(std::vector<GenerationEvent>& events);

  SchedulerStats stats() const;

 private:
  struct Sequence;
  using SeqPtr = std::unique_ptr<Sequence>;

  bool admit_blocks(Sequence& s, int64_t positions);
  void release(Sequence& s);
  void preempt(Sequence& s);
  DoneEvent finish(Sequence& s, StopReason reason);

  const Tokenizer& tokenizer_;
  KvCacheSpec kv_;
  SchedulerOptions opt_;
  BlockAllocator blocks_;
  std::deque<SeqPtr> waiting_;
  std::vector<SeqPtr> running_;  // in admission order: the newest is preempted first
  std::vector<Sequence*> planned_;
  std::vector<uint64_t> cancelled_;
  int64_t preemptions_ = 0;
};

}  // namespace eyrie
