// The tensor table of a Falcon checkpoint: role -> safetensors name and shape, bound and checked.
#pragma once

#include <string>
#include <vector>

#include "model/falcon_config.hpp"
#include "model/safetensors.hpp"

namespace eyrie {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool required = true;
};

// Every tensor a checkpoint of this config holds, in load order.
std::vector<TensorSpec> falcon_tensor_table(const FalconConfig& c);

struct LinearWeights {
  const TensorView* weight = nullptr;  // [out, in], as torch.nn.Linear stores it
  const TensorView* bias = nullptr;    // [out] or null
  int64_t in = 0, out = 0;
};

struct NormWeights {
  const TensorView* weight = nullptr;
  const TensorView* bias = nullptr;
};

struct LayerWeights {
  NormWeights ln_attn;  // input_layernorm or ln_attn
  NormWeights ln_mlp;   // ln_mlp, post_attention_layernorm, or the same as ln_attn
  LinearWeights qkv, dense, h_to_4h, h4_to_h;
};

struct FalconWeights {
  const TensorView* word_embeddings = nullptr;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  NormWeights ln_f;
  LinearWeights lm_head;  // the checkpoint's own, or the tied embeddings
};

// Binds every role to its tensor, checking names and shapes. Errors name the file and tensor.
FalconWeights bind_falcon_weights(const FalconConfig& c, const WeightArchive& archive,
                                  const std::string& source);

}  // namespace eyrie
