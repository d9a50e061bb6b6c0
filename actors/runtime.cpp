// Runtime construction, submission through the router, stats and shutdown.
#include <algorithm>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "actors/load_progress.hpp"
#include "actors/replica_actors.hpp"
#include "actors/runtime_impl.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/nccl_communicator.hpp"
#include "model/cpu/cpu_engine.hpp"
#include "model/error.hpp"
#include "model/parallel/shard_group.hpp"
#include "model/parallel/shard_plan.hpp"
#include "net/http_server.hpp"

namespace eyrie {

namespace {

std::vector<int> gpu_range(int first, int count) {
  std::vector<int> v(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) v[static_cast<std::size_t>(i)] = first + i;
  return v;
}

// One thread per replica, so that loading takes as long as one replica's upload. A replica's
// tensor-parallel shards load one after another: each holds a host copy of its cut of the
// checkpoint while it uploads, and all of them at once would be a copy of the whole model.
// Progress is summed over the GPUs (LoadProgress).
// Each replica then runs its warm-up (eyrie::warm_up) up to max_batch sequences, its shards
// stepping together.
std::vector<std::shared_ptr<Engine>> load_gpu_engines(const std::shared_ptr<const FalconModel>& model,
                                                      std::vector<CudaEngineOptions> opts,
                                                      const std::vector<std::shared_ptr<Communicator>>& comms,
                                                      std::size_t degree, int32_t max_batch,
                                                      const std::function<void(std::size_t, std::size_t)>& progress) {
  const std::size_t n = opts.size(), replicas = n / degree;
  std::mutex mu;
  LoadProgress sum(n, degree);
  if (progress) {
    for (std::size_t i = 0; i < n; ++i) {
      opts[i].upload_progress = [&, i](std::size_t d, std::size_t t) {
        std::lock_guard lock(mu);
        if (auto all = sum.update(i, d, t)) progress(all->first, all->second);
      };
    }
  }
  std::vector<std::shared_ptr<Engine>> engines(n);
  std::vector<std::exception_ptr> errors(replicas);
  std::vector<std::thread> threads;
  threads.reserve(replicas);
  try {
    for (std::size_t r = 0; r < replicas; ++r) {
      threads.emplace_back([&, r] {
        try {
          for (std::size_t i = r * degree; i < (r + 1) * degree; ++i)
            engines[i] = std::make_shared<CudaEngine>(model, opts[i], comms[i]);
          if (degree == 1) {
            warm_up(*engines[r], max_batch, opts[r].max_step_tokens);
          } else {
            const auto first = static_cast<std::ptrdiff_t>(r * degree), last = first + static_cast<std::ptrdiff_t>(degree);
            ShardGroup group({engines.begin() + first, engines.begin() + last},
                             {comms.begin() + first, comms.begin() + last});
            warm_up(group, max_batch, opts[first].max_step_tokens);
          }
        } catch (...) {
          errors[r] = std::current_exception();
        }
      });
    }
  } catch (...) {
    for (auto& t : threads) t.join();  // a thread that could not start: the others still finish
    throw;
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return engines;
}

}  // namespace

Runtime::Impl::Impl(const RuntimeOptions& opt) : options(opt) {
  if (options.device != "cpu" && options.device != "cuda")
    throw InvalidArgument("device must be cpu or cuda, got '" + options.device + "'");
  const bool gpu = options.device == "cuda";
  const int gpus = gpu ? cuda_device_count() : 0;
  if (gpu && gpus == 0)
    throw InvalidArgument(EYRIE_HAS_CUDA ? "device is cuda but no GPU is visible"
                                         : "device is cuda but this eyrie was built without the CUDA backend");
  if (options.replicas < 0) throw InvalidArgument("replicas must be >= 0");
  CudaEngineOptions named_precision;  // checks the name before anything loads
  set_activation_precision(named_precision, options.activation_precision, "activation_precision");
  const int degree = options.tensor_parallel_degree;
  if (degree < 1) throw InvalidArgument("tensor_parallel_degree must be at least 1, got " + std::to_string(degree));
  if (gpu && degree > gpus)
    throw InvalidArgument("tensor_parallel_degree " + std::to_string(degree) + " needs " + std::to_string(degree) +
                          " GPUs; " + std::to_string(gpus) + " visible");
  if (options.replicas == 0) options.replicas = gpu ? gpus / degree : 1;
  if (gpu && options.replicas * degree > gpus)
    throw InvalidArgument(std::to_string(options.replicas) + " replicas of tensor_parallel_degree " +
                          std::to_string(degree) + " need " + std::to_string(options.replicas * degree) +
                          " GPUs; " + std::to_string(gpus) + " visible");
  model = FalconModel::load(options.model_dir);
  // Before any engine is built: a model that cannot be cut this way says so at once.
  ShardPlan::make(model->config, degree, 0);
  tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_file(options.model_dir + "/tokenizer.json"));
  const int64_t context = model->config.max_position_embeddings;
  if (options.max_total_tokens <= 0) options.max_total_tokens = context;
  if (options.max_input_tokens <= 0) options.max_input_tokens = options.max_total_tokens - 1;
  if (options.max_input_tokens >= options.max_total_tokens)
    throw InvalidArgument("max_input_tokens (" + std::to_string(options.max_input_tokens) +
                          ") must be below max_total_tokens (" +
                          std::to_string(options.max_total_tokens) + ")");

