// Worker, scheduler and router actors: each turns messages into calls on a plain class.
#include "actors/replica_actors.hpp"

#include <pthread.h>

#include <iostream>
#include <unordered_map>

#include "actors/messages.hpp"
#include "actors/router_policy.hpp"
#include "model/error.hpp"
#include "model/parallel/shard_step.hpp"

namespace eyrie {

namespace {

// Shard workers run steps on threads of their own; a name tells them apart from the actor
// runtime's threads in top, perf and the load generator's accounting.
void name_this_thread(const char* name) {
  thread_local bool named = false;
  if (named) return;
  pthread_setname_np(pthread_self(), name);
  named = true;
}

// Ranks 1..n-1: run their share of each step handed to them, and say how it went.
caf::actor spawn_peer_shard(caf::actor_system& sys, std::shared_ptr<Engine> engine,
                            std::shared_ptr<Communicator> comm) {
  return sys.spawn<caf::detached>([engine, comm](caf::event_based_actor*) -> caf::behavior {
    auto scratch = std::make_shared<StepOutput>();  // the step's result is rank 0's
    return {
        [engine, comm, scratch](shard_step_atom, StepJobPtr job) -> std::string {
          name_this_thread("eyrie.shard");
          if (auto err = run_shard_step(*engine, comm.get(), job->batch, *scratch)) {
            try {
              std::rethrow_exception(err);
            } catch (const std::exception& e) {
              return e.what();
            } catch (...) {
              return "unknown error";
            }
          }
          return "";
        },
    };
  });
}

// Rank 0: the replica's worker as the scheduler sees it.
caf::actor spawn_lead_shard(caf::actor_system& sys, std::shared_ptr<Engine> engine,
                            std::shared_ptr<Communicator> comm, std::vector<caf::actor> peers) {
  return sys.spawn<caf::detached>([engine, comm, peers](caf::event_based_actor* self) -> caf::behavior {
    return {
        [self, engine, comm, peers](step_atom, StepJobPtr job) {
          name_this_thread("eyrie.engine");
          auto rp = self->make_response_promise();
          // Validated once here: a bad batch never reaches the other ranks.
          try {
            validate_step(job->batch, engine->config(), engine->kv_spec());
          } catch (...) {
            job->error = std::current_exception();
            rp.deliver(step_atom_v, job);
            return;
          }
          auto pending = std::make_shared<std::size_t>(peers.size() + 1);
          auto peer_done = [rp, job, pending](const std::string& error) mutable {
            if (!error.empty() && !job->error) job->error = std::make_exception_ptr(Error(error));
            if (--*pending == 0) rp.deliver(step_atom_v, job);
          };
          for (std::size_t i = 0; i < peers.size(); ++i)
            self->request(peers[i], caf::infinite, shard_step_atom_v, job)
                .then([peer_done](std::string& err) mutable { peer_done(err); },
                      [self, peer_done, i](caf::error& err) mutable {
                        peer_done("shard " + std::to_string(i + 1) + " unreachable: " + self->system().render(err));
                      });
          // Rank 0's own failure is the most direct account of what went wrong; it goes first.
          if (auto err = run_shard_step(*engine, comm.get(), job->batch, job->output)) job->error = err;
          peer_done("");
        },
    };
  });
}

}  // namespace

std::vector<caf::actor> spawn_shard_workers(caf::actor_system& sys, std::vector<std::shared_ptr<Engine>> shards,
                                            std::vector<std::shared_ptr<Communicator>> comms) {
  comms.resize(shards.size());
  std::vector<caf::actor> peers;
  for (std::size_t r = 1; r < shards.size(); ++r) peers.push_back(spawn_peer_shard(sys, shards[r], comms[r]));
  std::vector<caf::actor> all{spawn_lead_shard(sys, shards[0], comms[0], peers)};
  all.insert(all.end(), peers.begin(), peers.end());
  return all;
}

namespace {

struct SchedulerActorState {
  std::unique_ptr<Scheduler> sched;
  caf::actor worker, router;
  int replica = 0;
  std::shared_ptr<Metrics> metrics;
  std::unordered_map<uint64_t, caf::actor> sinks;
  bool in_flight = false;
  StepJobPtr job = std::make_shared<StepJob>();
  std::vector<GenerationEvent> events;     // from planning
  std::vector<GenerationEvent> completed;  // from the step that just returned
};

using SchedulerActor = caf::stateful_actor<SchedulerActorState>;

void publish(SchedulerActor* self) {
  auto& st = self->state;
  SchedulerStats s = st.sched->stats();
  st.metrics->set_replica_state(st.replica, s.waiting, s.running, s.kv_blocks_used, s.kv_blocks_total);
}

void dispatch(SchedulerActor* self, std::vector<GenerationEvent>& events) {
  auto& st = self->state;
  for (auto& e : events) {
    if (auto* t = std::get_if<TokenEvent>(&e)) {
      st.metrics->add_generated_tokens(1);
      auto it = st.sinks.find(t->request);
      if (it != st.sinks.end()) self->send(it->second, std::move(*t));
    } else {
      auto& d = std::get<DoneEvent>(e);
      if (d.completion_tokens > 0) {
        st.metrics->queue_ms.observe(d.timing.queue_ms);
        st.metrics->ttft_ms.observe(d.timing.ttft_ms);
        if (d.completion_tokens > 1) st.metrics->tpot_ms.observe(d.timing.tpot_ms);
      }
      auto it = st.sinks.find(d.request);
      if (it != st.sinks.end()) {
        self->send(it->second, std::move(d));
        st.sinks.erase(it);
      }
      self->send(st.router, finished_atom_v, st.replica);
    }
  }
  events.clear();
}

void start_step(SchedulerActor* self);

// Starts the next step unless one is in flight; one step at a time keeps the batch's memory
// untouched while the worker reads it. The events of the step just completed (`st.completed`)
// go out after the next step has started, so the engine does not wait on their delivery; they
// go before the planner's own (a cancelled request's last tokens before its end).
void kick(SchedulerActor* self) {
  auto& st = self->state;
  if (st.in_flight) return;
  st.events.clear();
  const bool has_step = st.sched->plan(st.job->batch, st.events);
  if (has_step) {
    st.in_flight = true;
    st.metrics->batch_size.observe(static_cast<double>(st.job->batch.seqs.size()));
    start_step(self);
  }
  dispatch(self, st.completed);
  dispatch(self, st.events);
  publish(self);
}

void start_step(SchedulerActor* self) {
  auto& st = self->state;
  self->request(st.worker, caf::infinite, step_atom_v, st.job)
      .then(
          [self](step_atom, StepJobPtr job) {
            auto& s = self->state;
            s.in_flight = false;
            if (job->error) {
              std::string what = "engine step failed";
              try {
                std::rethrow_exception(job->error);
              } catch (const std::exception& e) {
                what += std::string(": ") + e.what();
              }
              job->error = nullptr;
              std::cerr << "eyrie: replica " << s.replica << ": " << what << "\n";
              s.sched->abort_step(s.completed);
            } else {
              s.sched->complete(job->output, s.completed);
            }
            kick(self);
          },
          [self](caf::error& err) {
            auto& s = self->state;
            std::cerr << "eyrie: replica " << s.replica << ": worker unreachable: " << self->system().render(err)
                      << "\n";
            s.in_flight = false;
            s.sched->abort_step(s.completed);
            dispatch(self, s.completed);
            publish(self);
          });
}

}  // namespace

caf::actor spawn_scheduler(caf::actor_system& sys, caf::actor worker, caf::actor router,
                           int replica, const Tokenizer& tokenizer, KvCacheSpec kv,
                           SchedulerOptions options, std::shared_ptr<Metrics> metrics) {
  return sys.spawn([=, &tokenizer](SchedulerActor* self) -> caf::behavior {
    auto& st = self->state;
    st.sched = std::make_unique<Scheduler>(tokenizer, kv, options);
    st.worker = worker;
    st.router = router;
    st.replica = replica;
    st.metrics = metrics;
    publish(self);
    return {
        [self](submit_atom, SeqRequest req, caf::actor sink) -> SubmitReply {
          auto& s = self->state;
          const uint64_t id = req.id;
          const auto prompt_tokens = static_cast<int64_t>(req.prompt.size());
          try {
            if (!s.sched->submit(std::move(req))) {
              self->send(s.router, finished_atom_v, s.replica);
              return {429, "overloaded", "Model is overloaded: the request queue is full"};
            }
          } catch (const InvalidArgument& e) {
            self->send(s.router, finished_atom_v, s.replica);
            return {422, "validation", e.what()};
          }
          s.metrics->add_prompt_tokens(prompt_tokens);
          s.sinks[id] = std::move(sink);
          kick(self);
          return {200, "", ""};
        },
        [self](cancel_atom, uint64_t id) {
          if (!self->state.sinks.count(id)) return;
          self->state.sched->cancel(id);
          kick(self);
        },
        [self](stats_atom) { return self->state.sched->stats(); },
        [self](drain_atom) {
          self->state.sched->cancel_all();
          kick(self);
        },
    };
  });
}

namespace {

struct RouterState {
  std::vector<caf::actor> replicas;
  LeastLoaded policy;
};

}  // namespace

caf::actor spawn_router(caf::actor_system& sys) {
  return sys.spawn([](caf::stateful_actor<RouterState>* self) -> caf::behavior {
    return {
        [self](replicas_atom, std::vector<caf::actor> replicas) {
          self->state.replicas = std::move(replicas);
          self->state.policy.resize(self->state.replicas.size());
        },
        [self](submit_atom a, SeqRequest& req, caf::actor& sink) -> caf::result<caf::message> {
          auto& st = self->state;
          if (st.replicas.empty())
            return caf::make_message(SubmitReply{503, "unavailable", "no replica is running"});
          return self->delegate(st.replicas[st.policy.pick()], a, std::move(req), std::move(sink));
        },
        [self](finished_atom, int replica) {
          if (replica >= 0) self->state.policy.finished(static_cast<std::size_t>(replica));
        },
        [self](cancel_atom a, uint64_t id) {
          for (auto& r : self->state.replicas) self->send(r, a, id);
        },
    };
  });
}

void set_router_replicas(caf::actor router, std::vector<caf::actor> replicas) {
  caf::anon_send(router, replicas_atom_v, std::move(replicas));
}

}  // namespace eyrie
