// Storage of per-step logits.
#include "model/step.hpp"

namespace eyrie {

void StepOutput::reset(std::size_t num_seqs, int64_t vocab) {
  vocab_ = vocab;
  logits_.clear();
  lse_.clear();
  argmax_.clear();
  first_.clear();
  count_.clear();
  first_.reserve(num_seqs);
  count_.reserve(num_seqs);
}

float* StepOutput::add_rows(std::size_t n) {
  std::size_t first = first_.empty() ? 0 : first_.back() + count_.back();
  first_.push_back(first);
  count_.push_back(n);
  logits_.resize((first + n) * static_cast<std::size_t>(vocab_));
  lse_.resize(first + n);
  argmax_.resize(first + n);
  return logits_.data() + first * static_cast<std::size_t>(vocab_);
}

std::span<const float> StepOutput::row(std::size_t seq, std::size_t i) const {
  return {logits_.data() + (first_[seq] + i) * static_cast<std::size_t>(vocab_),
          static_cast<std::size_t>(vocab_)};
}

}  // namespace eyrie
