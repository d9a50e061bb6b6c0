// OpenAI field names and defaults: temperature 1 (sampling on), max_tokens 16 for completions.
#include "net/api/openai.hpp"

#include "net/api/api_error.hpp"
#include "net/api/chat_template.hpp"
#include "net/json_writer.hpp"

namespace eyrie::net {
namespace dom = simdjson::dom;

namespace {

std::string_view openai_finish(StopReason r) { return r == StopReason::length ? "length" : "stop"; }

}  // namespace

OpenAiRequest parse_openai_request(std::string_view body, bool chat, int64_t default_max_tokens) {
  dom::parser parser;
  dom::object o = parse_json_object(parser, body);
  OpenAiRequest r;
  r.chat = chat;
  std::string_view model;
  if (!o["model"].get(model)) r.model = std::string(model);
  if (chat) {
    dom::array messages;
    if (o["messages"].get(messages)) throw ApiError::validation("missing array field `messages`");
    r.prompt = render_falcon_chat(parse_chat_messages(messages));
  } else {
    dom::element prompt;
    if (o["prompt"].get(prompt)) throw ApiError::validation("missing field `prompt`");
    std::string_view s;
    dom::array arr;
    if (!prompt.get(s)) {
      r.prompt = std::string(s);
    } else if (!prompt.get(arr) && arr.size() == 1 && !arr.at(0).get(s)) {
      r.prompt = std::string(s);
    } else {
      throw ApiError::validation("`prompt` must be a string (or an array of one string)");
    }
  }
  GenerateParams& p = r.params;
  p.sampling.max_new_tokens = chat ? default_max_tokens : 16;
  p.sampling.temperature = 1.0;
  p.sampling.do_sample = true;
  dom::element e;
  auto num = [&](const char* key) -> std::optional<double> {
    if (o[key].get(e) || e.is_null()) return std::nullopt;
    double d;
    if (e.get(d)) throw ApiError::validation(std::string("`") + key + "` must be a number");
    return d;
  };
  auto integer = [&](const char* key) -> std::optional<int64_t> {
    if (o[key].get(e) || e.is_null()) return std::nullopt;
    int64_t v;
    if (e.get(v)) throw ApiError::validation(std::string("`") + key + "` must be an integer");
    return v;
  };
  if (auto v = integer("max_tokens")) p.sampling.max_new_tokens = *v;
  if (auto v = integer("max_completion_tokens")) p.sampling.max_new_tokens = *v;
  if (auto v = num("temperature")) p.sampling.temperature = *v;
  if (auto v = num("top_p")) p.sampling.top_p = *v;
  if (auto v = integer("n"); v && *v != 1) throw ApiError::validation("`n` other than 1 is not supported");
  if (auto v = num("frequency_penalty"); v && *v != 0.0)
    throw ApiError::validation("`frequency_penalty` is not supported");
  if (auto v = num("presence_penalty"); v && *v != 0.0)
    throw ApiError::validation("`presence_penalty` is not supported");
  if (!o["seed"].get(e) && !e.is_null()) {
    uint64_t seed;
    if (e.get(seed)) throw ApiError::validation("`seed` must be a non-negative integer");
    p.sampling.seed = seed;
  }
  if (!o["stop"].get(e) && !e.is_null()) {
    std::string_view s;
    dom::array arr;
    if (!e.get(s)) {
      p.sampling.stop = {std::string(s)};
    } else if (!e.get(arr)) {
      for (auto item : arr) {
        if (item.get(s)) throw ApiError::validation("`stop` must be a string or an array of strings");
        p.sampling.stop.emplace_back(s);
      }
    } else {
      throw ApiError::validation("`stop` must be a string or an array of strings");
    }
    if (p.sampling.stop.size() > 4) throw ApiError::validation("`stop` takes at most 4 sequences");
  }
  if (!o["stream"].get(e) && !e.is_null() && e.get(r.stream))
    throw ApiError::validation("`stream` must be true or false");
  validate_sampling(p.sampling);
  return r;
}

std::string trim_at_stop(const std::string& text, const SamplingParams& p, StopReason reason) {
  if (reason != StopReason::stop_sequence) return text;
  std::size_t cut = std::string::npos;
  for (const auto& s : p.stop) cut = std::min(cut, text.find(s));
  return cut == std::string::npos ? text : text.substr(0, cut);
}

namespace {

void header(JsonWriter& w, const OpenAiMeta& m, bool chunk) {
  w.key("id").value(m.id);
  w.key("object").value(m.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
  w.key("created").value(m.created).key("model").value(m.model);
}

}  // namespace

std::string openai_response(const OpenAiMeta& m, const DoneEvent& d, const std::string& text) {
  JsonWriter w;
  w.begin_object();
  header(w, m, false);
  w.key("choices").begin_array().begin_object().key("index").value(int64_t{0});
  if (m.chat) {
    w.key("message").begin_object().key("role").value("assistant").key("content").value(text).end_object();
  } else {
    w.key("text").value(text);
  }
  w.key("logprobs").null().key("finish_reason").value(openai_finish(d.reason)).end_object().end_array();
  w.key("usage").begin_object().key("prompt_tokens").value(d.prompt_tokens);
  w.key("completion_tokens").value(d.completion_tokens);
  w.key("total_tokens").value(d.prompt_tokens + d.completion_tokens).end_object();
  w.end_object();
  return w.take();
}

std::string openai_chunk(const OpenAiMeta& m, std::string_view piece, std::optional<StopReason> finish,
                         bool first) {
  JsonWriter w;
  w.begin_object();
  header(w, m, true);
  w.key("choices").begin_array().begin_object().key("index").value(int64_t{0});
  if (m.chat) {
    w.key("delta").begin_object();
    if (first) w.key("role").value("assistant");
    if (!finish) w.key("content").value(piece);
    w.end_object();
  } else {
    w.key("text").value(finish ? std::string_view() : piece);
  }
  w.key("logprobs").null().key("finish_reason");
  if (finish) w.value(openai_finish(*finish));
  else w.null();
  w.end_object().end_array().end_object();
  return w.take();
}

std::string openai_models(const std::string& model_id, int64_t created) {
  JsonWriter w;
  w.begin_object().key("object").value("list").key("data").begin_array().begin_object();
  w.key("id").value(model_id).key("object").value("model").key("created").value(created);
  w.key("owned_by").value("eyrie").end_object().end_array().end_object();
  return w.take();
}

}  // namespace eyrie::net
