// Logits transforms matching transformers' RepetitionPenalty, Temperature, TopK, TopP and
// Typical processors, each with min_tokens_to_keep = 1.
#include "model/sampling/logits_processors.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>
#include <vector>

namespace eyrie {
namespace {

constexpr float kMasked = -INFINITY;

// Softmax probabilities of the given logits in double.
std::vector<double> softmax(std::span<const float> logits) {
  double mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  std::vector<double> p(logits.size());
  double sum = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(logits[i] - mx);
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history,
                              float penalty) {
  std::unordered_set<int32_t> seen;
  for (int32_t id : history) {
    if (id < 0 || static_cast<std::size_t>(id) >= logits.size() || !seen.insert(id).second) continue;
    float& v = logits[id];
    v = v < 0 ? v * penalty : v / penalty;
  }
}

void apply_temperature(std::span<float> logits, float temperature) {
  for (float& v : logits) v /= temperature;
}

void apply_top_k(std::span<float> logits, int64_t k) {
  if (k <= 0 || static_cast<std::size_t>(k) >= logits.size()) return;
  std::vector<float> tmp(logits.begin(), logits.end());
  std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
  const float kth = tmp[k - 1];
  for (float& v : logits)
    if (v < kth) v = kMasked;
}

void apply_top_p(std::span<float> logits, float p) {
  if (p >= 1.0f) return;
  // Ascending order, as transformers sorts: the tail whose cumulative mass stays within
  // 1 - p is removed, the most likely token always kept. Only the head needs sorting: the
  // values under the m-th largest all come first in that order, and when their mass is within
  // 1 - p they all go, so the head grows until it holds at least mass p.
  const std::size_t n = logits.size();
  std::vector<double> probs = softmax(logits);
  const double cut = 1.0 - static_cast<double>(p);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto desc = [&](int32_t a, int32_t b) { return logits[a] > logits[b]; };
  float threshold = -INFINITY;
  for (std::size_t m = std::min<std::size_t>(n, 64);; m = std::min(n, m * 4)) {
    std::nth_element(order.begin(), order.begin() + (m - 1), order.end(), desc);
    threshold = logits[order[m - 1]];
    double below = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (logits[i] < threshold) below += probs[i];
    if (below <= cut || m == n) break;
  }
  std::vector<int32_t> head;
  double cum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (logits[i] == kMasked) continue;  // no mass, first in the order: removed already
    if (logits[i] >= threshold) {
      head.push_back(static_cast<int32_t>(i));
    } else {
      cum += probs[i];
      logits[i] = kMasked;
    }
  }
  std::stable_sort(head.begin(), head.end(), [&](int32_t a, int32_t b) { return logits[a] < logits[b]; });
  for (std::size_t i = 0; i + 1 < head.size(); ++i) {
    cum += probs[head[i]];
    if (cum <= cut) logits[head[i]] = kMasked;
    else break;
  }
}

void apply_typical_p(std::span<float> logits, float p) {
  if (p >= 1.0f) return;
  std::vector<double> probs = softmax(logits);
  double ent = 0;
  for (double q : probs)
    if (q > 0) ent -= q * std::log(q);
  const std::size_t n = logits.size();
  std::vector<double> shifted(n);
  for (std::size_t i = 0; i < n; ++i)
    shifted[i] = probs[i] > 0 ? std::abs(-std::log(probs[i]) - ent) : INFINITY;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return shifted[a] < shifted[b]; });
  // Cumulative mass in typicality order; keep up to and including the first index where it
  // reaches p, and anything exactly as typical as that token.
  double cum = 0;
  std::size_t last = 0;
  for (std::size_t i = 0; i < n; ++i) {
    cum += probs[order[i]];
    if (cum < static_cast<double>(p)) last = i + 1;
    else break;
  }
  last = std::min(last, n - 1);
  const double limit = shifted[order[last]];
  for (std::size_t i = 1; i < n; ++i)
    if (shifted[order[i]] > limit) logits[order[i]] = kMasked;
}

double log_softmax_at(std::span<const float> logits, int32_t id) {
  double mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(v - mx);
  return logits[id] - mx - std::log(sum);
}

}  // namespace eyrie
