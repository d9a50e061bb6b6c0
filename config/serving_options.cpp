// Option declarations and their three sources.
#include "config/serving_options.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "cuda/cuda_engine.hpp"
#include "model/error.hpp"

extern char** environ;

namespace eyrie {
namespace {

using T = OptionDecl::Type;

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

const OptionDecl* find_decl(const std::string& key) {
  for (const auto& d : serving_option_decls())
    if (d.key == key) return &d;
  return nullptr;
}

void check_value(const OptionDecl& d, const std::string& v, const std::string& where) {
  auto bad = [&](const std::string& what) {
    throw InvalidArgument(where + ": '" + d.key + "' must be " + what + ", got '" + v + "'");
  };
  char* end = nullptr;
  errno = 0;
  switch (d.type) {
    case T::integer:
      std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || errno) bad("an integer");
      break;
    case T::number: {
      double x = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !std::isfinite(x)) bad("a number");
      break;
    }
    case T::boolean:
      if (v != "true" && v != "false") bad("true or false");
      break;
    case T::string:
      break;
  }
}

}  // namespace

const std::vector<OptionDecl>& serving_option_decls() {
  static const std::vector<OptionDecl> decls = {
      {"model_id", T::string, "", "model directory (config.json, tokenizer.json, safetensors)"},
      {"host", T::string, "127.0.0.1", "address to listen on"},
      {"port", T::integer, "8080", "port to listen on (0: any free port)"},
      {"device", T::string, "cpu", "cpu or cuda: where the replicas run"},
      {"dtype", T::string, "auto", "weight type in memory: auto keeps the checkpoint's (bf16, fp16, fp32)"},
      {"activation_precision", T::string, "mixed",
       "cuda: mixed (activations as two bf16 halves; query_key_value's as fp16 halves, or fp16 plus an fp8 rest "
       "in long prompts; the MLP's, dense's and lm_head's as fp16), split (all as bf16 halves, ~fp32 results) or "
       "bf16 (fastest, bf16 rounding)"},
      {"tensor_parallel_degree", T::integer, "1", "shards per replica: GPUs (NCCL), or CPU thread groups"},
      {"peer_sums", T::boolean, "true",
       "cuda, tensor_parallel_degree > 1: small residual sums through the GPUs' peer memory instead of NCCL"},
      {"replicas", T::integer, "0", "model replicas; 0: GPUs / tensor_parallel_degree (1 on the CPU)"},
      {"threads", T::integer, "0", "CPU threads per replica; 0: all threads divided among replicas"},
      {"max_rolling_batch_size", T::integer, "64", "sequences per engine step"},
      {"max_input_len", T::integer, "0", "longest prompt in tokens; 0: max_total_tokens - 1"},
      {"max_total_tokens", T::integer, "0", "prompt + new tokens; 0: the model's context"},
      {"max_new_tokens", T::integer, "100", "default max_new_tokens of a request"},
      {"max_batch_prefill_tokens", T::integer, "512", "prompt tokens per step (chunked prefill)"},
      {"queue_size", T::integer, "256", "waiting requests per replica before HTTP 429"},
      {"kv_cache_tokens", T::integer, "0", "KV cache per replica in tokens; 0: 4 x the context"},
      {"kv_block_size", T::integer, "16", "token positions per KV-cache block"},
      {"shutdown_grace_seconds", T::number, "30", "on SIGINT/SIGTERM, time for in-flight requests"},
      {"rolling_batch", T::string, "auto", "accepted for compatibility; eyrie always batches", true},
      {"entryPoint", T::string, "", "accepted for compatibility; no effect", true},
      {"trust_remote_code", T::boolean, "false", "accepted for compatibility; no effect", true},
  };
  return decls;
}

