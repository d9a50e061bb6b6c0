// Load generator: N concurrent WebSocket clients against an in-process `eyrie serve`, with a mix
// of prompt and output lengths. Reports time to first token and time per output token (p50 /
// p99), total tokens/s, and the server's overhead against the same requests run through the
// scheduler and engine alone, without actors or sockets: in total tokens/s, and in time per
// output token (p50 over streams).
//
//   bench_ws_load [--clients N] [--model DIR] [--threads T] [--batch B] [--device cpu|cuda]
//                 [--replicas R] [--server-cpus 0-11 --client-cpus 12-15] [--repeat N]
//
// With --replicas R the server routes over R replicas (on the GPU, devices 0..R-1) and the engine
// alone runs R scheduler-and-engine pairs on their own threads, the jobs dealt out in turn.
//
// With --server-cpus and --client-cpus the server (and the engine alone) and the load generator
// run on separate cores, as clients on other machines would: the overhead then counts the
// server's own work only, not the generator's reads competing with the engine for cores. With
// --repeat the server and the engine alone take turns N times and the medians are reported, as
// single runs swing by several percent. It also reports the CPU time of the server's own
// threads (network, actor runtime) per output token against the engine thread's, from the
// kernel's per-thread accounting: what the server costs, apart from how the threads happened to
// be scheduled. The actor threads also run the scheduler's planning, detokenizing and stop
// matching, which the engine-alone run does as well: its time there (measured) is taken out.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <simdjson.h>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/scheduler.hpp"
#include "eyrie/runtime.hpp"
#include "cuda/cuda_engine.hpp"
#include "model/cpu/cpu_engine.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ws = beast::websocket;
using Clock = std::chrono::steady_clock;

namespace {

struct Job {
  std::string prompt;
  int max_new = 0;
};

// The workload: prompts of 1 to ~60 tokens, outputs of 8 to 64 tokens.
std::vector<Job> workload(int n) {
  const char* words[] = {"falcon", "the", "river", "flows", "under", "a", "stone", "bridge", "at", "dawn"};
  std::vector<Job> jobs;
  for (int i = 0; i < n; ++i) {
    Job j;
    const int len = 1 + (i * 7919) % 60;
    for (int w = 0; w < len; ++w) j.prompt += std::string(w ? " " : "") + words[(i + w * 3) % 10];
    j.max_new = 8 + (i * 104729) % 57;
    jobs.push_back(std::move(j));
  }
  return jobs;
}

struct Stats {
  std::vector<double> ttft_ms, tpot_ms;
  int64_t tokens = 0;
  int errors = 0;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(asio::io_context& io, uint16_t port, Job job, Stats& stats)
      : ws_(asio::make_strand(io)), port_(port), job_(std::move(job)), stats_(stats) {}

  void start() {
    auto self = shared_from_this();
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port_);
    beast::get_lowest_layer(ws_).async_connect(ep, [self](beast::error_code ec) {
      if (ec) return self->fail();
      self->ws_.async_handshake("127.0.0.1", "/ws", [self](beast::error_code ec2) {
        if (ec2) return self->fail();
        self->ready_ = true;
      });
    });
  }
  bool ready() const { return ready_; }

  void go() {
    auto self = shared_from_this();
    asio::post(ws_.get_executor(), [self] {
      self->frame_ = R"({"type":"generate","id":"r","inputs":")" + self->job_.prompt +
                     R"(","parameters":{"max_new_tokens":)" + std::to_string(self->job_.max_new) + "}}";
      self->sent_ = Clock::now();
      self->ws_.async_write(asio::buffer(self->frame_), [self](beast::error_code ec, std::size_t) {
        if (ec) return self->fail();
        self->read();
      });
    });
  }

 private:
  void read() {
    auto self = shared_from_this();
    ws_.async_read(buf_, [self](beast::error_code ec, std::size_t) {
      if (ec) return self->fail();
      const auto now = Clock::now();
      std::string msg = beast::buffers_to_string(self->buf_.data());
      self->buf_.consume(self->buf_.size());
      if (msg.find("\"type\":\"token\"") != std::string::npos) {
        if (self->tokens_ == 0) self->first_ = now;
        ++self->tokens_;
        self->last_ = now;
        return self->read();
      }
      if (msg.find("\"type\":\"done\"") != std::string::npos && self->tokens_ > 0) {
        self->stats_.ttft_ms.push_back(std::chrono::duration<double, std::milli>(self->first_ - self->sent_).count());
        if (self->tokens_ > 1)
          self->stats_.tpot_ms.push_back(std::chrono::duration<double, std::milli>(self->last_ - self->first_).count() /
                                         (self->tokens_ - 1));
        self->stats_.tokens += self->tokens_;
      } else {
        ++self->stats_.errors;
      }
      self->ws_.async_close(ws::close_code::normal, [self](beast::error_code) {});
    });
  }
  void fail() { ++stats_.errors; }

  ws::stream<beast::tcp_stream> ws_;
  uint16_t port_;
  Job job_;
  Stats& stats_;
  beast::flat_buffer buf_;
  std::string frame_;
  bool ready_ = false;
  int tokens_ = 0;
  Clock::time_point sent_, first_, last_;
};

