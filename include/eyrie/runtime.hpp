// eyrie's embedding API: load a Falcon model, submit generations with per-token callbacks,
// cancel them, read stats, and optionally serve the HTTP and WebSocket API from the same runtime.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "actors/request.hpp"
#include "model/falcon_config.hpp"
#include "model/sampling/params.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {

struct RuntimeOptions {
  std::string model_dir;
  std::string device = "cpu";       // "cpu" or "cuda" (one replica per GPU by default)
  int replicas = 0;                 // 0: 1 on the CPU, GPUs / tensor_parallel_degree; each its own KV cache
  int tensor_parallel_degree = 1;   // shards per replica: GPUs on cuda, thread groups on the CPU
  int threads_per_replica = 0;      // 0: the machine's threads divided among replicas (options() says how many)
  int64_t kv_cache_tokens = 0;      // per replica; 0: 4 x the model's context
  int32_t kv_block_size = 16;
  int32_t max_batch_size = 64;      // sequences per step
  int32_t max_queue = 256;          // waiting requests per replica before "overloaded"
  int32_t max_step_tokens = 512;    // prefill tokens per step
  int64_t max_input_tokens = 0;     // 0: context - 1
  int64_t max_total_tokens = 0;     // prompt + new tokens; 0: the model's context
  int64_t default_max_new_tokens = 100;
  // cuda: "split" feeds GEMMs and attention two bf16 halves per activation (about fp32
  // results); "mixed" does too but for the MLP's, dense's and lm_head's products, on fp16
  // activations (one product instead of two for most of the work, within the reference
  // fixtures' 3e-2), and query_key_value's, on fp16 halves or, in long prompts, fp16 rows plus
  // an fp8 product of their rests; "bf16" rounds activations to bf16 as other servers do: the
  // fastest where compute bound (long prompts, large batches). The CPU computes in fp32 either
  // way.
  std::string activation_precision = "mixed";
  // cuda, tensor_parallel_degree > 1: where a replica's GPUs reach each other's memory, decode
  // steps' residual sums are read from the peers' memory in one kernel per layer instead of
  // going through NCCL (batch-1 decode 3-4% faster on two H200s); false: NCCL throughout.
  bool peer_sums = true;
  // cuda: called from the loading threads during create() as weights go to the GPUs, with the
  // bytes queued so far and the total over all GPUs; not kept afterwards.
  std::function<void(std::size_t done, std::size_t total)> on_upload_progress;
};

struct GenerationCallbacks {
  std::function<void(const TokenEvent&)> on_token;  // called on a runtime thread
  std::function<void(const DoneEvent&)> on_done;    // called once, last
};

struct RuntimeStats {
  int32_t waiting = 0;
  int32_t running = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
};

class Runtime {
 public:
  // Loads the model and starts the replicas. Throws eyrie::Error naming what failed.
  static std::unique_ptr<Runtime> create(const RuntimeOptions& options);
  ~Runtime();

  // Tokenizes, validates and queues a generation. Throws InvalidArgument (bad parameters,
  // prompt too long) or Overloaded (queue full). Returns the id to cancel it with.
  uint64_t submit(const std::string& prompt, const SamplingParams& params,
                  GenerationCallbacks callbacks, bool prefill_details = false);
  // Stops a generation; its on_done follows with reason `cancelled`. Unknown ids are ignored.
  void cancel(uint64_t id);
  RuntimeStats stats() const;
  const FalconConfig& config() const;
  const Tokenizer& tokenizer() const;
  const RuntimeOptions& options() const;

  // Serves the HTTP / WebSocket API on host:port (0: any free port) and returns the bound
  // port. Non-blocking. Throws eyrie::Error if the address cannot be bound.
  uint16_t serve(const std::string& host, uint16_t port);
  // Stops accepting, lets in-flight requests finish for up to `grace`, cancels the rest.
  void shutdown(std::chrono::milliseconds grace);
  // Metrics in the Prometheus text format.
  std::string metrics_text() const;

  class Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace eyrie
