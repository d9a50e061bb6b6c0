// Server metrics shared by every actor, rendered in the Prometheus text format.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace eyrie {

// Cumulative histogram with fixed upper bounds; observe() is lock-free.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // per bucket, the last one +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micro_{0};  // sum in millionths, to stay lock-free
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& endpoint, int status);
  void add_generated_tokens(int64_t n) { tokens_generated_.fetch_add(n); }
  void add_prompt_tokens(int64_t n) { tokens_prompt_.fetch_add(n); }

  // Gauges published by the schedulers, summed over replicas when rendered.
  void set_replica_state(int replica, int32_t waiting, int32_t running, int32_t kv_used,
                         int32_t kv_total);

  Histogram queue_ms, ttft_ms, tpot_ms, batch_size;

  std::string render() const;

 private:
  struct ReplicaGauges {
    std::atomic<int32_t> waiting{0}, running{0}, kv_used{0}, kv_total{0};
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::array<ReplicaGauges, 64> replicas_;
  std::atomic<int> replica_count_{0};
  std::atomic<int64_t> tokens_generated_{0}, tokens_prompt_{0};
};

}  // namespace eyrie