  caf_config = std::make_unique<caf::actor_system_config>();
  // Actors only relay messages; the cores belong to the engines. A few scheduler threads that
  // go to sleep as soon as their queues run dry keep CAF from taking cycles the engine's threads
  // are waiting for: a sleeping worker is woken when work arrives, while each of the moderate
  // phase's 50 us naps is a wake-up of its own. Skipping that phase took the server's CPU per
  // streamed token from 17.7-18.7 to 16.4-16.6 us at 1,000 streams, and with 4 streams the time
  // per output token from 35-61% over the engine alone to 11-19% (bench_ws_load, server and
  // engine sharing one core of the development machine).
  const auto hw = static_cast<std::size_t>(std::max(1u, std::thread::hardware_concurrency()));
  caf_config->set("scheduler.max-threads", std::clamp<std::size_t>(hw / 8, 2, 4));
  caf_config->set("work-stealing.aggressive-poll-attempts", std::size_t{2});
  caf_config->set("work-stealing.moderate-poll-attempts", std::size_t{0});
  system = std::make_unique<caf::actor_system>(*caf_config);
  // Shutdown cancels every request first; a session still waiting then must not block exit.
  system->await_actors_before_shutdown(false);
  router = spawn_router(*system);
  if (options.replicas < 1) options.replicas = 1;
  // Resolved here, as replicas are, so that options() says what the replicas were given.
  if (options.threads_per_replica <= 0)
    options.threads_per_replica =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / options.replicas);
  const int shard_threads = std::max(1, options.threads_per_replica / degree);
  SchedulerOptions so;
  so.max_running = options.max_batch_size;
  so.max_queue = options.max_queue;
  so.max_step_tokens = options.max_step_tokens;
  so.eos_token_id = model->config.eos_token_id;
  std::vector<std::vector<std::shared_ptr<Communicator>>> comms(options.replicas);
  std::vector<std::shared_ptr<cuda::PeerExchange>> exchanges(options.replicas);
  for (int r = 0; r < options.replicas; ++r) {
    if (degree == 1) {
      comms[r].push_back(nullptr);
    } else if (gpu) {
      comms[r] = make_nccl_group(gpu_range(r * degree, degree));
      if (options.peer_sums) exchanges[r] = make_peer_exchange(gpu_range(r * degree, degree));
    } else {
      comms[r] = make_in_process_group(degree);
    }
  }
  std::vector<std::vector<std::shared_ptr<Engine>>> shards(options.replicas);
  if (gpu) {
    std::vector<CudaEngineOptions> cos;
    std::vector<std::shared_ptr<Communicator>> flat_comms;
    for (int r = 0; r < options.replicas; ++r) {
      for (int k = 0; k < degree; ++k) {
        CudaEngineOptions co;
        co.device = r * degree + k;
        co.peer_exchange = exchanges[r];
        co.block_size = options.kv_block_size;
        co.kv_tokens = options.kv_cache_tokens;
        co.max_step_tokens = std::max<int64_t>(options.max_step_tokens + options.max_batch_size, 256);
        set_activation_precision(co, options.activation_precision, "activation_precision");
        // Replicas load at the same time; their staging threads share the machine's.
        co.upload_threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()) / options.replicas, 1, 8);
        cos.push_back(std::move(co));
        flat_comms.push_back(comms[r][k]);
      }
    }
    auto engines = load_gpu_engines(model, std::move(cos), flat_comms, static_cast<std::size_t>(degree),
                                    static_cast<int32_t>(options.max_batch_size), options.on_upload_progress);
    // The callback may point at the caller's stack; options() hands these options out later.
    options.on_upload_progress = nullptr;
    for (int r = 0; r < options.replicas; ++r)
      shards[r].assign(engines.begin() + r * degree, engines.begin() + (r + 1) * degree);
  } else {
    for (int r = 0; r < options.replicas; ++r) {
      for (int k = 0; k < degree; ++k) {
        CpuEngineOptions eo;
        eo.threads = shard_threads;
        eo.block_size = options.kv_block_size;
        eo.kv_tokens = options.kv_cache_tokens;
        shards[r].push_back(std::make_shared<CpuEngine>(model, eo, comms[r][k]));
      }
    }
  }
  for (int r = 0; r < options.replicas; ++r) {
    const KvCacheSpec kv = smallest_kv_spec(shards[r]);
    so.device_sampling = shards[r].front()->chooses_tokens();
    auto group = spawn_shard_workers(*system, shards[r], comms[r]);
    workers.insert(workers.end(), group.begin(), group.end());
    schedulers.push_back(spawn_scheduler(*system, group.front(), router, r, *tokenizer, kv, so, metrics));
  }
  set_router_replicas(router, schedulers);
}

