// Random checkpoint writer: streams each tensor to disk so a multi-GB model needs little memory.
#include "bench/cpu/random_checkpoint.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "model/dtype.hpp"
#include "model/falcon_config.hpp"
#include "model/falcon_weights.hpp"

namespace eyrie::bench {

std::size_t write_random_checkpoint(const std::string& dir, const std::string& config_json,
                                    uint64_t seed) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config_json;
  FalconConfig c = FalconConfig::from_json(config_json, dir + "/config.json");

  std::string header = "{";
  uint64_t offset = 0;
  auto specs = falcon_tensor_table(c);
  bool first = true;
  for (const auto& s : specs) {
    if (!s.required) continue;
    uint64_t n = 2;
    for (auto d : s.shape) n *= static_cast<uint64_t>(d);
    if (!first) header += ',';
    header += "\"" + s.name + "\":{\"dtype\":\"BF16\",\"shape\":[";
    for (std::size_t i = 0; i < s.shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(s.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
    first = false;
  }
  header += "}";
  std::ofstream f(dir + "/model.safetensors", std::ios::binary);
  uint64_t len = header.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  f.write(len_bytes, 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));

  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  std::vector<uint16_t> buf;
  for (const auto& s : specs) {
    if (!s.required) continue;
    uint64_t n = 1;
    for (auto d : s.shape) n *= static_cast<uint64_t>(d);
    const bool norm_weight = s.shape.size() == 1 && s.name.find("weight") != std::string::npos;
    buf.resize(1 << 20);
    for (uint64_t done = 0; done < n;) {
      const uint64_t k = std::min<uint64_t>(buf.size(), n - done);
      for (uint64_t i = 0; i < k; ++i) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        float u = static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;  // [-0.5, 0.5)
        buf[i] = f32_to_bf16(norm_weight ? 1.0f + 0.2f * u : 0.08f * u);
      }
      f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(k * 2));
      done += k;
    }
  }
  return offset;
}

}  // namespace eyrie::bench
