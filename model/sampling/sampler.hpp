// Chooses the next token of one sequence from its logits: greedy or seeded sampling.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "model/sampling/params.hpp"
#include "model/step.hpp"

namespace eyrie {

struct TokenChoice {
  int32_t id = 0;
  // log_softmax of the unprocessed logits at the chosen id.
  float logprob = 0.f;
};

class Sampler {
 public:
  // The seed is the request's or, when it has none, one drawn by the caller and reported back.
  Sampler(const SamplingParams& params, uint64_t seed);
  // history: every token of the sequence so far, prompt included (repetition penalty).
  // Row statistics from the engine, when it has them.
  struct RowInfo {
    float logsumexp;
    int32_t argmax;
    float max;
  };
  TokenChoice choose(std::span<const float> logits, std::span<const int32_t> history,
                     std::optional<RowInfo> row = std::nullopt);
  // Whether choose() reads the logits row itself (sampling or a repetition penalty).
  bool needs_logits() const;
  // Fills `d` so that an engine can make choose()'s choice where the logits are, drawing this
  // token's uniform now (the same draw choose() would make). False when the parameters need
  // the host (typical_p), or the row is not needed at all: then choose() is called as before.
  bool device_choice(DeviceSampling& d, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
};

// argmax with the lowest index winning ties, as torch.argmax does.
int32_t argmax(std::span<const float> logits);

}  // namespace eyrie