Runtime::Impl::~Impl() {
  for (auto& a : schedulers) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : workers) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
}

SeqRequest Runtime::Impl::prepare(const std::string& prompt, const SamplingParams& params,
                                  bool prefill_details, std::optional<int64_t> truncate) {
  params.validate();
  SeqRequest r;
  r.id = next_id();
  r.params = params;
  r.prefill_details = prefill_details;
  r.prompt = tokenizer->encode(prompt);
  if (truncate && static_cast<int64_t>(r.prompt.size()) > *truncate)
    r.prompt.erase(r.prompt.begin(), r.prompt.end() - *truncate);
  const auto n = static_cast<int64_t>(r.prompt.size());
  if (n == 0) throw InvalidArgument("`inputs` cannot be empty");
  if (n > options.max_input_tokens)
    throw InvalidArgument("`inputs` must have at most " + std::to_string(options.max_input_tokens) +
                          " tokens; given: " + std::to_string(n) + " tokens");
  if (n + params.max_new_tokens > options.max_total_tokens)
    throw InvalidArgument("`inputs` tokens + `max_new_tokens` must be <= " +
                          std::to_string(options.max_total_tokens) + "; given: " +
                          std::to_string(n) + " `inputs` tokens and " +
                          std::to_string(params.max_new_tokens) + " `max_new_tokens`");
  return r;
}

caf::actor spawn_callback_sink(caf::actor_system& sys, GenerationCallbacks cb) {
  return sys.spawn([cb = std::move(cb)](caf::event_based_actor* self) -> caf::behavior {
    return {
        [cb](TokenEvent& t) {
          if (cb.on_token) cb.on_token(t);
        },
        [self, cb](DoneEvent& d) {
          if (cb.on_done) cb.on_done(d);
          self->quit();
        },
    };
  });
}

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() {
  if (impl_) shutdown(std::chrono::milliseconds(0));
}

std::unique_ptr<Runtime> Runtime::create(const RuntimeOptions& options) {
  std::unique_ptr<Runtime> rt(new Runtime(std::make_unique<Impl>(options)));
  // One short generation on every replica before reporting ready: it touches the weights and
  // exercises the whole path once.
  std::vector<std::future<void>> warm;
  for (int r = 0; r < rt->impl_->options.replicas; ++r) {
    auto done = std::make_shared<std::promise<void>>();
    warm.push_back(done->get_future());
    SamplingParams p;
    p.max_new_tokens = 2;
    rt->submit("Hello", p, {nullptr, [done](const DoneEvent&) { done->set_value(); }});
  }
  for (auto& f : warm) f.wait();
  rt->impl_->ready = true;
  return rt;
}

uint64_t Runtime::submit(const std::string& prompt, const SamplingParams& params,
                         GenerationCallbacks callbacks, bool prefill_details) {
  SeqRequest req = impl_->prepare(prompt, params, prefill_details);
  const uint64_t id = req.id;
  caf::actor sink = spawn_callback_sink(*impl_->system, std::move(callbacks));
  caf::scoped_actor self{*impl_->system};
  SubmitReply reply{500, "internal", "no reply from the router"};
  self->request(impl_->router, caf::infinite, submit_atom_v, std::move(req), sink)
      .receive([&](SubmitReply& r) { reply = std::move(r); },
               [&](caf::error& e) { reply = {500, "internal", impl_->system->render(e)}; });
  if (reply.status != 200) {
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
    if (reply.status == 429) throw Overloaded(reply.message);
    if (reply.status == 422) throw InvalidArgument(reply.message);
    throw Error(reply.message);
  }
  return id;
}

void Runtime::cancel(uint64_t id) { caf::anon_send(impl_->router, cancel_atom_v, id); }

RuntimeStats Runtime::stats() const {
  RuntimeStats out;
  caf::scoped_actor self{*impl_->system};
  for (auto& s : impl_->schedulers)
    self->request(s, caf::infinite, stats_atom_v)
        .receive(
            [&](SchedulerStats& st) {
              out.waiting += st.waiting;
              out.running += st.running;
              out.kv_blocks_used += st.kv_blocks_used;
              out.kv_blocks_total += st.kv_blocks_total;
            },
            [&](caf::error&) {});
  return out;
}

const FalconConfig& Runtime::config() const { return impl_->model->config; }
const Tokenizer& Runtime::tokenizer() const { return *impl_->tokenizer; }
const RuntimeOptions& Runtime::options() const { return impl_->options; }
std::string Runtime::metrics_text() const { return impl_->metrics->render(); }

}  // namespace eyrie