// "0-11" or "3"; empty for none.
std::vector<int> cpu_list(const char* arg) {
  std::vector<int> cpus;
  int lo = 0, hi = 0;
  if (std::sscanf(arg, "%d-%d", &lo, &hi) == 2)
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
  else if (std::sscanf(arg, "%d", &lo) == 1)
    cpus.push_back(lo);
  return cpus;
}

// Pins the calling thread; threads it starts later inherit the set.
void pin(const std::vector<int>& cpus) {
  if (cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
    std::fprintf(stderr, "bench_ws_load: could not pin to the given cpus\n");
}

// CPU time of each of this process's threads so far (schedstat, nanoseconds), summed by
// thread name: the server's own threads against the engine's, free of the scheduling noise
// that moves the wall-clock comparison by several percent between runs.
std::map<std::string, double> cpu_seconds_by_thread_name() {
  std::map<std::string, double> by_name;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm"), sched(task.path() / "schedstat");
    std::string name;
    uint64_t ns = 0;
    if (!std::getline(comm, name) || !(sched >> ns)) continue;
    by_name[name] += static_cast<double>(ns) * 1e-9;
  }
  return by_name;
}

std::map<std::string, double> minus(std::map<std::string, double> after, const std::map<std::string, double>& before) {
  for (const auto& [name, s] : before) after[name] -= s;
  return after;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1) + 0.5))];
}

// The middle value, or the mean of the two middle values of an even count (two runs give their
// mean, not the larger).
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

// Engine steps and the sequences they carried, summed over replicas.
struct StepCount {
  int64_t steps = 0;
  double seqs = 0;
};

// The runtime's batch-size histogram, from its Prometheus text.
StepCount runtime_steps(const eyrie::Runtime& rt) {
  StepCount c;
  std::istringstream in(rt.metrics_text());
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string name;
    double value = 0;
    if (!(fields >> name >> value)) continue;
    if (name == "eyrie_batch_size_count") c.steps = static_cast<int64_t>(value);
    if (name == "eyrie_batch_size_sum") c.seqs = value;
  }
  return c;
}

struct EngineAlone {
  StepCount steps;
  double seconds = 0;
  double tokens_per_s = 0;
  double scheduler_s_per_token = 0;  // planning and completing steps: host work the server's actors do too
  std::vector<double> tpot_ms;  // per request, as the scheduler timed it
};

