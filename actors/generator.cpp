// Drives a Scheduler with a single request until it is done.
#include "actors/generator.hpp"

#include "actors/scheduler.hpp"
#include "model/error.hpp"

namespace eyrie {

Generator::Generator(Engine& engine, const Tokenizer& tokenizer) : engine_(engine), tokenizer_(tokenizer) {}

DoneEvent Generator::run(const GenerateRequest& req, const TokenCallback& on_token) {
  req.params.validate();
  const FalconConfig& cfg = engine_.config();
  SeqRequest seq;
  seq.id = 1;
  seq.prompt = tokenizer_.encode(req.prompt);
  seq.params = req.params;
  seq.prefill_details = req.prefill_details;
  if (seq.prompt.empty()) throw InvalidArgument("`inputs` must not be empty");
  if (static_cast<int64_t>(seq.prompt.size()) + req.params.max_new_tokens > cfg.max_position_embeddings)
    throw InvalidArgument("the prompt has " + std::to_string(seq.prompt.size()) +
                          " tokens and `max_new_tokens` is " + std::to_string(req.params.max_new_tokens) +
                          ": together they exceed the model's context of " +
                          std::to_string(cfg.max_position_embeddings) + " tokens");
  SchedulerOptions opt;
  opt.eos_token_id = cfg.eos_token_id;
  opt.max_step_tokens = static_cast<int32_t>(cfg.max_position_embeddings);
  opt.device_sampling = engine_.chooses_tokens();
  Scheduler sched(tokenizer_, engine_.kv_spec(), opt);
  sched.submit(std::move(seq));
  StepBatch batch;
  StepOutput logits;
  std::vector<GenerationEvent> events;
  for (;;) {
    events.clear();
    if (sched.plan(batch, events)) {
      engine_.step(batch, logits);
      sched.complete(logits, events);
    }
    for (auto& e : events) {
      if (auto* t = std::get_if<TokenEvent>(&e)) {
        if (on_token) on_token(t->token, t->text);
      } else {
        return std::move(std::get<DoneEvent>(e));
      }
    }
  }
}

}  // namespace eyrie
