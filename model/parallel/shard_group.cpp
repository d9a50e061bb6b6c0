#include "model/parallel/shard_group.hpp"

#include <algorithm>

#include "model/error.hpp"
#include "model/parallel/shard_step.hpp"

namespace eyrie {

KvCacheSpec smallest_kv_spec(const std::vector<std::shared_ptr<Engine>>& shards) {
  KvCacheSpec spec = shards.at(0)->kv_spec();
  for (const auto& s : shards) spec.num_blocks = std::min(spec.num_blocks, s->kv_spec().num_blocks);
  return spec;
}

ShardGroup::ShardGroup(std::vector<std::shared_ptr<Engine>> shards, std::vector<std::shared_ptr<Communicator>> comms)
    : shards_(std::move(shards)), comms_(std::move(comms)) {
  if (shards_.empty()) throw InvalidArgument("a shard group needs at least one shard");
  comms_.resize(shards_.size());
  spec_ = smallest_kv_spec(shards_);
  scratch_.resize(shards_.size());
  errors_.resize(shards_.size());
  for (std::size_t r = 1; r < shards_.size(); ++r) threads_.emplace_back([this, r] { serve(r); });
}

ShardGroup::~ShardGroup() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ShardGroup::serve(std::size_t rank) {
  uint64_t seen = 0;
  for (;;) {
    const StepBatch* batch = nullptr;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      batch = batch_;
    }
    errors_[rank] = run_shard_step(*shards_[rank], comms_[rank].get(), *batch, scratch_[rank]);
    {
      std::lock_guard lock(mu_);
      --pending_;
    }
    cv_.notify_all();
  }
}

void ShardGroup::step(const StepBatch& batch, StepOutput& out) {
  // Every rank would refuse a bad batch alike; refusing it here keeps it from reaching them.
  validate_step(batch, config(), spec_);
  {
    std::lock_guard lock(mu_);
    batch_ = &batch;
    pending_ = threads_.size();
    ++generation_;
  }
  cv_.notify_all();
  errors_[0] = run_shard_step(*shards_[0], comms_[0].get(), batch, out);
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return pending_ == 0; });
  }
  std::exception_ptr first;
  for (auto& e : errors_)
    if (e && !first) first = e;
  std::fill(errors_.begin(), errors_.end(), nullptr);
  if (first) std::rethrow_exception(first);
}

}  // namespace eyrie
