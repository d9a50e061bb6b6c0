// Spawning the actors of one model replica: its device worker and its scheduler, and the
// router that spreads requests over replicas.
#pragma once

#include <caf/fwd.hpp>

#include <memory>

#include "actors/metrics.hpp"
#include "actors/scheduler.hpp"
#include "model/step.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {

// A detached actor (own thread) that owns the engine and runs its steps.
caf::actor spawn_worker(caf::actor_system& sys, std::shared_ptr<Engine> engine);

// Runs continuous batching for one replica; events go to the sink named in each submission.
caf::actor spawn_scheduler(caf::actor_system& sys, caf::actor worker, caf::actor router,
                           int replica, const Tokenizer& tokenizer, KvCacheSpec kv,
                           SchedulerOptions options, std::shared_ptr<Metrics> metrics);

// Least-loaded routing over replicas; cancellations go to every replica.
caf::actor spawn_router(caf::actor_system& sys);
// Tells the router about its replicas (each a scheduler actor), once, after spawning them.
void set_router_replicas(caf::actor router, std::vector<caf::actor> replicas);

}  // namespace eyrie
