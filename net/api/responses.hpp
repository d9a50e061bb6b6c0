// JSON bodies and frames of the TGI, SageMaker and WebSocket APIs, built from runtime events.
#pragma once

#include <string>
#include <vector>

#include "actors/request.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "net/api/generate_request.hpp"

namespace eyrie::net {

// TGI's finish reason names; a cancelled request is reported as such.
std::string_view finish_reason(StopReason r);

// TGI /generate: {"generated_text", "details"?}.
std::string tgi_generate_response(const DoneEvent& d, const GenerateParams& p, const std::string& prompt);
// TGI /generate_stream events: one per token; the last carries generated_text and details.
std::string tgi_stream_event(const TokenEvent& t, const DoneEvent* done, const GenerateParams& p,
                             const std::string& prompt);
// TGI /tokenize: [{"id","text","start","stop"}] with byte offsets into the input.
std::string tgi_tokenize_response(const Tokenizer& tok, const std::string& inputs);

// WebSocket frames of the /ws protocol.
std::string ws_token_frame(const std::string& id, const TokenEvent& t);
std::string ws_done_frame(const std::string& id, const DoneEvent& d);
std::string ws_error_frame(const std::string* id, const std::string& error_type, const std::string& message);

}  // namespace eyrie::net
