// OpenAI-compatible completions and chat completions: request parsing and response shapes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "actors/request.hpp"
#include "net/api/generate_request.hpp"

namespace eyrie::net {

struct OpenAiRequest {
  bool chat = false;
  std::string prompt;  // chat messages already rendered
  GenerateParams params;
  bool stream = false;
  std::string model;
};

// Identity of one response, repeated in every chunk of a stream.
struct OpenAiMeta {
  bool chat = false;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

// Throws ApiError (400 malformed, 422 invalid or unsupported) naming the field.
OpenAiRequest parse_openai_request(std::string_view body, bool chat, int64_t default_max_tokens);

// OpenAI leaves the stop sequence out of the text; TGI keeps it.
std::string trim_at_stop(const std::string& text, const SamplingParams& p, StopReason reason);

std::string openai_response(const OpenAiMeta& m, const DoneEvent& d, const std::string& text);
// One streamed chunk: a text piece, or (finish set) the closing chunk with the finish reason.
std::string openai_chunk(const OpenAiMeta& m, std::string_view piece, std::optional<StopReason> finish,
                         bool first);
std::string openai_models(const std::string& model_id, int64_t created);

}  // namespace eyrie::net
