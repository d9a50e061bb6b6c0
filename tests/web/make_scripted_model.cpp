// Writes a one-layer Falcon checkpoint whose greedy output after any chat prompt is a fixed text
// (an HTML-injection payload) followed by " la" forever, so the browser tests see known model text.
//
// Usage: make_scripted_model TOKENIZER_JSON OUT_DIR
//
// The residual stream holds the current token one-hot (coordinates 0..63) plus a "phase" one-hot
// (64..66). The payload repeats tokens with different successors ("=" is followed by "1", "x" and
// "2"), so the next token depends on (token, phase). The phase is the strongest marker token seen
// so far: one attention head with a constant query and keys set only for the markers, all in the
// rotary pair of lowest frequency (rope_theta 1e6), so attention picks markers by content at any
// distance; their values carry the phase. lm_head then scores (token, phase) pairs.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.hpp"

namespace {

constexpr int64_t kVocab = 65024;
constexpr int64_t kHidden = 128;  // one head of 128: rotary pair 63/127 has the lowest frequency
constexpr int64_t kFfn = 16;
constexpr int64_t kPhase0 = 64;  // residual coordinate of phase 0; phases 1, 2 follow
constexpr int64_t kMaxTokens = 64;
constexpr int64_t kLowPair = kHidden / 2 - 1;
constexpr double kEps = 1e-5;

const std::string kTrigger = ":";  // every Falcon chat prompt ends with "Falcon:"
const std::string kPayload =
    "<script>window.__pwned=1</script> <img src=x onerror=\"window.__pwned=2\">";
const std::string kFiller = " la";
// Marker text -> phase it starts: "</" closes the script, "error" is inside onerror.
const std::vector<std::pair<std::string, int>> kMarkers = {{"</", 1}, {"error", 2}};

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
  Tensor(std::string n, std::vector<int64_t> s) : name(std::move(n)), shape(std::move(s)) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    data.assign(static_cast<size_t>(count), 0.f);
  }
  float& at(int64_t r, int64_t c) { return data[static_cast<size_t>(r * shape[1] + c)]; }
};

int32_t single_id(const eyrie::Tokenizer& tok, const std::string& text) {
  auto ids = tok.encode(text);
  if (ids.size() != 1) throw std::runtime_error("'" + text + "' is not a single token");
  return ids[0];
}

