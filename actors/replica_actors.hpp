// Spawning the actors of one model replica: its device worker and its scheduler, and the
// router that spreads requests over replicas.
#pragma once

#include <caf/fwd.hpp>

#include <memory>
#include <vector>

#include "actors/metrics.hpp"
#include "actors/scheduler.hpp"
#include "model/parallel/communicator.hpp"
#include "model/step.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {

// One detached actor (own thread, and GPU where the engine has one) per shard of a replica,
// rank 0 first. The scheduler sends its steps to rank 0, which hands each step to the other
// ranks, runs its own share and replies once every rank is done. A whole model is one shard
// without a communicator.
std::vector<caf::actor> spawn_shard_workers(caf::actor_system& sys, std::vector<std::shared_ptr<Engine>> shards,
                                            std::vector<std::shared_ptr<Communicator>> comms);

// Runs continuous batching for one replica; events go to the sink named in each submission.
caf::actor spawn_scheduler(caf::actor_system& sys, caf::actor worker, caf::actor router,
                           int replica, const Tokenizer& tokenizer, KvCacheSpec kv,
                           SchedulerOptions options, std::shared_ptr<Metrics> metrics);

// Least-loaded routing over replicas; cancellations go to every replica.
caf::actor spawn_router(caf::actor_system& sys);
// Tells the router about its replicas (each a scheduler actor), once, after spawning them.
void set_router_replicas(caf::actor router, std::vector<caf::actor> replicas);

}  // namespace eyrie
