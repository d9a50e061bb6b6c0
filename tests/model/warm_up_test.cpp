// warm_up runs two decode steps at each of an engine's prepared batch sizes, up to the first
// that holds the scheduler's batch and within the cache's blocks, then one prompt step at each
// of a few row counts up to the step limit; nothing for an engine that prepares nothing (the
// CPU engine).
#include <gtest/gtest.h>

#include <vector>

#include "model/cpu/cpu_engine.hpp"
#include "model/step.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

struct Seen {
  int32_t seqs;
  int64_t tokens;
  bool well_formed;  // each sequence from position 0 in blocks of its own, no logits asked for
  bool operator==(const Seen&) const = default;
};

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
    Seen s{static_cast<int32_t>(batch.seqs.size()), 0, true};
    std::vector<bool> used(spec_.num_blocks);
    for (const SequenceStep& q : batch.seqs) {
      s.tokens += static_cast<int64_t>(q.tokens.size());
      s.well_formed = s.well_formed && q.start_pos == 0 && !q.all_logits && !q.logits_to_host &&
                      static_cast<int64_t>(q.block_table.size()) == spec_.blocks_for(q.tokens.size());
      for (int32_t b : q.block_table) {
        s.well_formed = s.well_formed && b >= 0 && b < spec_.num_blocks && !used[b];
        if (b >= 0 && b < spec_.num_blocks) used[b] = true;
      }
    }
    steps.push_back(s);
  }
  std::vector<Seen> steps;

 private:
  std::vector<int32_t> sizes_;
  FalconConfig cfg_;
  KvCacheSpec spec_;
};

TEST(WarmUp, DecodeSizesUpToTheBatchThenPromptsUpToTheStepLimit) {
  RecordingEngine e({1, 2, 4, 8, 16}, 1000);
  warm_up(e, 5, 300);
  const std::vector<Seen> want = {{1, 1, true},  {1, 1, true},  {2, 2, true},  {2, 2, true},
                                  {4, 4, true},  {4, 4, true},  {8, 8, true},  {8, 8, true},
                                  {1, 16, true}, {1, 64, true}, {1, 256, true}, {1, 300, true}};
  EXPECT_EQ(e.steps, want);
}

TEST(WarmUp, StaysWithinTheCacheBlocks) {
  RecordingEngine e({1, 2, 4, 8, 16}, 6);  // 96 positions
  warm_up(e, 16, 4096);
  const std::vector<Seen> want = {{1, 1, true}, {1, 1, true}, {2, 2, true},  {2, 2, true},
                                  {4, 4, true}, {4, 4, true}, {1, 16, true}, {1, 64, true}, {1, 96, true}};
  EXPECT_EQ(e.steps, want);
}

TEST(WarmUp, EnginesThatPrepareNothingAreLeftAlone) {
  RecordingEngine none({}, 100);
  warm_up(none, 8, 256);
  EXPECT_TRUE(none.steps.empty());
  CpuEngine cpu(FalconModel::load(test::test_data("models/falcon-7b-tiny")),
                CpuEngineOptions{.threads = 1, .block_size = 4, .kv_tokens = 32});
  EXPECT_TRUE(cpu.decode_batch_sizes().empty());
}

}  // namespace
}  // namespace eyrie