void write_safetensors(const std::filesystem::path& path, const std::vector<Tensor>& tensors) {
  std::string header = "{";
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const uint64_t bytes = t.data.size() * sizeof(float);
    if (header.size() > 1) header += ",";
    header += "\"" + t.name + "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(t.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out << header;
  for (const auto& t : tensors)
    out.write(reinterpret_cast<const char*>(t.data.data()),
              static_cast<std::streamsize>(t.data.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_scripted_model TOKENIZER_JSON OUT_DIR\n";
    return 2;
  }
  try {
    const std::filesystem::path tokenizer_path = argv[1], dir = argv[2];
    const auto tok = eyrie::Tokenizer::from_file(tokenizer_path.string());

    // The token walk: trigger, payload, then the filler once (it loops on itself).
    std::vector<int32_t> walk = {single_id(tok, kTrigger)};
    const auto payload_ids = tok.encode(kPayload);
    walk.insert(walk.end(), payload_ids.begin(), payload_ids.end());
    const int32_t filler = single_id(tok, kFiller);
    walk.push_back(filler);

    std::map<int32_t, int> marker_phase;
    for (const auto& [text, phase] : kMarkers) marker_phase[single_id(tok, text)] = phase;

    std::map<int32_t, int64_t> coord;  // token id -> its one-hot coordinate
    for (int32_t id : walk)
      if (!coord.count(id)) coord.emplace(id, static_cast<int64_t>(coord.size()));
    if (static_cast<int64_t>(coord.size()) > kMaxTokens)
      throw std::runtime_error("payload has too many distinct tokens");

    // (token, phase) -> successor, from the walk; a clash means the script cannot be followed.
    std::map<std::pair<int32_t, int>, int32_t> next;
    int phase = 0;
    auto add = [&](int32_t cur, int ph, int32_t succ) {
      auto [it, fresh] = next.emplace(std::make_pair(cur, ph), succ);
      if (!fresh && it->second != succ)
        throw std::runtime_error("token " + std::to_string(cur) + " has two successors in phase " +
                                 std::to_string(ph));
    };
    for (size_t i = 0; i + 1 < walk.size(); ++i) {
      if (auto m = marker_phase.find(walk[i]); m != marker_phase.end())
        phase = std::max(phase, m->second);
      add(walk[i], phase, walk[i + 1]);
    }
    add(filler, phase, filler);

    // LayerNorm of a one-hot row: the hot coordinate's value, used to undo the normalisation.
    const double mean = 1.0 / kHidden;
    const double hot = (1.0 - mean) / std::sqrt(mean * (1.0 - mean) + kEps);

    const std::string p = "transformer.h.0.";
    std::vector<Tensor> t;
    t.emplace_back("transformer.word_embeddings.weight", std::vector<int64_t>{kVocab, kHidden});
    for (auto [id, c] : coord) t.back().at(id, c) = 1.f;

    Tensor ln_w(p + "input_layernorm.weight", {kHidden}),
        ln_b(p + "input_layernorm.bias", {kHidden});
    std::fill(ln_w.data.begin(), ln_w.data.end(), 1.f);
    t.push_back(ln_w);
    t.push_back(ln_b);

    // Fused multi-query layout: q (128 rows), k (128), v (128).
    Tensor qkv_w(p + "self_attention.query_key_value.weight", {3 * kHidden, kHidden});
    Tensor qkv_b(p + "self_attention.query_key_value.bias", {3 * kHidden});
    const double query = 16.0, scale = 1.0 / std::sqrt(static_cast<double>(kHidden));
    qkv_b.data[kLowPair] = static_cast<float>(query);
    for (auto [id, ph] : marker_phase) {
      // Attention scores of 40 per phase level: the highest phase present takes all the weight.
      const double key = 40.0 * ph / (query * scale);
      qkv_w.at(kHidden + kLowPair, coord.at(id)) = static_cast<float>(key / hot);
      qkv_w.at(2 * kHidden + 0, coord.at(id)) = static_cast<float>(-1.0 / hot);
      qkv_w.at(2 * kHidden + ph, coord.at(id)) = static_cast<float>(1.0 / hot);
    }
    qkv_b.data[2 * kHidden + 0] = 1.f;  // every non-marker token's value is phase 0
    t.push_back(qkv_w);
    t.push_back(qkv_b);

    Tensor dense_w(p + "self_attention.dense.weight", {kHidden, kHidden});
    for (int ph = 0; ph < 3; ++ph) dense_w.at(kPhase0 + ph, ph) = 1.f;
    t.push_back(dense_w);
    t.emplace_back(p + "self_attention.dense.bias", std::vector<int64_t>{kHidden});
    t.emplace_back(p + "mlp.dense_h_to_4h.weight", std::vector<int64_t>{kFfn, kHidden});
    t.emplace_back(p + "mlp.dense_h_to_4h.bias", std::vector<int64_t>{kFfn});
    t.emplace_back(p + "mlp.dense_4h_to_h.weight", std::vector<int64_t>{kHidden, kFfn});
    t.emplace_back(p + "mlp.dense_4h_to_h.bias", std::vector<int64_t>{kHidden});

    Tensor lnf_w("transformer.ln_f.weight", {kHidden}), lnf_b("transformer.ln_f.bias", {kHidden});
    std::fill(lnf_w.data.begin(), lnf_w.data.end(), 1.f);
    t.push_back(lnf_w);
    t.push_back(lnf_b);

    // The token counts twice the phase, so a pair wins over both a same-token and a same-phase
    // rival.
    Tensor head("lm_head.weight", {kVocab, kHidden});
    for (const auto& [key, succ] : next) {
      head.at(succ, coord.at(key.first)) += 2.f;
      head.at(succ, kPhase0 + key.second) += 1.f;
    }
    t.push_back(head);

    std::filesystem::create_directories(dir);
    write_safetensors(dir / "model.safetensors", t);
    // Removed first: the source may be read-only, and so would be the copy a rerun replaces.
    std::filesystem::remove(dir / "tokenizer.json");
    std::filesystem::copy_file(tokenizer_path, dir / "tokenizer.json");
    std::ofstream(dir / "config.json")
        << "{\n  \"model_type\": \"falcon\",\n  \"architectures\": [\"FalconForCausalLM\"],\n"
        << "  \"vocab_size\": " << kVocab << ",\n  \"hidden_size\": " << kHidden
        << ",\n  \"num_attention_heads\": 1,\n  \"num_kv_heads\": 1,\n  \"num_hidden_layers\": 1,\n"
        << "  \"ffn_hidden_size\": " << kFfn << ",\n  \"multi_query\": true,\n"
        << "  \"new_decoder_architecture\": false,\n  \"parallel_attn\": true,\n  \"bias\": true,\n"
        << "  \"alibi\": false,\n  \"rope_theta\": 1000000.0,\n  \"layer_norm_epsilon\": " << kEps
        << ",\n"
        << "  \"max_position_embeddings\": 4096,\n  \"tie_word_embeddings\": false,\n"
        << "  \"bos_token_id\": 11,\n  \"eos_token_id\": 11,\n  \"activation\": \"gelu\"\n}\n";
    // What the tests expect to see.
    std::ofstream(dir / "scripted.json") << "{\"payload\": \"" << json_escape(kPayload)
                                         << "\", \"payload_tokens\": " << payload_ids.size()
                                         << ", \"filler\": \"" << json_escape(kFiller) << "\"}\n";
    std::cout << "wrote " << dir.string() << " (" << payload_ids.size() << " payload tokens, "
              << coord.size() << " distinct)\n";
  } catch (const std::exception& e) {
    std::cerr << "make_scripted_model: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
