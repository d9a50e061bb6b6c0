// config.json of every Falcon generation, and the errors for configs that cannot be served.
#include "model/falcon_config.hpp"

#include <gtest/gtest.h>

#include "model/error.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

std::string error_of(const std::string& json) {
  try {
    FalconConfig::from_json(json, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FalconConfig, Falcon7B) {
  auto c = FalconConfig::from_file(test::test_data("configs/falcon-7b.json"));
  EXPECT_EQ(c.num_heads, 71);
  EXPECT_EQ(c.num_kv_heads, 1);  // multi_query wins over num_kv_heads 71
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.qkv_layout(), FalconConfig::QkvLayout::multi_query);
  EXPECT_EQ(c.qkv_out_dim(), 4544 + 2 * 64);
  EXPECT_FALSE(c.two_layernorms());
  EXPECT_EQ(c.ffn_hidden_size, 4 * 4544);
}

TEST(FalconConfig, Falcon40BAnd180B) {
  for (const char* f : {"configs/falcon-40b.json", "configs/falcon-180b.json"}) {
    auto c = FalconConfig::from_file(test::test_data(f));
    EXPECT_EQ(c.num_kv_heads, 8) << f;
    EXPECT_EQ(c.qkv_layout(), FalconConfig::QkvLayout::grouped);
    EXPECT_TRUE(c.two_layernorms());
    EXPECT_EQ(c.qkv_out_dim(), (c.num_heads + 16) * c.head_dim);
  }
}

TEST(FalconConfig, Falcon2_11B) {
  auto c = FalconConfig::from_json(R"({"model_type":"falcon","hidden_size":4096,
    "num_attention_heads":32,"num_kv_heads":8,"num_hidden_layers":60,"new_decoder_architecture":true,
    "num_ln_in_parallel_attn":1,"parallel_attn":true,"rope_theta":500042,"tie_word_embeddings":false,
    "max_position_embeddings":8192,"ffn_hidden_size":16384})", "config.json");
  EXPECT_FALSE(c.two_layernorms());
  EXPECT_EQ(c.rope_theta, 500042.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_kv_heads, 8);
}

TEST(FalconConfig, RopeParametersOfNewerTransformers) {
  auto c = FalconConfig::from_json(
      R"({"model_type":"falcon","rope_parameters":{"rope_theta":500042.0,"rope_type":"default"}})",
      "config.json");
  EXPECT_EQ(c.rope_theta, 500042.0);
}

TEST(FalconConfig, RefinedWebKeys) {
  auto rw7 = FalconConfig::from_json(R"({"model_type":"RefinedWebModel","n_embed":4544,"n_head":71,
    "n_layer":32,"multi_query":true,"parallel_attn":true,"alibi":false,"bias":false})", "c.json");
  EXPECT_EQ(rw7.num_layers, 32);
  EXPECT_EQ(rw7.num_kv_heads, 1);
  EXPECT_FALSE(rw7.new_decoder_architecture);
  auto rw40 = FalconConfig::from_json(R"({"model_type":"RefinedWeb","hidden_size":8192,"n_head":128,
    "n_head_kv":8,"n_layer":60,"parallel_attn":true})", "c.json");
  EXPECT_TRUE(rw40.new_decoder_architecture);
  EXPECT_EQ(rw40.num_kv_heads, 8);
  EXPECT_TRUE(rw40.two_layernorms());
  auto rw1b = FalconConfig::from_json(R"({"model_type":"RefinedWebModel","hidden_size":2048,
    "n_head":32,"n_layer":24,"multi_query":false,"parallel_attn":false,"alibi":true,"bias":true})",
                                      "c.json");
  EXPECT_EQ(rw1b.qkv_layout(), FalconConfig::QkvLayout::interleaved);
  EXPECT_EQ(rw1b.num_kv_heads, 32);
  EXPECT_TRUE(rw1b.alibi);
}

TEST(FalconConfig, Errors) {
  EXPECT_NE(error_of("{").find("malformed JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"llama"})").find("unknown architecture"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","hidden_size":100,"num_attention_heads":7})")
                .find("not divisible"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","hidden_size":"big"})").find("'hidden_size'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","new_decoder_architecture":true,"num_attention_heads":71,
    "num_kv_heads":8})").find("multiple of num_kv_heads"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","new_decoder_architecture":true,"parallel_attn":false,
    "num_kv_heads":71})").find("requires parallel_attn"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","activation":"relu"})").find("'activation'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","rope_scaling":{"type":"linear","factor":2}})")
                .find("rope_scaling"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"falcon","num_hidden_layers":0})").find("positive"),
            std::string::npos);
  EXPECT_NE(error_of(R"([1,2])").find("not a JSON object"), std::string::npos);
}

TEST(FalconConfig, MissingFileNamesPath) {
  try {
    FalconConfig::from_file("/nonexistent/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/config.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace eyrie
