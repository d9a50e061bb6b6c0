// The Falcon forward pass on the CPU: every variant, batched steps over a paged fp32 KV cache,
// whole or as one tensor-parallel shard. All shards of a group run each step together; each
// fills the same output.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "model/cpu/matmul.hpp"
#include "model/cpu/ops.hpp"
#include "model/cpu/thread_pool.hpp"
#include "model/falcon_model.hpp"
#include "model/parallel/communicator.hpp"
#include "model/parallel/shard_weights.hpp"
#include "model/step.hpp"

namespace eyrie {

struct CpuEngineOptions {
  int threads = 0;           // 0: all hardware threads
  int32_t block_size = 16;   // token positions per KV block
  int64_t kv_tokens = 0;     // KV cache capacity in tokens; 0: 4 x max_position_embeddings
};

class CpuEngine final : public Engine {
 public:
  // With a communicator, a tensor-parallel shard: this engine computes the communicator's rank
  // of the model and exchanges partial sums with the other ranks. Without: the whole model.
  CpuEngine(std::shared_ptr<const FalconModel> model, CpuEngineOptions options = {},
            std::shared_ptr<Communicator> comm = nullptr);

  const FalconConfig& config() const override { return model_->config; }
  const KvCacheSpec& kv_spec() const override { return spec_; }
  void step(const StepBatch& batch, StepOutput& out) override;

  int threads() const { return pool_.size(); }
  const ShardPlan& shard() const { return plan_; }

 private:
  struct Linear {
    WeightMatrix w;
    std::vector<float> bias;  // empty when the model has none
    const float* b() const { return bias.empty() ? nullptr : bias.data(); }
  };
  struct Norm {
    std::vector<float> w, b;
  };
  struct Layer {
    Norm ln_attn, ln_mlp;
    bool shared_norm = false;  // one LayerNorm feeds both branches
    Linear qkv, dense, h_to_4h, h4_to_h;
  };
  // Token rows of the current step, flattened over its sequences.
  struct Row {
    int32_t seq;
    int32_t pos;
  };

  void layer_forward(const Layer& layer, int64_t li, const StepBatch& batch);
  void write_qkv(int64_t li, const StepBatch& batch);
  void attention(int64_t li, const StepBatch& batch);
  // Sums the shards' partial [rows, hidden] outputs of a row-parallel layer.
  void reduce(std::vector<float>& partial, int64_t count);
  void lm_head(int64_t rows, StepOutput& out);
  void norm_rows(const Norm& n, const float* in, float* out, int64_t rows);
  float* k_at(int64_t layer, int32_t block, int64_t kv_head, int32_t slot);
  float* v_at(int64_t layer, int32_t block, int64_t kv_head, int32_t slot);

  std::shared_ptr<const FalconModel> model_;
  std::shared_ptr<Communicator> comm_;
  ShardPlan plan_;
  std::unique_ptr<ShardWeights> shard_;
  ThreadPool pool_;
  KvCacheSpec spec_;
  std::vector<Layer> layers_;
  Norm ln_f_;
  WeightMatrix embed_, lm_head_;
  std::optional<RotaryTable> rotary_;
  std::optional<AlibiTable> alibi_;
  std::vector<float> k_cache_, v_cache_;  // [layer][block][kv_head][slot][head_dim]

  // Step scratch, reused across steps.
  std::vector<Row> rows_;
  std::vector<float> x_, a_, m_, qkv_, q_, attn_, o_, f_, y_, vocab_part_, vocab_all_;
};

}  // namespace eyrie
