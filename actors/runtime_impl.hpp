// The runtime's internals, shared by the embedding API and the HTTP / WebSocket front end.
#pragma once

#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <optional>

#include "actors/messages.hpp"
#include "actors/metrics.hpp"
#include "eyrie/runtime.hpp"
#include "model/falcon_model.hpp"

namespace eyrie {

namespace net {
class HttpServer;
}

class Runtime::Impl {
 public:
  explicit Impl(const RuntimeOptions& options);
  ~Impl();

  // Validates parameters and tokenizes: a request ready for a scheduler. Throws
  // InvalidArgument with TGI's wording when the prompt or the parameters do not fit.
  SeqRequest prepare(const std::string& prompt, const SamplingParams& params, bool prefill_details,
                     std::optional<int64_t> truncate = std::nullopt);
  uint64_t next_id() { return next_id_.fetch_add(1); }

  RuntimeOptions options;
  std::shared_ptr<const FalconModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::shared_ptr<Metrics> metrics = std::make_shared<Metrics>();
  std::unique_ptr<caf::actor_system_config> caf_config;
  std::unique_ptr<caf::actor_system> system;
  caf::actor router;
  std::vector<caf::actor> workers, schedulers;
  std::unique_ptr<net::HttpServer> server;
  std::atomic<bool> ready{false};  // weights loaded and a warm-up generation done
  // Requests of HTTP and WebSocket sessions whose last frame or response has not yet been handed
  // to its connection: a shutdown closes the connections only once they are (or time is up).
  std::atomic<int64_t> replies_pending{0};

 private:
  std::atomic<uint64_t> next_id_{1};
};

// An actor that forwards one generation's events to callbacks and quits after the last one.
caf::actor spawn_callback_sink(caf::actor_system& sys, GenerationCallbacks callbacks);

}  // namespace eyrie
