// Every message type and atom exchanged by eyrie's actors, in one place.
#pragma once

#include <caf/all.hpp>

#include <exception>
#include <memory>

#include "actors/request.hpp"
#include "actors/scheduler.hpp"
#include "model/step.hpp"

namespace eyrie {

// One engine step in flight between a scheduler and its replica's worker. Shared, never copied:
// the batch refers to sequences the scheduler keeps unchanged until the step returns.
struct StepJob {
  StepBatch batch;
  StepOutput output;
  std::exception_ptr error;
};
using StepJobPtr = std::shared_ptr<StepJob>;

// Outcome of a submission: accepted, or refused with an HTTP status and a message.
struct SubmitReply {
  int status = 200;  // 200 accepted, 422 invalid, 429 overloaded
  std::string error_type;
  std::string message;
};

}  // namespace eyrie

CAF_BEGIN_TYPE_ID_BLOCK(eyrie, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(eyrie, (eyrie::StepJobPtr))
  CAF_ADD_TYPE_ID(eyrie, (eyrie::SeqRequest))
  CAF_ADD_TYPE_ID(eyrie, (eyrie::TokenEvent))
  CAF_ADD_TYPE_ID(eyrie, (eyrie::DoneEvent))
  CAF_ADD_TYPE_ID(eyrie, (eyrie::SubmitReply))
  CAF_ADD_TYPE_ID(eyrie, (eyrie::SchedulerStats))
  CAF_ADD_ATOM(eyrie, eyrie, step_atom, "step")
  CAF_ADD_ATOM(eyrie, eyrie, submit_atom, "submit")
  CAF_ADD_ATOM(eyrie, eyrie, cancel_atom, "cancel")
  CAF_ADD_ATOM(eyrie, eyrie, stats_atom, "stats")
  CAF_ADD_ATOM(eyrie, eyrie, finished_atom, "finished")
  CAF_ADD_ATOM(eyrie, eyrie, frame_atom, "frame")
  CAF_ADD_ATOM(eyrie, eyrie, closed_atom, "closed")
  CAF_ADD_ATOM(eyrie, eyrie, drain_atom, "drain")
  CAF_ADD_ATOM(eyrie, eyrie, replicas_atom, "replicas")
  CAF_ADD_ATOM(eyrie, eyrie, shard_step_atom, "shardstep")
CAF_END_TYPE_ID_BLOCK(eyrie)

// In-process only: these carry pointers, shared state or large buffers and never cross a
// process boundary.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(eyrie::StepJobPtr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(eyrie::SeqRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(eyrie::TokenEvent)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(eyrie::DoneEvent)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(eyrie::SubmitReply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(eyrie::SchedulerStats)
