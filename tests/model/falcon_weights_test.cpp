// Tensor tables per variant and the errors for missing or misshapen tensors.
#include "model/falcon_weights.hpp"

#include <gtest/gtest.h>

#include "model/error.hpp"
#include "model/falcon_model.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

const char* kTinyConfig = R"({"model_type":"falcon","vocab_size":16,"hidden_size":8,
  "num_attention_heads":2,"num_hidden_layers":1,"multi_query":true,"parallel_attn":true})";

std::vector<test::RawTensor> checkpoint_for(const FalconConfig& c) {
  std::vector<test::RawTensor> out;
  for (const auto& spec : falcon_tensor_table(c)) {
    if (!spec.required) continue;
    int64_t n = 1;
    for (auto d : spec.shape) n *= d;
    out.push_back({spec.name, "BF16", spec.shape, test::bf16_bytes(std::vector<float>(n, 0.5f))});
  }
  return out;
}

std::string load_error(const test::TempDir& dir) {
  try {
    FalconModel::load(dir.path().string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FalconWeights, TableCoversEveryVariant) {
  auto c7 = FalconConfig::from_file(test::test_data("configs/falcon-7b.json"));
  auto t7 = falcon_tensor_table(c7);
  EXPECT_EQ(t7[0].name, "transformer.word_embeddings.weight");
  EXPECT_EQ(t7[3].name, "transformer.h.0.self_attention.query_key_value.weight");
  EXPECT_EQ(t7[3].shape, (std::vector<int64_t>{4672, 4544}));
  auto c40 = FalconConfig::from_file(test::test_data("configs/falcon-40b.json"));
  auto t40 = falcon_tensor_table(c40);
  EXPECT_EQ(t40[1].name, "transformer.h.0.ln_attn.weight");
  EXPECT_EQ(t40[3].name, "transformer.h.0.ln_mlp.weight");
  EXPECT_EQ(t40[5].shape, (std::vector<int64_t>{(128 + 16) * 64, 8192}));
  EXPECT_FALSE(t40.back().required);  // tied lm_head
}

TEST(FalconWeights, LoadsTinyCheckpointAndTiesLmHead) {
  test::TempDir dir;
  auto c = FalconConfig::from_json(kTinyConfig, "config.json");
  dir.write("config.json", kTinyConfig);
  dir.write("model.safetensors", test::safetensors_image(checkpoint_for(c)));
  auto m = FalconModel::load(dir.path().string());
  EXPECT_EQ(m->weights.lm_head.weight, m->weights.word_embeddings);
  EXPECT_EQ(m->weights.layers.size(), 1u);
  EXPECT_EQ(m->weights.layers[0].ln_mlp.weight, m->weights.layers[0].ln_attn.weight);
}

TEST(FalconWeights, MissingTensorIsNamed) {
  test::TempDir dir;
  auto c = FalconConfig::from_json(kTinyConfig, "config.json");
  auto ck = checkpoint_for(c);
  ck.erase(ck.begin() + 3);
  dir.write("config.json", kTinyConfig);
  dir.write("model.safetensors", test::safetensors_image(ck));
  EXPECT_NE(load_error(dir).find("missing tensor 'transformer.h.0.self_attention.query_key_value.weight'"),
            std::string::npos);
}

TEST(FalconWeights, WrongShapeIsNamed) {
  test::TempDir dir;
  auto c = FalconConfig::from_json(kTinyConfig, "config.json");
  auto ck = checkpoint_for(c);
  ck[3].shape = {8, 8};
  ck[3].bytes = test::bf16_bytes(std::vector<float>(64, 0.f));
  dir.write("config.json", kTinyConfig);
  dir.write("model.safetensors", test::safetensors_image(ck));
  std::string err = load_error(dir);
  EXPECT_NE(err.find("query_key_value.weight' has shape [8, 8], expected [16, 8]"), std::string::npos)
      << err;
  EXPECT_NE(err.find("model.safetensors"), std::string::npos);
}

TEST(FalconWeights, UntiedHeadRequired) {
  test::TempDir dir;
  std::string cfg = R"({"model_type":"falcon","vocab_size":16,"hidden_size":8,"num_attention_heads":2,
    "num_hidden_layers":1,"tie_word_embeddings":false})";
  auto c = FalconConfig::from_json(cfg, "config.json");
  auto ck = checkpoint_for(c);
  ASSERT_EQ(ck.back().name, "lm_head.weight");
  ck.pop_back();
  dir.write("config.json", cfg);
  dir.write("model.safetensors", test::safetensors_image(ck));
  EXPECT_NE(load_error(dir).find("missing tensor 'lm_head.weight'"), std::string::npos);
}

TEST(FalconWeights, MissingDirectoryAndConfig) {
  EXPECT_NE(std::string([] {
              try {
                FalconModel::load("/nonexistent/model");
              } catch (const Error& e) {
                return std::string(e.what());
              }
              return std::string();
            }()).find("/nonexistent/model"),
            std::string::npos);
  test::TempDir dir;
  EXPECT_NE(load_error(dir).find("config.json"), std::string::npos);
}

}  // namespace
}  // namespace eyrie
