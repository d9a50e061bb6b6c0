// eyrie serve: the HTTP / WebSocket server over a runtime, until SIGINT or SIGTERM.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "config/serving_options.hpp"
#include "eyrie/runtime.hpp"
#include "model/falcon_model.hpp"
#include "tools/eyrie/commands.hpp"
#include "tools/eyrie/options.hpp"
#include "tools/eyrie/progress_bar.hpp"

namespace eyrie::cli {
namespace {

std::vector<OptionSpec> serve_specs() {
  std::vector<OptionSpec> specs = {
      {"config", "FILE", "serving.properties to read (option.<key>=value lines)"},
      {"model", "DIR", "model directory (same as --model-id; default: the bundled model)"},
  };
  for (const auto& d : serving_option_decls()) {
    std::string flag = d.key;
    for (char& c : flag)
      if (c == '_') c = '-';
    std::string value = d.type == OptionDecl::Type::boolean ? "true|false"
                        : d.type == OptionDecl::Type::string ? "S"
                                                              : "N";
    specs.push_back({flag, value,
                     d.help + (d.default_value.empty() ? "" : " (default " + d.default_value + ")")});
  }
  specs.push_back({"help", "", "show this help"});
  return specs;
}

// Reads every page of the weights once so the first requests do not wait on the disk; shows
// progress when stderr is a terminal. Checks option.dtype against the checkpoint on the way.
void page_in(const std::string& dir, const ServingOptions& o) {
  auto model = FalconModel::load(dir);
  const std::string dtype = o.str("dtype");
  const DType stored = model->weights.word_embeddings->dtype;
  const char* stored_name = stored == DType::bf16 ? "bf16" : stored == DType::f16 ? "fp16" : "fp32";
  if (dtype != "auto" && dtype != stored_name)
    throw InvalidArgument(o.source("dtype") + ": 'dtype' is " + dtype + " but the checkpoint holds " +
                          stored_name + " weights; the CPU engine uses them as stored (set auto)");
  const std::size_t total = model->weight_bytes();
  ProgressBar bar("reading weights");
  std::size_t done = 0;
  volatile uint8_t sink = 0;
  for (const auto& [name, t] : model->archive.tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    for (std::size_t off = 0; off < t.nbytes; off += 4096) sink = sink + p[off];
    done += t.nbytes;
    bar.update(done, total);
  }
}

}  // namespace

int serve_command(std::span<char*> args) {
  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  const std::vector<OptionSpec> specs = serve_specs();
  ParsedArgs a = parse_options(specs, args);
  if (a.has("help")) {
    std::fputs(usage("eyrie serve [--model DIR] [--config serving.properties] [options]",
                     "Serves the TGI, SageMaker and WebSocket APIs. Settings come from the config "
                     "file, then OPTION_<KEY> environment variables, then these flags.",
                     specs).c_str(),
               stdout);
    return 0;
  }
  std::map<std::string, std::string> flags;
  for (const auto& s : specs) {
    if (s.name == "config" || s.name == "help") continue;
    if (auto v = a.get(s.name)) flags[s.name == "model" ? "model-id" : s.name] = *v;
  }
  ServingOptions o = ServingOptions::resolve(a.get("config"), current_environment(), flags);

  RuntimeOptions ro;
  ro.model_dir = o.str("model_id").empty() ? default_model_dir() : o.str("model_id");
  ro.device = o.str("device");
  ro.activation_precision = o.str("activation_precision");
  ro.peer_sums = o.boolean("peer_sums");
  ro.replicas = static_cast<int>(o.integer("replicas"));
  ro.tensor_parallel_degree = static_cast<int>(o.integer("tensor_parallel_degree"));
  ro.threads_per_replica = static_cast<int>(o.integer("threads"));
  ro.kv_cache_tokens = o.integer("kv_cache_tokens");
  ro.kv_block_size = static_cast<int32_t>(o.integer("kv_block_size"));
  ro.max_batch_size = static_cast<int32_t>(o.integer("max_rolling_batch_size"));
  ro.max_queue = static_cast<int32_t>(o.integer("queue_size"));
  ro.max_step_tokens = static_cast<int32_t>(o.integer("max_batch_prefill_tokens"));
  ro.max_input_tokens = o.integer("max_input_len");
  ro.max_total_tokens = o.integer("max_total_tokens");
  ro.default_max_new_tokens = o.integer("max_new_tokens");

  const auto t0 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "eyrie: loading %s (model_id from %s)\n", ro.model_dir.c_str(), o.source("model_id").c_str());
  page_in(ro.model_dir, o);
  std::unique_ptr<Runtime> rt;
  {
    ProgressBar upload("uploading weights to the GPUs");
    if (ro.device == "cuda") ro.on_upload_progress = [&upload](std::size_t d, std::size_t t) { upload.update(d, t); };
    rt = Runtime::create(ro);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "eyrie: %s\n", rt->config().describe().c_str());
  std::fprintf(stderr, "eyrie: %d %s replica(s) of %d shard(s), max batch %d, KV block %d tokens, context %lld; ready in %.2f s\n",
               rt->options().replicas, ro.device.c_str(), ro.tensor_parallel_degree, ro.max_batch_size, ro.kv_block_size,
               static_cast<long long>(rt->options().max_total_tokens), secs);
  const uint16_t port = rt->serve(o.str("host"), static_cast<uint16_t>(o.integer("port")));
  std::fprintf(stderr, "eyrie: listening on http://%s:%u (WebSocket at /ws)\n", o.str("host").c_str(), port);

  int sig = 0;
  sigwait(&sigs, &sig);
  const double grace = o.number("shutdown_grace_seconds");
  std::fprintf(stderr, "eyrie: %s received; finishing in-flight requests (up to %.0f s)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
  rt->shutdown(std::chrono::milliseconds(static_cast<int64_t>(grace * 1000)));
  std::fprintf(stderr, "eyrie: stopped\n");
  return 0;
}

}  // namespace eyrie::cli
