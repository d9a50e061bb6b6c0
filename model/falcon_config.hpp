// Hyper-parameters of a Falcon checkpoint, read from its config.json.
#pragma once

#include <cstdint>
#include <string>

namespace eyrie {

struct FalconConfig {
  std::string model_type = "falcon";
  int64_t vocab_size = 65024;
  int64_t hidden_size = 4544;
  int64_t num_layers = 32;
  int64_t num_heads = 71;
  // KV heads after resolving multi_query / new_decoder_architecture: 1 for Falcon-7B.
  int64_t num_kv_heads = 1;
  int64_t head_dim = 64;
  int64_t ffn_hidden_size = 4 * 4544;
  int64_t max_position_embeddings = 2048;
  double layer_norm_epsilon = 1e-5;
  double rope_theta = 10000.0;
  bool multi_query = true;
  bool new_decoder_architecture = false;
  bool parallel_attn = true;
  bool bias = false;
  bool alibi = false;
  // 2: ln_attn + ln_mlp (Falcon-40B/180B); 1: one input_layernorm shared by both branches.
  int num_ln_in_parallel_attn = 1;
  bool tie_word_embeddings = true;
  int64_t bos_token_id = 11;
  int64_t eos_token_id = 11;

  // Which of the three fused query_key_value layouts the checkpoint uses.
  enum class QkvLayout { grouped, multi_query, interleaved };
  QkvLayout qkv_layout() const;
  int64_t qkv_out_dim() const;
  // Query heads per KV head.
  int64_t group_size() const { return num_heads / num_kv_heads; }
  bool two_layernorms() const { return parallel_attn && num_ln_in_parallel_attn == 2; }

  // Reads and validates config.json; errors name the file and the key.
  static FalconConfig from_file(const std::string& path);
  static FalconConfig from_json(std::string_view json, const std::string& source);
  // One-line summary for logs.
  std::string describe() const;
};

}  // namespace eyrie
