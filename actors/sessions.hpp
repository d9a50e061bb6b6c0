// Client sessions: one actor per streaming HTTP request and per WebSocket connection. Each
// submits to the router, relays its requests' events to its socket, and cancels them when the
// client goes away.
#pragma once

#include <memory>
#include <string>

#include "actors/runtime_impl.hpp"
#include "net/api/generate_request.hpp"
#include "net/api/openai.hpp"
#include "net/http_types.hpp"

namespace eyrie {

enum class HttpApi { tgi_generate, tgi_stream, sagemaker_text, openai, openai_stream };

struct HttpGeneration {
  HttpApi api = HttpApi::tgi_generate;
  std::string endpoint;  // for metrics
  std::string prompt;
  net::GenerateParams params;
  net::OpenAiMeta openai;  // for the OpenAI shapes
};

// Validates and tokenizes on the calling thread, then hands the request to a session actor
// that answers on `responder`. Errors are answered with TGI's status codes.
void start_http_generation(Runtime::Impl& rt, HttpGeneration g,
                           std::shared_ptr<net::HttpResponder> responder);

// A WebSocket connection's session actor, behind the handler the server calls.
std::shared_ptr<net::WsHandler> open_ws_session(Runtime::Impl& rt, std::shared_ptr<net::WsWriter> writer);

}  // namespace eyrie
