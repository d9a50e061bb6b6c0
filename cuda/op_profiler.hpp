// Per-op timing of the CUDA engine's steps (EYRIE_CUDA_PROFILE).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace eyrie::cuda {

// With EYRIE_CUDA_PROFILE set, times each kind of work with events and prints totals at exit,
// decode-only steps apart from steps with prompt rows.
class OpProfiler {
 public:
  OpProfiler() : on_(std::getenv("EYRIE_CUDA_PROFILE") != nullptr) {}
  ~OpProfiler() {
    if (!on_) return;
    for (const auto& [name, ms] : total_) std::fprintf(stderr, "eyrie cuda profile: %-20s %10.2f\n", name.c_str(), ms);
  }
  bool on() const { return on_; }
  void mark(const char* name, cudaStream_t s) {
    if (!on_) return;
    cudaEvent_t e;
    cudaEventCreate(&e);
    cudaEventRecord(e, s);
    marks_.push_back({name, e});
  }
  // After the step's stream has been synchronised.
  void collect(bool decode_step) {
    if (!on_) return;
    const std::string kind = decode_step ? "decode/" : "prefill/";
    ++total_[kind + "steps"];
    for (std::size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second);
      total_[kind + marks_[i].first] += ms;
    }
    for (auto& m : marks_) cudaEventDestroy(m.second);
    marks_.clear();
  }

 private:
  bool on_;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  std::map<std::string, double> total_;
};

}  // namespace eyrie::cuda
