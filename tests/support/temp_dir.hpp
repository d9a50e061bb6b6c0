// Scratch directories and file writers for tests that feed bad input to the loaders.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace eyrie::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  void write(const std::string& name, const std::string& bytes) const;

 private:
  std::filesystem::path path_;
};

struct RawTensor {
  std::string name;
  std::string dtype;  // "BF16", "F16", "F32", or anything to provoke an error
  std::vector<int64_t> shape;
  std::string bytes;
};

// A safetensors file image: 8-byte header length, JSON header, then the tensor bytes.
std::string safetensors_image(const std::vector<RawTensor>& tensors);
std::string bf16_bytes(const std::vector<float>& values);

std::string test_data(const std::string& relative);

}  // namespace eyrie::test
