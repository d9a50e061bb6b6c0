// A loaded Falcon checkpoint: config, memory-mapped weights and their bound roles.
#pragma once

#include <memory>
#include <string>

#include "model/falcon_config.hpp"
#include "model/falcon_weights.hpp"
#include "model/safetensors.hpp"

namespace eyrie {

struct FalconModel {
  std::string dir;
  FalconConfig config;
  WeightArchive archive;
  FalconWeights weights;  // views into archive

  // Loads config.json and the safetensors checkpoint of a Hugging Face model directory.
  // Replicas and engines share the returned model; its weights are mapped once.
  static std::shared_ptr<const FalconModel> load(const std::string& dir);
  std::size_t weight_bytes() const;
};

}  // namespace eyrie
