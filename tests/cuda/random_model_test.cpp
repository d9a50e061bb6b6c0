// The CUDA engine against the CPU engine on random checkpoints larger than the fixtures, at
// Falcon's real head dim of 64: a Falcon-7B layout (many query heads on one key-value head, one
// LayerNorm) and a Falcon-40B layout (grouped key-value heads, two LayerNorms), several layers,
// hidden sizes of hundreds. A prompt step with every row's logits, then decode steps, with every
// product on split halves and with the MLP and dense on fp16 (activation_precision split and
// mixed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_engine.hpp"
#include "model/cpu/cpu_engine.hpp"
#include "model/falcon_config.hpp"
#include "model/falcon_weights.hpp"
#include "tests/support/likeliest.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

struct Layout {
  const char* name;
  int64_t heads, kv_heads;
  bool new_architecture;
};

std::string config_json(const Layout& l, int64_t layers, int64_t vocab) {
  const int64_t hidden = l.heads * 64;
  return std::string(
             "{\"architectures\": [\"FalconForCausalLM\"], \"model_type\": \"falcon\", \"activation\": "
             "\"gelu\", \"alibi\": false, \"bias\": false, \"parallel_attn\": true, ") +
         "\"new_decoder_architecture\": " + (l.new_architecture ? "true" : "false") +
         ", \"multi_query\": " + (l.kv_heads == 1 ? "true" : "false") +
         ", \"num_ln_in_parallel_attn\": " + (l.new_architecture ? "2" : "null") +
         ", \"hidden_size\": " + std::to_string(hidden) + ", \"ffn_hidden_size\": " + std::to_string(4 * hidden) +
         ", \"num_attention_heads\": " + std::to_string(l.heads) + ", \"num_kv_heads\": " + std::to_string(l.kv_heads) +
         ", \"num_hidden_layers\": " + std::to_string(layers) + ", \"vocab_size\": " + std::to_string(vocab) +
         ", \"layer_norm_epsilon\": 1e-5, \"max_position_embeddings\": 2048, \"rope_theta\": 10000.0, "
         "\"tie_word_embeddings\": true, \"bos_token_id\": 11, \"eos_token_id\": 11}";
}

// Every tensor the config needs, random bf16: matrices uniform in +-1/sqrt(fan-in), LayerNorm
// gains 1 +- 0.1, shifts and biases +- 0.05, embeddings (tied to lm_head) in +-0.3. At +-0.1 the
// rows came out nearly flat; at +-0.3 each row's likeliest token is far above a uniform row's.
void write_random_checkpoint(const test::TempDir& dir, const std::string& json, uint32_t seed) {
  const FalconConfig cfg = FalconConfig::from_json(json, "config.json");
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<test::RawTensor> tensors;
  for (const auto& spec : falcon_tensor_table(cfg)) {
    if (!spec.required) continue;
    int64_t n = 1;
    for (const int64_t d : spec.shape) n *= d;
    const bool matrix = spec.shape.size() == 2,
               gain = spec.name.ends_with("ln_attn.weight") || spec.name.ends_with("ln_mlp.weight") ||
                      spec.name.ends_with("input_layernorm.weight") || spec.name.ends_with("ln_f.weight");
    const bool embedding = spec.name.find("word_embeddings") != std::string::npos;
    const float scale = embedding ? 0.3f
                        : matrix  ? 1.f / std::sqrt(static_cast<float>(spec.shape[1]))
                        : gain    ? 0.1f
                                  : 0.05f;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = (gain ? 1.f : 0.f) + scale * u(rng);
    tensors.push_back({spec.name, "BF16", spec.shape, test::bf16_bytes(v)});
  }
  dir.write("config.json", json);
  dir.write("model.safetensors", test::safetensors_image(tensors));
}

// Each row's logprobs of the ten tokens the CPU engine finds likeliest, GPU minus CPU; and the
// least by which a row's likeliest token's logprob exceeds a uniform row's (a flat row would
// agree whatever the engines did).
double worst_top10(const StepOutput& g, const StepOutput& c, std::size_t rows, double& least_peak) {
  double worst = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const auto gr = g.row(0, r), cr = c.row(0, r);
    const auto idx = test::likeliest_tokens(cr, 10);
    const double uniform = -std::log(static_cast<double>(cr.size()));
    least_peak = std::min(least_peak, static_cast<double>(cr[idx[0]]) - c.logsumexp(0, r) - uniform);
    for (int k = 0; k < 10; ++k) {
      const double gl = static_cast<double>(gr[idx[k]]) - g.logsumexp(0, r);
      const double cl = static_cast<double>(cr[idx[k]]) - c.logsumexp(0, r);
      worst = std::max(worst, std::abs(gl - cl));
    }
  }
  return worst;
}

TEST(CudaEngine, AgreesWithTheCpuEngineOnLargerRandomCheckpoints) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  constexpr int64_t kVocab = 4096;
  for (const Layout& layout : {Layout{"Falcon-7B layout", 12, 1, false}, Layout{"Falcon-40B layout", 12, 4, true}}) {
    SCOPED_TRACE(layout.name);
    test::TempDir dir;
    write_random_checkpoint(dir, config_json(layout, 3, kVocab), 5);
    const auto model = FalconModel::load(dir.path().string());
    for (const bool fp16_mlp : {false, true}) {
      SCOPED_TRACE(fp16_mlp ? "mixed" : "split");
      CudaEngine gpu(model, {.block_size = 16, .kv_tokens = 2048, .fp16_mlp = fp16_mlp});
      CpuEngine cpu(model, {.threads = 0, .block_size = 16, .kv_tokens = 2048});
      std::vector<int32_t> prompt(80), token(1);
      for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 2654 + 7) % kVocab);
      std::vector<int32_t> blocks(gpu.kv_spec().blocks_for(96));
      for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<int32_t>(i);
      StepBatch batch;
      batch.seqs.push_back({1, 0, prompt, blocks, true});
      StepOutput g, c;
      gpu.step(batch, g);
      cpu.step(batch, c);
      double peak = 1e9;
      double worst = worst_top10(g, c, prompt.size(), peak);
      batch.seqs[0].all_logits = false;
      for (int32_t k = 0; k < 8; ++k) {
        token[0] = static_cast<int32_t>((k * 997 + 31) % kVocab);
        batch.seqs[0].start_pos = static_cast<int32_t>(prompt.size()) + k;
        batch.seqs[0].tokens = token;
        gpu.step(batch, g);
        cpu.step(batch, c);
        worst = std::max(worst, worst_top10(g, c, 1, peak));
      }
      std::printf(
          "%s, %s: worst top-10 logprob difference from the CPU engine %.5f (likeliest tokens at least %.2f "
          "above uniform)\n",
          layout.name, fp16_mlp ? "mixed" : "split", worst, peak);
      EXPECT_GT(peak, 2.0);
      // Split activations keep about 16 mantissa bits: 1.5e-4 on an H200, far inside bf16's 3e-2;
      // with the MLP's, dense's and lm_head's inputs on fp16 (11 bits), 9.2e-3 (the MLP's alone
      // 6e-3).
      EXPECT_LT(worst, fp16_mlp ? 2e-2 : 5e-3);
    }
  }
}

}  // namespace
}  // namespace eyrie
