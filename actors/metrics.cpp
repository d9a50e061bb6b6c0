// Metric storage and Prometheus exposition.
#include "actors/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace eyrie {
namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(static_cast<uint64_t>(std::llround(std::max(0.0, v) * 1e6)),
                       std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cum = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i].load(std::memory_order_relaxed);
    out += name + "_bucket{le=\"" + (i < bounds_.size() ? num(bounds_[i]) : std::string("+Inf")) +
           "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_sum " + num(static_cast<double>(sum_micro_.load()) / 1e6) + "\n";
  out += name + "_count " + std::to_string(count_.load()) + "\n";
}

Metrics::Metrics()
    : queue_ms({1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}),
      ttft_ms({5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}),
      tpot_ms({1, 2, 5, 10, 20, 35, 50, 75, 100, 200, 500, 1000}),
      batch_size({1, 2, 4, 8, 16, 32, 64, 128, 256}) {}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::set_replica_state(int replica, int32_t waiting, int32_t running, int32_t kv_used,
                                int32_t kv_total) {
  if (replica < 0 || replica >= static_cast<int>(replicas_.size())) return;
  auto& r = replicas_[replica];
  r.waiting = waiting;
  r.running = running;
  r.kv_used = kv_used;
  r.kv_total = kv_total;
  int seen = replica_count_.load();
  while (replica + 1 > seen && !replica_count_.compare_exchange_weak(seen, replica + 1)) {
  }
}

std::string Metrics::render() const {
  std::string out;
  out += "# HELP eyrie_requests_total Requests by endpoint and HTTP status.\n"
         "# TYPE eyrie_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : requests_)
      out += "eyrie_requests_total{endpoint=\"" + key.first + "\",status=\"" +
             std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  int32_t waiting = 0, running = 0, used = 0, total = 0;
  for (int i = 0; i < replica_count_.load(); ++i) {
    waiting += replicas_[i].waiting;
    running += replicas_[i].running;
    used += replicas_[i].kv_used;
    total += replicas_[i].kv_total;
  }
  auto gauge = [&](const char* name, const char* help, int64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
           std::to_string(v) + "\n";
  };
  gauge("eyrie_queue_depth", "Requests waiting for admission.", waiting);
  gauge("eyrie_running_sequences", "Sequences in the running batch.", running);
  gauge("eyrie_kv_blocks_used", "KV-cache blocks in use.", used);
  gauge("eyrie_kv_blocks_total", "KV-cache blocks in all.", total);
  out += "# HELP eyrie_generated_tokens_total Tokens generated.\n"
         "# TYPE eyrie_generated_tokens_total counter\neyrie_generated_tokens_total " +
         std::to_string(tokens_generated_.load()) + "\n";
  out += "# HELP eyrie_prompt_tokens_total Prompt tokens processed.\n"
         "# TYPE eyrie_prompt_tokens_total counter\neyrie_prompt_tokens_total " +
         std::to_string(tokens_prompt_.load()) + "\n";
  queue_ms.render(out, "eyrie_queue_time_ms", "Time from arrival to the first scheduled step.");
  ttft_ms.render(out, "eyrie_time_to_first_token_ms", "Time from arrival to the first token.");
  tpot_ms.render(out, "eyrie_time_per_output_token_ms", "Mean time between later tokens.");
  batch_size.render(out, "eyrie_batch_size", "Sequences per engine step.");
  return out;
}

}  // namespace eyrie
