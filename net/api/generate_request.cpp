// TGI parameter parsing: same names and meanings, unsupported features refused by name.
#include "net/api/generate_request.hpp"

#include <cmath>

#include "net/api/api_error.hpp"
#include "net/json_writer.hpp"

namespace eyrie::net {
namespace dom = simdjson::dom;

std::string error_body(const std::string& message, const std::string& error_type) {
  JsonWriter w;
  w.begin_object().key("error").value(message).key("error_type").value(error_type).end_object();
  return w.take();
}

dom::element parse_json(dom::parser& parser, std::string_view body) {
  dom::element root;
  if (auto err = parser.parse(body.data(), body.size()).get(root))
    throw ApiError::bad_json(std::string("malformed JSON body: ") + simdjson::error_message(err));
  return root;
}

dom::object parse_json_object(dom::parser& parser, std::string_view body) {
  dom::object obj;
  if (parse_json(parser, body).get(obj)) throw ApiError::bad_json("the request body must be a JSON object");
  return obj;
}

void validate_sampling(const SamplingParams& p) {
  try {
    p.validate();
  } catch (const InvalidArgument& e) {
    throw ApiError::validation(e.what());
  }
}

namespace {

[[noreturn]] void invalid(const std::string& key, const std::string& what) {
  throw ApiError::validation("`" + key + "` must be " + what);
}

std::optional<double> number(dom::object o, const char* key) {
  dom::element e;
  if (o[key].get(e) || e.is_null()) return std::nullopt;
  double d;
  if (e.get(d)) invalid(key, "a number");
  return d;
}

std::optional<int64_t> integer(dom::object o, const char* key) {
  dom::element e;
  if (o[key].get(e) || e.is_null()) return std::nullopt;
  int64_t v;
  if (e.get(v)) {
    uint64_t u;
    if (!e.get(u)) invalid(key, "an integer in range");
    invalid(key, "an integer");
  }
  return v;
}

std::optional<bool> boolean(dom::object o, const char* key) {
  dom::element e;
  if (o[key].get(e) || e.is_null()) return std::nullopt;
  bool b;
  if (e.get(b)) invalid(key, "true or false");
  return b;
}

}  // namespace

void read_parameters(dom::object o, GenerateParams& p) {
  SamplingParams& s = p.sampling;
  if (auto v = boolean(o, "do_sample")) s.do_sample = *v;
  if (auto v = number(o, "temperature")) s.temperature = *v;
  if (auto v = integer(o, "top_k")) s.top_k = *v;
  if (auto v = number(o, "top_p")) s.top_p = *v;
  if (auto v = number(o, "typical_p")) s.typical_p = *v;
  if (auto v = number(o, "repetition_penalty")) s.repetition_penalty = *v;
  if (auto v = integer(o, "max_new_tokens")) s.max_new_tokens = *v;
  dom::element seed;
  if (!o["seed"].get(seed) && !seed.is_null()) {
    uint64_t u;
    if (seed.get(u)) invalid("seed", "a non-negative integer");
    s.seed = u;
  }
  dom::element stop;
  if (!o["stop"].get(stop) && !stop.is_null()) {
    dom::array arr;
    if (stop.get(arr)) invalid("stop", "an array of strings");
    s.stop.clear();
    for (auto item : arr) {
      std::string_view sv;
      if (item.get(sv)) invalid("stop", "an array of strings");
      s.stop.emplace_back(sv);
    }
    if (s.stop.size() > 8) invalid("stop", "at most 8 sequences");
  }
  if (auto v = boolean(o, "details")) p.details = *v;
  if (auto v = boolean(o, "decoder_input_details")) p.decoder_input_details = *v;
  if (auto v = boolean(o, "return_full_text")) p.return_full_text = *v;
  if (auto v = integer(o, "truncate")) {
    if (*v <= 0) invalid("truncate", "strictly positive");
    p.truncate = *v;
  }
  if (auto v = integer(o, "best_of"); v && *v != 1)
    throw ApiError::validation("`best_of` other than 1 is not supported");
  if (auto v = boolean(o, "watermark"); v && *v)
    throw ApiError::validation("`watermark` is not supported");
  if (auto v = integer(o, "top_n_tokens"); v && *v != 0)
    throw ApiError::validation("`top_n_tokens` is not supported");
  if (auto v = number(o, "frequency_penalty"); v && *v != 0.0)
    throw ApiError::validation("`frequency_penalty` is not supported");
  dom::element grammar;
  if (!o["grammar"].get(grammar) && !grammar.is_null())
    throw ApiError::validation("`grammar` is not supported");
  validate_sampling(s);
}

GenerateRequestBody parse_generate_body(std::string_view body, const GenerateParams& defaults) {
  dom::parser parser;
  dom::object obj = parse_json_object(parser, body);
  GenerateRequestBody r;
  r.params = defaults;
  std::string_view inputs;
  dom::element in;
  if (obj["inputs"].get(in)) throw ApiError::validation("missing field `inputs`");
  if (in.get(inputs)) throw ApiError::validation("`inputs` must be a string");
  r.inputs = std::string(inputs);
  dom::element params;
  if (!obj["parameters"].get(params) && !params.is_null()) {
    dom::object po;
    if (params.get(po)) throw ApiError::validation("`parameters` must be an object");
    read_parameters(po, r.params);
  }
  dom::element stream;
  if (!obj["stream"].get(stream) && !stream.is_null()) {
    bool b;
    if (stream.get(b)) throw ApiError::validation("`stream` must be true or false");
    r.stream = b;
  }
  return r;
}

}  // namespace eyrie::net
