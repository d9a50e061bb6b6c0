// Safetensors files and sharded checkpoints, viewed in place through memory maps.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/dtype.hpp"
#include "model/mapped_file.hpp"

namespace eyrie {

struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::size_t nbytes = 0;
  const std::string* file = nullptr;  // owned by the archive that produced the view

  int64_t numel() const;
  std::string shape_string() const;
};

// All tensors of one checkpoint: a single model.safetensors or the shards named by
// model.safetensors.index.json. Views stay valid while the archive lives.
class WeightArchive {
 public:
  // Parses and validates one safetensors file. Errors name the file and the tensor.
  void add_file(const std::string& path);
  // Opens the checkpoint in a Hugging Face model directory.
  static WeightArchive open_dir(const std::string& dir);

  const TensorView* find(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  std::vector<std::shared_ptr<const MappedFile>> files_;
  std::vector<std::unique_ptr<std::string>> paths_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace eyrie
