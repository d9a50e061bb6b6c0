// config.json parsing for every Falcon generation, from RefinedWeb to Falcon2.
#include "model/falcon_config.hpp"

#include <simdjson.h>

#include <cmath>
#include <optional>

#include "model/error.hpp"

namespace eyrie {
namespace {

namespace dom = simdjson::dom;

// Typed access to optional keys; a key present with the wrong type is an error naming it.
class Fields {
 public:
  Fields(dom::object obj, std::string source) : obj_(obj), source_(std::move(source)) {}

  template <typename T>
  std::optional<T> get(std::initializer_list<const char*> names) const {
    for (const char* n : names) {
      dom::element e;
      if (obj_[n].get(e)) continue;
      if (e.is_null()) return std::nullopt;
      if constexpr (std::is_same_v<T, bool>) {
        bool v;
        if (e.get(v)) fail(n, "a boolean");
        return v;
      } else if constexpr (std::is_same_v<T, int64_t>) {
        int64_t v;
        if (e.get(v)) {
          double d;  // 64.0 is accepted as 64
          if (e.get(d) || d != std::floor(d)) fail(n, "an integer");
          v = static_cast<int64_t>(d);
        }
        return v;
      } else if constexpr (std::is_same_v<T, double>) {
        double v;
        if (e.get(v)) fail(n, "a number");
        return v;
      } else {
        std::string_view v;
        if (e.get(v)) fail(n, "a string");
        return std::string(v);
      }
    }
    return std::nullopt;
  }
  bool has(const char* n) const {
    dom::element e;
    return !obj_[n].get(e) && !e.is_null();
  }
  dom::object obj() const { return obj_; }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(source_ + ": key '" + key + "' must be " + what);
  }

 private:
  dom::object obj_;
  std::string source_;
};

}  // namespace

FalconConfig::QkvLayout FalconConfig::qkv_layout() const {
  if (new_decoder_architecture) return QkvLayout::grouped;
  if (multi_query) return QkvLayout::multi_query;
  return QkvLayout::interleaved;
}

int64_t FalconConfig::qkv_out_dim() const { return (num_heads + 2 * num_kv_heads) * head_dim; }

FalconConfig FalconConfig::from_file(const std::string& path) {
  simdjson::padded_string json;
  if (auto err = simdjson::padded_string::load(path).get(json))
    throw Error(path + ": cannot read: " + simdjson::error_message(err));
  return from_json(std::string_view(json.data(), json.size()), path);
}

