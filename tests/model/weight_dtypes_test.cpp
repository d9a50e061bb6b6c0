// The same checkpoint stored as fp32 and fp16 instead of bf16 gives the reference results.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/cpu/cpu_engine.hpp"
#include "model/sampling/logits_processors.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

// Rewrites every tensor of a checkpoint in another dtype ("F32" or "F16").
void convert_checkpoint(const std::string& from, const test::TempDir& to, const std::string& dtype) {
  WeightArchive src = WeightArchive::open_dir(from);
  std::vector<test::RawTensor> out;
  for (const auto& [name, t] : src.tensors()) {
    std::vector<float> v(static_cast<std::size_t>(t.numel()));
    to_f32(t.dtype, t.data, v.data(), v.size());
    std::string bytes;
    if (dtype == "F32") {
      bytes.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    } else {
      for (float f : v) {
        uint16_t h = f32_to_f16(f);
        bytes.push_back(static_cast<char>(h & 0xff));
        bytes.push_back(static_cast<char>(h >> 8));
      }
    }
    out.push_back({name, dtype, t.shape, std::move(bytes)});
  }
  to.write("model.safetensors", test::safetensors_image(out));
  std::filesystem::copy_file(from + "/config.json", to.file("config.json"));
}

class WeightDtypes : public ::testing::TestWithParam<std::string> {};

TEST_P(WeightDtypes, PromptLogprobsMatchReference) {
  const std::string fixture = test::test_data("models/falcon-40b-tiny");
  test::TempDir dir;
  convert_checkpoint(fixture, dir, GetParam());
  auto model = FalconModel::load(dir.path().string());
  EXPECT_EQ(model->weights.word_embeddings->dtype, GetParam() == "F32" ? DType::f32 : DType::f16);
  CpuEngine engine(model, {.threads = 2, .block_size = 16, .kv_tokens = 1024});
  for (const auto& rc : test::load_reference(fixture + "/reference.json")) {
    std::vector<int32_t> blocks(engine.kv_spec().blocks_for(rc.ids.size()));
    for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<int32_t>(i);
    StepBatch batch;
    batch.seqs.push_back({1, 0, rc.ids, blocks, true});
    StepOutput out;
    engine.step(batch, out);
    for (std::size_t i = 1; i < rc.ids.size(); ++i)
      EXPECT_NEAR(log_softmax_at(out.row(0, i - 1), rc.ids[i]), *rc.logprobs[i], 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(Stored, WeightDtypes, ::testing::Values("F32", "F16"));

}  // namespace
}  // namespace eyrie