ServingOptions ServingOptions::resolve(const std::optional<std::string>& path,
                                       const std::map<std::string, std::string>& env,
                                       const std::map<std::string, std::string>& flags) {
  ServingOptions o;
  for (const auto& d : serving_option_decls()) {
    o.values_[d.key] = d.default_value;
    o.sources_[d.key] = "default";
  }
  auto set = [&](const std::string& key, const std::string& value, const std::string& where) {
    const OptionDecl* d = find_decl(key);
    if (!d) throw InvalidArgument(where + ": unknown option '" + key + "'");
    check_value(*d, value, where);
    o.values_[key] = value;
    o.sources_[key] = where;
  };
  if (path) {
    std::ifstream in(*path);
    if (!in) throw InvalidArgument(*path + ": cannot read");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      line = trim(line);
      if (line.empty() || line[0] == '#' || line[0] == '!') continue;
      const auto eq = line.find('=');
      const std::string where = *path + ":" + std::to_string(n);
      if (eq == std::string::npos) throw InvalidArgument(where + ": expected key=value, got '" + line + "'");
      std::string key = trim(line.substr(0, eq));
      const std::string value = trim(line.substr(eq + 1));
      if (key == "engine") continue;  // the seed's engine selector; eyrie is the engine
      if (key.rfind("option.", 0) != 0)
        throw InvalidArgument(where + ": unknown key '" + key + "' (options start with 'option.')");
      set(key.substr(7), value, where);
    }
  }
  for (const auto& d : serving_option_decls()) {
    auto it = env.find("OPTION_" + upper(d.key));
    if (it != env.end()) set(d.key, it->second, "OPTION_" + upper(d.key));
  }
  for (const auto& [flag, value] : flags) {
    std::string key = flag;
    std::replace(key.begin(), key.end(), '-', '_');
    set(key, value, "--" + flag);
  }
  const std::string& device = o.values_["device"];
  if (device != "cpu" && device != "cuda")
    throw InvalidArgument(o.sources_["device"] + ": 'device' must be cpu or cuda, got '" + device + "'");
  const std::string& dtype = o.values_["dtype"];
  if (dtype != "auto" && dtype != "bf16" && dtype != "fp16" && dtype != "fp32")
    throw InvalidArgument(o.sources_["dtype"] + ": 'dtype' must be auto, bf16, fp16 or fp32");
  CudaEngineOptions named_precision;  // the names the CUDA engine takes
  set_activation_precision(named_precision, o.values_["activation_precision"],
                           o.sources_["activation_precision"] + ": 'activation_precision'");
  if (o.integer("tensor_parallel_degree") < 1)
    throw InvalidArgument(o.sources_["tensor_parallel_degree"] + ": 'tensor_parallel_degree' must be at least 1: " +
                          o.values_["tensor_parallel_degree"]);
  for (const char* k : {"max_rolling_batch_size", "max_new_tokens", "max_batch_prefill_tokens",
                        "queue_size", "kv_block_size"})
    if (o.integer(k) <= 0)
      throw InvalidArgument(o.sources_[k] + ": '" + k + "' must be positive: " + o.values_[k]);
  if (o.integer("port") < 0 || o.integer("port") > 65535)
    throw InvalidArgument(o.sources_["port"] + ": 'port' is out of range (0 to 65535, 0: any free port): " +
                          o.values_["port"]);
  for (const char* k : {"replicas", "threads", "max_input_len", "max_total_tokens", "kv_cache_tokens"})
    if (o.integer(k) < 0) throw InvalidArgument(o.sources_[k] + ": '" + k + "' must be >= 0");
  return o;
}

const std::string& ServingOptions::str(const std::string& key) const { return values_.at(key); }
int64_t ServingOptions::integer(const std::string& key) const { return std::strtoll(values_.at(key).c_str(), nullptr, 10); }
double ServingOptions::number(const std::string& key) const { return std::strtod(values_.at(key).c_str(), nullptr); }
bool ServingOptions::boolean(const std::string& key) const { return values_.at(key) == "true"; }
const std::string& ServingOptions::source(const std::string& key) const { return sources_.at(key); }

std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

}  // namespace eyrie