FalconConfig FalconConfig::from_json(std::string_view text, const std::string& src) {
  dom::parser parser;
  dom::element root;
  simdjson::padded_string json(text);
  if (auto err = parser.parse(json).get(root))
    throw Error(src + ": malformed JSON: " + simdjson::error_message(err));
  dom::object obj;
  if (root.get(obj)) throw Error(src + ": top level is not a JSON object");
  Fields f(obj, src);
  FalconConfig c;

  c.model_type = f.get<std::string>({"model_type"}).value_or("");
  const bool rw = c.model_type == "RefinedWeb" || c.model_type == "RefinedWebModel";
  if (c.model_type != "falcon" && !rw)
    throw Error(src + ": unknown architecture: model_type '" + c.model_type +
                "' (expected falcon, RefinedWeb or RefinedWebModel)");

  c.vocab_size = f.get<int64_t>({"vocab_size"}).value_or(65024);
  c.hidden_size = f.get<int64_t>({"hidden_size", "n_embed"}).value_or(4544);
  c.num_layers = f.get<int64_t>({"num_hidden_layers", "n_layer"}).value_or(32);
  c.num_heads = f.get<int64_t>({"num_attention_heads", "n_head"}).value_or(71);
  c.layer_norm_epsilon = f.get<double>({"layer_norm_epsilon"}).value_or(1e-5);
  c.max_position_embeddings = f.get<int64_t>({"max_position_embeddings"}).value_or(2048);
  c.multi_query = f.get<bool>({"multi_query"}).value_or(true);
  // The RefinedWeb (40B) code always used the grouped layout; RefinedWebModel (7B) did not.
  c.new_decoder_architecture =
      f.get<bool>({"new_decoder_architecture"}).value_or(c.model_type == "RefinedWeb");
  c.parallel_attn = f.get<bool>({"parallel_attn"}).value_or(true);
  c.bias = f.get<bool>({"bias"}).value_or(false);
  c.alibi = f.get<bool>({"alibi"}).value_or(false);
  c.tie_word_embeddings = f.get<bool>({"tie_word_embeddings"}).value_or(true);
  c.bos_token_id = f.get<int64_t>({"bos_token_id"}).value_or(11);
  c.eos_token_id = f.get<int64_t>({"eos_token_id"}).value_or(11);

  auto theta = f.get<double>({"rope_theta"});
  dom::object rope_params;
  if (!theta && !obj["rope_parameters"].get(rope_params)) {
    Fields rp(rope_params, src + ": rope_parameters");
    theta = rp.get<double>({"rope_theta"});
    auto type = rp.get<std::string>({"rope_type"}).value_or("default");
    if (type != "default")
      throw Error(src + ": rope_parameters.rope_type '" + type + "' is not supported (only default)");
  }
  c.rope_theta = theta.value_or(10000.0);
  if (f.has("rope_scaling"))
    throw Error(src + ": key 'rope_scaling' is set; scaled rotary embeddings are not supported");

  auto act = f.get<std::string>({"activation"}).value_or("gelu");
  if (act != "gelu")
    throw Error(src + ": key 'activation' is '" + act + "'; only exact 'gelu' is supported");

  auto kv = f.get<int64_t>({"num_kv_heads", "n_head_kv"});
  if (c.new_decoder_architecture) c.num_kv_heads = kv.value_or(c.num_heads);
  else if (c.multi_query) c.num_kv_heads = 1;
  else c.num_kv_heads = kv.value_or(c.num_heads);

  auto nln = f.get<int64_t>({"num_ln_in_parallel_attn"});
  c.num_ln_in_parallel_attn = static_cast<int>(nln.value_or(c.new_decoder_architecture ? 2 : 1));

  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) throw Error(src + ": key '" + key + "' must be positive, got " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("num_hidden_layers", c.num_layers);
  positive("num_attention_heads", c.num_heads);
  positive("num_kv_heads", c.num_kv_heads);
  positive("max_position_embeddings", c.max_position_embeddings);
  if (c.hidden_size % c.num_heads != 0)
    throw Error(src + ": inconsistent config: hidden_size " + std::to_string(c.hidden_size) +
                " is not divisible by num_attention_heads " + std::to_string(c.num_heads));
  c.head_dim = c.hidden_size / c.num_heads;
  if (!c.alibi && c.head_dim % 2 != 0)
    throw Error(src + ": inconsistent config: rotary embeddings need an even head dim, got " +
                std::to_string(c.head_dim));
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(src + ": inconsistent config: num_attention_heads " + std::to_string(c.num_heads) +
                " is not a multiple of num_kv_heads " + std::to_string(c.num_kv_heads));
  if (c.qkv_layout() == QkvLayout::interleaved && c.num_kv_heads != c.num_heads)
    throw Error(src + ": inconsistent config: multi_query is false and new_decoder_architecture is "
                "false, so num_kv_heads must equal num_attention_heads");
  if (c.new_decoder_architecture && !c.parallel_attn)
    throw Error(src + ": inconsistent config: new_decoder_architecture requires parallel_attn");
  if (c.num_ln_in_parallel_attn != 1 && c.num_ln_in_parallel_attn != 2)
    throw Error(src + ": key 'num_ln_in_parallel_attn' must be 1 or 2");
  if (c.num_ln_in_parallel_attn == 2 && !c.new_decoder_architecture)
    throw Error(src + ": inconsistent config: two LayerNorms per block need new_decoder_architecture");
  if (c.layer_norm_epsilon <= 0) throw Error(src + ": key 'layer_norm_epsilon' must be positive");
  if (c.rope_theta <= 0) throw Error(src + ": key 'rope_theta' must be positive");
  if (c.eos_token_id < 0 || c.eos_token_id >= c.vocab_size)
    throw Error(src + ": key 'eos_token_id' " + std::to_string(c.eos_token_id) + " is outside the vocabulary");

  c.ffn_hidden_size = f.get<int64_t>({"ffn_hidden_size"}).value_or(4 * c.hidden_size);
  positive("ffn_hidden_size", c.ffn_hidden_size);
  return c;
}

std::string FalconConfig::describe() const {
  std::string attn = num_kv_heads == 1 ? "MQA" : num_kv_heads == num_heads ? "MHA" : "GQA";
  return model_type + ": " + std::to_string(num_layers) + " layers, hidden " +
         std::to_string(hidden_size) + ", " + std::to_string(num_heads) + " heads / " +
         std::to_string(num_kv_heads) + " KV (" + attn + "), ffn " + std::to_string(ffn_hidden_size) +
         ", vocab " + std::to_string(vocab_size) + (parallel_attn ? ", parallel" : ", sequential") +
         (alibi ? ", alibi" : ", rotary theta " + std::to_string(static_cast<int64_t>(rope_theta))) +
         (bias ? ", bias" : "") + (tie_word_embeddings ? ", tied lm_head" : ", own lm_head");
}

}  // namespace eyrie
