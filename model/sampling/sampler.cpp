// Token choice: repetition penalty, then the warpers in transformers' order, then argmax or a
// draw from the remaining distribution.
#include "model/sampling/sampler.hpp"

#include <algorithm>
#include <climits>
#include <cmath>

#include "model/sampling/logits_processors.hpp"

namespace eyrie {

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed) : params_(params), rng_(seed) {}

bool Sampler::needs_logits() const {
  return params_.sampling() || (params_.repetition_penalty && *params_.repetition_penalty != 1.0);
}

bool Sampler::device_choice(DeviceSampling& d, std::span<const int32_t> history) {
  if (!needs_logits() || (params_.typical_p && *params_.typical_p < 1.0)) return false;
  d = DeviceSampling{};
  if (params_.repetition_penalty) d.repetition_penalty = static_cast<float>(*params_.repetition_penalty);
  d.history = history;
  d.sample = params_.sampling();
  if (!d.sample) return true;
  if (params_.temperature) d.temperature = static_cast<float>(*params_.temperature);
  if (params_.top_k) d.top_k = static_cast<int32_t>(std::min<int64_t>(*params_.top_k, INT32_MAX));
  if (params_.top_p) d.top_p = static_cast<float>(*params_.top_p);
  d.uniform = std::generate_canonical<double, 53>(rng_);
  return true;
}

TokenChoice Sampler::choose(std::span<const float> logits, std::span<const int32_t> history,
                            std::optional<RowInfo> row) {
  auto logprob = [&](int32_t id) {
    return row ? logits[id] - row->logsumexp : static_cast<float>(log_softmax_at(logits, id));
  };
  const bool penalty = params_.repetition_penalty && *params_.repetition_penalty != 1.0;
  if (!params_.sampling() && !penalty) {
    if (row) return {row->argmax, row->max - row->logsumexp};  // the row itself is not needed
    const int32_t id = argmax(logits);
    return {id, logprob(id)};
  }
  work_.assign(logits.begin(), logits.end());
  std::span<float> w(work_);
  if (penalty) apply_repetition_penalty(w, history, static_cast<float>(*params_.repetition_penalty));
  int32_t id;
  if (!params_.sampling()) {
    id = argmax(w);
  } else {
    if (params_.temperature && *params_.temperature != 1.0)
      apply_temperature(w, static_cast<float>(*params_.temperature));
    if (params_.top_k) apply_top_k(w, *params_.top_k);
    if (params_.top_p) apply_top_p(w, static_cast<float>(*params_.top_p));
    if (params_.typical_p) apply_typical_p(w, static_cast<float>(*params_.typical_p));
    const float mx = *std::max_element(w.begin(), w.end());
    double sum = 0;
    for (float& v : w) sum += (v = std::exp(v - mx));
    // One canonical draw per token, as device_choice() makes it.
    const double u = std::generate_canonical<double, 53>(rng_) * sum;
    id = argmax(w);  // fallback when rounding leaves u past the end
    double acc = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      acc += w[i];
      if (w[i] > 0 && u < acc) {
        id = static_cast<int32_t>(i);
        break;
      }
    }
  }
  return {id, logprob(id)};
}

}  // namespace eyrie
