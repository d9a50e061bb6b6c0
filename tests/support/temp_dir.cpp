// Test scratch space and safetensors images.
#include "tests/support/temp_dir.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "model/dtype.hpp"

namespace eyrie::test {

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("eyrie-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void TempDir::write(const std::string& name, const std::string& bytes) const {
  std::ofstream f(path_ / name, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string safetensors_image(const std::vector<RawTensor>& tensors) {
  std::string header = "{";
  std::string data;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (i) header += ',';
    header.append("\"").append(t.name).append("\":{\"dtype\":\"").append(t.dtype);
    header.append("\",\"shape\":[");
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d) header += ',';
      header += std::to_string(t.shape[d]);
    }
    header.append("],\"data_offsets\":[").append(std::to_string(data.size())).append(",");
    header.append(std::to_string(data.size() + t.bytes.size())).append("]}");
    data += t.bytes;
  }
  header += "}";
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string bf16_bytes(const std::vector<float>& values) {
  std::string out;
  for (float v : values) {
    uint16_t b = f32_to_bf16(v);
    out.push_back(static_cast<char>(b & 0xff));
    out.push_back(static_cast<char>(b >> 8));
  }
  return out;
}

std::string test_data(const std::string& relative) {
  // EYRIE_TEST_DATA in the environment lets the binary run from another checkout (GPU machine).
  const char* env = std::getenv("EYRIE_TEST_DATA");
  return std::string(env ? env : EYRIE_TEST_DATA) + "/" + relative;
}

}  // namespace eyrie::test
