// The shards of one replica stepped together by a single caller: benchmarks and tools that
// drive an engine directly. (Serving gives each shard its own worker actor instead.)
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "model/parallel/communicator.hpp"
#include "model/step.hpp"

namespace eyrie {

// The KV geometry a replica can hand out: its smallest shard's, since every shard must hold
// every block.
KvCacheSpec smallest_kv_spec(const std::vector<std::shared_ptr<Engine>>& shards);

class ShardGroup final : public Engine {
 public:
  // shards[r] computes rank r of comms; rank 0 runs on the calling thread, each other rank on
  // a thread of its own that lives as long as the group.
  ShardGroup(std::vector<std::shared_ptr<Engine>> shards, std::vector<std::shared_ptr<Communicator>> comms);
  ~ShardGroup() override;

  const FalconConfig& config() const override { return shards_[0]->config(); }
  // The smallest shard's cache: every shard must hold every block the scheduler hands out.
  const KvCacheSpec& kv_spec() const override { return spec_; }
  // Rank 0's output is the step's; the first failure of any rank is rethrown.
  void step(const StepBatch& batch, StepOutput& out) override;
  // Rank 0 holds the whole logits rows.
  bool chooses_tokens() const override { return shards_[0]->chooses_tokens(); }
  // Every shard pads alike (same engine kind and options).
  std::vector<int32_t> decode_batch_sizes() const override { return shards_[0]->decode_batch_sizes(); }

 private:
  void serve(std::size_t rank);

  std::vector<std::shared_ptr<Engine>> shards_;
  std::vector<std::shared_ptr<Communicator>> comms_;
  KvCacheSpec spec_;
  std::vector<std::thread> threads_;
  std::vector<StepOutput> scratch_;
  std::vector<std::exception_ptr> errors_;
  std::mutex mu_;
  std::condition_variable cv_;
  const StepBatch* batch_ = nullptr;
  uint64_t generation_ = 0;
  std::size_t pending_ = 0;
  bool stopping_ = false;
};

}  // namespace eyrie
