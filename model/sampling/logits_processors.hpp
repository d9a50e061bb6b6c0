// In-place logits transforms with transformers' semantics (masked entries become -inf).
#pragma once

#include <cstdint>
#include <span>

namespace eyrie {

// Divides positive logits of every token seen in history by penalty, multiplies negative ones.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history,
                              float penalty);
void apply_temperature(std::span<float> logits, float temperature);
// Keeps every logit >= the k-th largest (ties at the boundary are kept).
void apply_top_k(std::span<float> logits, int64_t k);
// Keeps the smallest set of most likely tokens whose probability reaches p.
void apply_top_p(std::span<float> logits, float p);
// Locally typical sampling: keeps tokens whose surprise is closest to the entropy, mass p.
void apply_typical_p(std::span<float> logits, float p);

// log_softmax(logits)[id], computed in double.
double log_softmax_at(std::span<const float> logits, int32_t id);

}  // namespace eyrie
