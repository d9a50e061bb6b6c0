// Validation of generation parameters.
#include "model/sampling/params.hpp"

#include <cmath>

#include "model/error.hpp"

namespace eyrie {

bool SamplingParams::sampling() const {
  if (temperature && *temperature == 0.0) return false;
  return do_sample || (temperature && *temperature != 1.0) || (top_k && *top_k > 0) ||
         (top_p && *top_p < 1.0) || (typical_p && *typical_p < 1.0);
}

void SamplingParams::validate() const {
  auto bad = [](const std::string& m) { throw InvalidArgument(m); };
  if (temperature && (!std::isfinite(*temperature) || *temperature < 0.0))
    bad("`temperature` must be a finite number >= 0 (0 means greedy)");
  if (top_k && *top_k <= 0) bad("`top_k` must be strictly positive");
  if (top_p && !(*top_p > 0.0 && *top_p < 1.0) && *top_p != 1.0)
    bad("`top_p` must be > 0.0 and <= 1.0");
  if (typical_p && !(*typical_p > 0.0 && *typical_p <= 1.0))
    bad("`typical_p` must be > 0.0 and <= 1.0");
  if (repetition_penalty && !(std::isfinite(*repetition_penalty) && *repetition_penalty > 0.0))
    bad("`repetition_penalty` must be strictly positive");
  if (max_new_tokens <= 0) bad("`max_new_tokens` must be strictly positive");
  for (const auto& s : stop)
    if (s.empty()) bad("`stop` sequences must not be empty");
}

}  // namespace eyrie
