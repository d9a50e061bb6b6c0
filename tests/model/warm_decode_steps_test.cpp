// warm_decode_steps runs two decode steps at each of an engine's prepared batch sizes, up to the
// first that holds the scheduler's batch and within the cache's blocks, and none for an engine
// that prepares nothing (the CPU engine).
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "model/cpu/cpu_engine.hpp"
#include "model/step.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

// Records each step's shape: sequence count, and whether every sequence is one token at
// position 0 in a block of its own.
class RecordingEngine final : public Engine {
 public:
  RecordingEngine(std::vector<int32_t> sizes, int32_t blocks) : sizes_(std::move(sizes)) {
    spec_.block_size = 16;
    spec_.num_blocks = blocks;
  }
  const FalconConfig& config() const override { return cfg_; }
  const KvCacheSpec& kv_spec() const override { return spec_; }
  std::vector<int32_t> decode_batch_sizes() const override { return sizes_; }
  void step(const StepBatch& batch, StepOutput&) override {
    bool alone = true;
    for (std::size_t i = 0; i < batch.seqs.size(); ++i) {
      const SequenceStep& s = batch.seqs[i];
      alone = alone && s.start_pos == 0 && s.tokens.size() == 1 && s.block_table.size() == 1 &&
              s.block_table[0] == static_cast<int32_t>(i) && s.seq_id == i && !s.all_logits;
    }
    steps.emplace_back(static_cast<int32_t>(batch.seqs.size()), alone);
  }
  std::vector<std::pair<int32_t, bool>> steps;

 private:
  std::vector<int32_t> sizes_;
  FalconConfig cfg_;
  KvCacheSpec spec_;
};

TEST(WarmDecodeSteps, TwoStepsPerSizeUpToTheFirstThatHoldsTheBatch) {
  RecordingEngine e({1, 2, 4, 8, 16}, 100);
  warm_decode_steps(e, 5);
  const std::vector<std::pair<int32_t, bool>> want = {{1, true}, {1, true}, {2, true}, {2, true},
                                                      {4, true}, {4, true}, {8, true}, {8, true}};
  EXPECT_EQ(e.steps, want);
}

TEST(WarmDecodeSteps, StopsWhereTheCacheHasTooFewBlocks) {
  RecordingEngine e({1, 2, 4, 8, 16}, 6);
  warm_decode_steps(e, 16);
  const std::vector<std::pair<int32_t, bool>> want = {{1, true}, {1, true}, {2, true}, {2, true}, {4, true}, {4, true}};
  EXPECT_EQ(e.steps, want);
}

TEST(WarmDecodeSteps, EnginesThatPrepareNothingRunNoStep) {
  CpuEngine cpu(FalconModel::load(test::test_data("models/falcon-7b-tiny")),
                CpuEngineOptions{.threads = 1, .block_size = 4, .kv_tokens = 32});
  EXPECT_TRUE(cpu.decode_batch_sizes().empty());
  warm_decode_steps(cpu, 8);
}

}  // namespace
}  // namespace eyrie