// The same jobs through the scheduler and engine directly: the work without the server. Jobs
// are dealt out in turn over one scheduler-and-engine pair per replica, each on its own thread
// and (on the GPU) its own device.
EngineAlone engine_alone(const eyrie::RuntimeOptions& o, const std::vector<Job>& jobs, const eyrie::Tokenizer& tok) {
  auto model = eyrie::FalconModel::load(o.model_dir);
  const int replicas = std::max(1, o.replicas);
  std::vector<std::unique_ptr<eyrie::Engine>> engines;
  for (int r = 0; r < replicas; ++r) {
    if (o.device == "cuda")
      engines.push_back(std::make_unique<eyrie::CudaEngine>(
          model, eyrie::CudaEngineOptions{.device = r, .block_size = o.kv_block_size, .kv_tokens = o.kv_cache_tokens,
                                          .max_step_tokens = o.max_step_tokens + o.max_batch_size}));
    else
      engines.push_back(std::make_unique<eyrie::CpuEngine>(
          model, eyrie::CpuEngineOptions{.threads = o.threads_per_replica, .block_size = o.kv_block_size,
                                         .kv_tokens = o.kv_cache_tokens}));
  }
  // As the runtime does before it reports ready.
  for (auto& e : engines) eyrie::warm_up(*e, o.max_batch_size, o.max_step_tokens + o.max_batch_size);
  struct Part {
    int64_t tokens = 0;
    double sched_s = 0;
    StepCount steps;
    std::vector<double> tpot_ms;
  };
  std::vector<Part> parts(replicas);
  auto run = [&](int r) {
    eyrie::Engine& engine = *engines[r];
    Part& part = parts[r];
    eyrie::Scheduler sched(tok, engine.kv_spec(),
                           {.max_running = o.max_batch_size, .max_queue = static_cast<int32_t>(jobs.size()),
                            .max_step_tokens = o.max_step_tokens, .eos_token_id = model->config.eos_token_id,
                            .device_sampling = engine.chooses_tokens()});
    uint64_t id = 1;
    for (std::size_t i = r; i < jobs.size(); i += replicas) {
      eyrie::SeqRequest req;
      req.id = id++;
      req.prompt = tok.encode(jobs[i].prompt);
      req.params.max_new_tokens = jobs[i].max_new;
      sched.submit(std::move(req));
    }
    eyrie::StepBatch batch;
    eyrie::StepOutput out;
    std::vector<eyrie::GenerationEvent> events;
    auto timed = [&](auto&& f) {
      const auto s0 = Clock::now();
      f();
      part.sched_s += std::chrono::duration<double>(Clock::now() - s0).count();
    };
    while (!sched.idle()) {
      events.clear();
      bool planned = false;
      timed([&] { planned = sched.plan(batch, events); });
      if (planned) {
        engine.step(batch, out);
        ++part.steps.steps;
        part.steps.seqs += static_cast<double>(batch.seqs.size());
        timed([&] { sched.complete(out, events); });
      }
      for (auto& e : events) {
        part.tokens += std::holds_alternative<eyrie::TokenEvent>(e);
        if (auto* d = std::get_if<eyrie::DoneEvent>(&e); d && d->completion_tokens > 1)
          part.tpot_ms.push_back(d->timing.tpot_ms);
      }
    }
  };
  std::vector<std::exception_ptr> errors(replicas);
  auto run_caught = [&](int r) {
    try {
      run(r);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  const auto t0 = Clock::now();
  {
    std::vector<std::jthread> threads;
    for (int r = 1; r < replicas; ++r) threads.emplace_back(run_caught, r);
    run_caught(0);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  EngineAlone result;
  int64_t tokens = 0;
  double sched_s = 0;
  for (auto& p : parts) {
    tokens += p.tokens;
    sched_s += p.sched_s;
    result.tpot_ms.insert(result.tpot_ms.end(), p.tpot_ms.begin(), p.tpot_ms.end());
    result.steps.steps += p.steps.steps;
    result.steps.seqs += p.steps.seqs;
  }
  result.seconds = secs;
  result.tokens_per_s = tokens / secs;
  result.scheduler_s_per_token = tokens > 0 ? sched_s / static_cast<double>(tokens) : 0;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 1000, threads = 0, batch = 256, repeat = 1, replicas = 1;
  std::string model = EYRIE_DEFAULT_MODEL, device = "cpu";
  std::vector<int> server_cpus, client_cpus;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--clients")) clients = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--replicas")) replicas = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--repeat")) repeat = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!std::strcmp(argv[i], "--server-cpus")) server_cpus = cpu_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--client-cpus")) client_cpus = cpu_list(argv[i + 1]);
  }
  if (threads == 0 && !server_cpus.empty()) threads = static_cast<int>(server_cpus.size());
  eyrie::RuntimeOptions o;
  o.model_dir = model;
  o.device = device;
  o.replicas = replicas;
  o.threads_per_replica = threads;
  o.max_batch_size = batch;
  o.max_queue = clients;
  o.kv_cache_tokens = static_cast<int64_t>(batch) * 160;
  o.max_step_tokens = 2048;
  const std::vector<Job> jobs = workload(clients);
  std::string generator;  // this thread's name, before any other thread starts
  std::getline(std::ifstream("/proc/self/comm"), generator);

  std::vector<double> overheads, tpot_overheads, server_cpu;
  int errors = 0;
  for (int rep = 0; rep < repeat; ++rep) {
    if (repeat > 1) std::printf("--- run %d of %d\n", rep + 1, repeat);
    pin(server_cpus);
    auto rt = eyrie::Runtime::create(o);
    const uint16_t port = rt->serve("127.0.0.1", 0);
    pin(client_cpus);
    asio::io_context io;
    Stats stats;
    std::vector<std::shared_ptr<Client>> cs;
    for (int i = 0; i < clients; ++i) {
      cs.push_back(std::make_shared<Client>(io, port, jobs[i], stats));
      cs.back()->start();
    }
    // Connect everyone first, so every stream is held open at once.
    while (std::any_of(cs.begin(), cs.end(), [](auto& c) { return !c->ready(); }) && stats.errors == 0)
      io.run_for(std::chrono::milliseconds(10));
    std::printf("connected: %d WebSocket clients (errors %d)\n", clients, stats.errors);
    io.restart();
    const auto cpu0 = cpu_seconds_by_thread_name();
    const StepCount steps0 = runtime_steps(*rt);
    const auto t0 = Clock::now();
    for (auto& c : cs) c->go();
    io.run();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto cpu = minus(cpu_seconds_by_thread_name(), cpu0);
    const double ws_tps = stats.tokens / secs;
    StepCount ws_steps = runtime_steps(*rt);
    ws_steps.steps -= steps0.steps;
    ws_steps.seqs -= steps0.seqs;
    rt->shutdown(std::chrono::milliseconds(0));
    pin(server_cpus);
    EngineAlone alone = engine_alone(rt->options(), jobs, rt->tokenizer());
    const double engine_tps = alone.tokens_per_s;

    std::printf("completed: %zu of %d streams, %lld tokens, errors %d, %.2f s\n", stats.ttft_ms.size(), clients,
                static_cast<long long>(stats.tokens), stats.errors, secs);
    std::printf("ttft_ms: p50 %.1f p99 %.1f\n", percentile(stats.ttft_ms, 0.5), percentile(stats.ttft_ms, 0.99));
    std::printf("tpot_ms: p50 %.2f p99 %.2f\n", percentile(stats.tpot_ms, 0.5), percentile(stats.tpot_ms, 0.99));
    overheads.push_back(100.0 * (1.0 - ws_tps / engine_tps));
    std::printf("throughput: %.0f tok/s through WebSocket, %.0f tok/s engine alone, server overhead %.1f%%\n", ws_tps,
                engine_tps, overheads.back());
    // Fewer sequences per step or slower steps: where a tokens/s gap comes from.
    auto per_step = [&](const StepCount& c, double seconds) {
      return c.steps > 0 ? 1e3 * seconds * o.replicas / static_cast<double>(c.steps) : 0.0;
    };
    std::printf("engine steps: %lld through WebSocket (%.1f sequences, %.2f ms each), %lld alone (%.1f, %.2f ms)\n",
                static_cast<long long>(ws_steps.steps), ws_steps.steps ? ws_steps.seqs / ws_steps.steps : 0.0,
                per_step(ws_steps, secs), static_cast<long long>(alone.steps.steps),
                alone.steps.steps ? alone.steps.seqs / alone.steps.steps : 0.0, per_step(alone.steps, alone.seconds));
    // Per token: the cadence each stream sees once it runs, so admission and the last stragglers
    // weigh as little as they do for a client.
    const double ws_tpot = percentile(stats.tpot_ms, 0.5), alone_tpot = percentile(alone.tpot_ms, 0.5);
    tpot_overheads.push_back(100.0 * (ws_tpot / alone_tpot - 1.0));
    std::printf("time per output token p50: %.2f ms through WebSocket, %.2f ms engine alone, server overhead %.1f%%\n",
                ws_tpot, alone_tpot, tpot_overheads.back());
    // The generator runs on this (main) thread; the engine on its shard workers; the rest is
    // the server: network threads and the actor runtime's (which also run the scheduler).
    double engine_s = 0, server_s = 0;
    std::string parts;
    for (const auto& [name, s] : cpu) {
      if (name == generator) continue;
      if (name == "eyrie.engine" || name == "eyrie.shard") engine_s += s;
      else server_s += s;
      if (s > 0.0005) parts += " " + name + " " + std::to_string(s).substr(0, 5) + " s;";
    }
    if (stats.tokens > 0 && engine_s > 0) {
      const double per_token = server_s / static_cast<double>(stats.tokens);
      // The actor threads' figure includes the scheduler's host work, which the engine-alone
      // run does as well; what is left is the server's own.
      const double own = std::max(0.0, per_token - alone.scheduler_s_per_token);
      const double engine_per_token = engine_s / static_cast<double>(stats.tokens);
      server_cpu.push_back(100.0 * own / engine_per_token);
      std::printf("server threads' CPU: %.1f us per output token (%s ), of which the scheduler's %.1f us; the "
                  "server's own %.1f us is %.1f%% of the engine's %.1f us\n",
                  1e6 * per_token, parts.c_str(), 1e6 * alone.scheduler_s_per_token, 1e6 * own, server_cpu.back(),
                  1e6 * engine_per_token);
    }
    errors += stats.errors;
  }
  if (repeat > 1)
    std::printf("median of %d runs: server overhead %.1f%% in tokens/s, %.1f%% per output token; the server's own "
                "CPU %.1f%% of the engine's\n",
                repeat, median(overheads), median(tpot_overheads), median(server_cpu));
  return errors == 0 ? 0 : 1;
}
