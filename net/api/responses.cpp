// Response shapes: field names and nesting follow TGI so its clients work unchanged.
#include "net/api/responses.hpp"

#include "net/json_writer.hpp"

namespace eyrie::net {
namespace {

void token_object(JsonWriter& w, const TokenDetail& t, bool with_special = true) {
  w.begin_object().key("id").value(t.id).key("text").value(t.text).key("logprob");
  if (t.logprob) w.value(static_cast<double>(*t.logprob));
  else w.null();
  if (with_special) w.key("special").value(t.special);
  w.end_object();
}

void details_object(JsonWriter& w, const DoneEvent& d, const GenerateParams& p, bool with_tokens) {
  w.begin_object();
  w.key("finish_reason").value(finish_reason(d.reason));
  w.key("generated_tokens").value(d.completion_tokens);
  w.key("seed").value(d.seed);
  if (with_tokens) {
    w.key("prefill").begin_array();
    if (p.decoder_input_details)
      for (const auto& t : d.prefill) token_object(w, t, false);
    w.end_array();
    w.key("tokens").begin_array();
    for (const auto& t : d.tokens) token_object(w, t);
    w.end_array();
    w.key("top_tokens").begin_array().end_array();
  }
  w.end_object();
}

}  // namespace

std::string_view finish_reason(StopReason r) { return stop_reason_name(r); }

std::string tgi_generate_response(const DoneEvent& d, const GenerateParams& p, const std::string& prompt) {
  JsonWriter w;
  w.begin_object().key("generated_text").value(p.return_full_text ? prompt + d.generated_text : d.generated_text);
  if (p.details) {
    w.key("details");
    details_object(w, d, p, true);
  }
  w.end_object();
  return w.take();
}

std::string tgi_stream_event(const TokenEvent& t, const DoneEvent* done, const GenerateParams& p,
                             const std::string& prompt) {
  JsonWriter w;
  w.begin_object().key("index").value(static_cast<int64_t>(t.index) + 1).key("token");
  token_object(w, t.token);
  w.key("top_tokens").null();
  w.key("generated_text");
  if (done) w.value(p.return_full_text ? prompt + done->generated_text : done->generated_text);
  else w.null();
  w.key("details");
  if (done && p.details) details_object(w, *done, p, false);
  else w.null();
  w.end_object();
  return w.take();
}

std::string tgi_tokenize_response(const Tokenizer& tok, const std::string& inputs) {
  std::vector<int32_t> ids = tok.encode(inputs);
  JsonWriter w;
  w.begin_array();
  std::size_t offset = 0;
  for (int32_t id : ids) {
    const std::size_t len = tok.token_bytes(id).size();
    w.begin_object().key("id").value(id).key("text").value(tok.decode(std::span<const int32_t>(&id, 1)));
    w.key("start").value(static_cast<int64_t>(offset)).key("stop").value(static_cast<int64_t>(offset + len));
    w.end_object();
    offset += len;
  }
  w.end_array();
  return w.take();
}

std::string ws_token_frame(const std::string& id, const TokenEvent& t) {
  JsonWriter w;
  w.begin_object().key("type").value("token").key("id").value(id).key("index").value(static_cast<int64_t>(t.index));
  w.key("token");
  token_object(w, t.token);
  w.end_object();
  return w.take();
}

std::string ws_done_frame(const std::string& id, const DoneEvent& d) {
  JsonWriter w;
  w.begin_object().key("type").value("done").key("id").value(id);
  w.key("generated_text").value(d.generated_text);
  w.key("finish_reason").value(finish_reason(d.reason));
  w.key("usage").begin_object().key("prompt_tokens").value(d.prompt_tokens);
  w.key("completion_tokens").value(d.completion_tokens).end_object();
  w.key("timing").begin_object().key("queue_ms").value(d.timing.queue_ms);
  w.key("ttft_ms").value(d.timing.ttft_ms).key("tpot_ms").value(d.timing.tpot_ms).end_object();
  w.key("seed").value(d.seed);
  w.end_object();
  return w.take();
}

std::string ws_error_frame(const std::string* id, const std::string& error_type, const std::string& message) {
  JsonWriter w;
  w.begin_object().key("type").value("error").key("id");
  if (id) w.value(*id);
  else w.null();
  w.key("error_type").value(error_type).key("message").value(message).end_object();
  return w.take();
}

}  // namespace eyrie::net
