// Malformed steps are refused with a message, never a crash.
#include <gtest/gtest.h>

#include "model/cpu/cpu_engine.hpp"
#include "model/error.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

class EngineErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = std::make_unique<CpuEngine>(
        FalconModel::load(test::test_data("models/falcon-7b-tiny")),
        CpuEngineOptions{.threads = 1, .block_size = 4, .kv_tokens = 32});
  }
  std::string error_of(const SequenceStep& s) {
    StepBatch b;
    b.seqs.push_back(s);
    StepOutput out;
    try {
      engine_->step(b, out);
    } catch (const InvalidArgument& e) {
      return e.what();
    }
    return "";
  }
  std::unique_ptr<CpuEngine> engine_;
  std::vector<int32_t> tokens_{1, 2, 3, 4, 5};
  std::vector<int32_t> blocks_{0, 1};
};

TEST_F(EngineErrors, TooFewBlocks) {
  std::vector<int32_t> one{0};
  EXPECT_NE(error_of({7, 0, tokens_, one, false}).find("cannot hold 5 positions"), std::string::npos);
}

TEST_F(EngineErrors, BlockOutOfRange) {
  std::vector<int32_t> bad{0, 8};
  EXPECT_NE(error_of({7, 0, tokens_, bad, false}).find("KV block 8 is out of range"), std::string::npos);
}

TEST_F(EngineErrors, TokenOutsideVocabulary) {
  std::vector<int32_t> bad{1, 65024};
  EXPECT_NE(error_of({7, 0, bad, blocks_, false}).find("token id 65024"), std::string::npos);
}

TEST_F(EngineErrors, EmptyAndDuplicate) {
  EXPECT_NE(error_of({7, 0, {}, blocks_, false}).find("no tokens"), std::string::npos);
  StepBatch b;
  b.seqs.push_back({3, 0, tokens_, blocks_, false});
  b.seqs.push_back({3, 0, tokens_, blocks_, false});
  StepOutput out;
  EXPECT_THROW(engine_->step(b, out), InvalidArgument);
}

}  // namespace
}  // namespace eyrie
