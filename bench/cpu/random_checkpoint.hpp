// Writes a Falcon-shaped checkpoint with random bf16 weights, for benchmarks at real sizes.
#pragma once

#include <string>

namespace eyrie::bench {

// Writes config.json and model.safetensors into dir (created if needed) for the given
// config.json text; returns the bytes of weights written.
std::size_t write_random_checkpoint(const std::string& dir, const std::string& config_json,
                                    uint64_t seed = 1);

}  // namespace eyrie::bench
