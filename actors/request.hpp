// A generation request as the runtime sees it, and the events it produces while it runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "model/sampling/params.hpp"

namespace eyrie {

using Clock = std::chrono::steady_clock;

struct TokenDetail {
  int32_t id = 0;
  std::string text;
  std::optional<float> logprob;  // none for the first prompt token
  bool special = false;
};

struct SeqRequest {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  SamplingParams params;
  bool prefill_details = false;  // logprobs of the prompt tokens in the final event
  Clock::time_point arrival = Clock::now();
};

// Why a sequence stopped; `cancelled` covers a client that went away as well.
enum class StopReason { length, eos_token, stop_sequence, cancelled };
std::string_view stop_reason_name(StopReason r);

struct TokenEvent {
  uint64_t request = 0;
  int32_t index = 0;  // 0 for the first generated token
  TokenDetail token;
  std::string text;   // what this token adds to the generated text (whole UTF-8 characters)
  bool last = false;  // a DoneEvent follows at once
};

struct Timing {
  double queue_ms = 0;  // arrival to first scheduled step
  double ttft_ms = 0;   // arrival to first token
  double tpot_ms = 0;   // mean time between later tokens
};

struct DoneEvent {
  uint64_t request = 0;
  StopReason reason = StopReason::length;
  std::string generated_text;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::optional<uint64_t> seed;
  std::vector<TokenDetail> prefill;  // when prefill_details was asked for
  std::vector<TokenDetail> tokens;   // every generated token
  Timing timing;
};

using GenerationEvent = std::variant<TokenEvent, DoneEvent>;

}  // namespace eyrie
