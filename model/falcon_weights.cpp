// Role-to-name table for Falcon checkpoints and the shape checks made when binding it.
#include "model/falcon_weights.hpp"

#include "model/error.hpp"

namespace eyrie {
namespace {

std::string layer_prefix(int64_t i) { return "transformer.h." + std::to_string(i) + "."; }

const char* attn_norm_name(const FalconConfig& c) {
  return c.two_layernorms() ? "ln_attn" : "input_layernorm";
}

const char* mlp_norm_name(const FalconConfig& c) {
  if (c.two_layernorms()) return "ln_mlp";
  return c.parallel_attn ? nullptr : "post_attention_layernorm";
}

}  // namespace

std::vector<TensorSpec> falcon_tensor_table(const FalconConfig& c) {
  const int64_t h = c.hidden_size, f = c.ffn_hidden_size;
  std::vector<TensorSpec> t;
  t.push_back({"transformer.word_embeddings.weight", {c.vocab_size, h}});
  auto norm = [&](const std::string& name) {
    t.push_back({name + ".weight", {h}});
    t.push_back({name + ".bias", {h}});
  };
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    t.push_back({name + ".weight", {out, in}});
    if (c.bias) t.push_back({name + ".bias", {out}});
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    std::string p = layer_prefix(i);
    norm(p + attn_norm_name(c));
    if (const char* m = mlp_norm_name(c)) norm(p + m);
    linear(p + "self_attention.query_key_value", c.qkv_out_dim(), h);
    linear(p + "self_attention.dense", h, h);
    linear(p + "mlp.dense_h_to_4h", f, h);
    linear(p + "mlp.dense_4h_to_h", h, f);
  }
  norm("transformer.ln_f");
  t.push_back({"lm_head.weight", {c.vocab_size, h}, !c.tie_word_embeddings});
  return t;
}

FalconWeights bind_falcon_weights(const FalconConfig& c, const WeightArchive& archive,
                                  const std::string& source) {
  for (const auto& spec : falcon_tensor_table(c)) {
    const TensorView* v = archive.find(spec.name);
    if (!v) {
      if (!spec.required) continue;
      throw Error(source + ": missing tensor '" + spec.name + "'" +
                  (spec.name == "lm_head.weight" ? " (tie_word_embeddings is false)" : ""));
    }
    if (v->shape != spec.shape) {
      TensorView want;
      want.shape = spec.shape;
      throw Error(*v->file + ": tensor '" + spec.name + "' has shape " + v->shape_string() +
                  ", expected " + want.shape_string() + " for this config");
    }
  }
  auto get = [&](const std::string& name) { return archive.find(name); };
  auto norm = [&](const std::string& name) {
    return NormWeights{get(name + ".weight"), get(name + ".bias")};
  };
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    return LinearWeights{get(name + ".weight"), c.bias ? get(name + ".bias") : nullptr, in, out};
  };
  FalconWeights w;
  const int64_t h = c.hidden_size, f = c.ffn_hidden_size;
  w.word_embeddings = get("transformer.word_embeddings.weight");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    std::string p = layer_prefix(i);
    LayerWeights l;
    l.ln_attn = norm(p + attn_norm_name(c));
    const char* m = mlp_norm_name(c);
    l.ln_mlp = m ? norm(p + m) : l.ln_attn;
    l.qkv = linear(p + "self_attention.query_key_value", c.qkv_out_dim(), h);
    l.dense = linear(p + "self_attention.dense", h, h);
    l.h_to_4h = linear(p + "mlp.dense_h_to_4h", f, h);
    l.h4_to_h = linear(p + "mlp.dense_4h_to_h", h, f);
    w.layers.push_back(l);
  }
  w.ln_f = norm("transformer.ln_f");
  const TensorView* head = get("lm_head.weight");
  w.lm_head = LinearWeights{head ? head : w.word_embeddings, nullptr, h, c.vocab_size};
  return w;
}

}  // namespace eyrie
