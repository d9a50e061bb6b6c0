// TGI-style generation requests ({"inputs", "parameters"}) parsed and validated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "model/sampling/params.hpp"

namespace eyrie::net {

struct GenerateParams {
  SamplingParams sampling;
  bool details = false;
  bool decoder_input_details = false;
  bool return_full_text = false;
  std::optional<int64_t> truncate;  // keep only the last N prompt tokens
};

struct GenerateRequestBody {
  std::string inputs;
  GenerateParams params;
  bool stream = false;
};

// Reads TGI's `parameters` object into p, starting from p's values (the server defaults).
// Throws ApiError: 422 naming the parameter for bad values and unsupported features.
void read_parameters(simdjson::dom::object parameters, GenerateParams& p);

// Parses a whole TGI /generate body. Throws ApiError (400 malformed JSON, 422 invalid).
GenerateRequestBody parse_generate_body(std::string_view body, const GenerateParams& defaults);

// Parses JSON text or throws ApiError 400 naming what is wrong.
simdjson::dom::element parse_json(simdjson::dom::parser& parser, std::string_view body);
// The same, for a body that must be a JSON object.
simdjson::dom::object parse_json_object(simdjson::dom::parser& parser, std::string_view body);
// SamplingParams::validate() with its message as an ApiError 422.
void validate_sampling(const SamplingParams& p);

}  // namespace eyrie::net
