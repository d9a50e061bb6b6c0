// Session actors for HTTP generations and WebSocket connections.
#include "actors/sessions.hpp"

#include <unordered_map>

#include "model/error.hpp"
#include "net/api/api_error.hpp"
#include "net/api/chat_template.hpp"
#include "net/api/responses.hpp"
#include "net/api/stop_holdback.hpp"
#include "net/json_writer.hpp"
#include "net/sse.hpp"

namespace eyrie {
namespace {

void send_error(Runtime::Impl& rt, net::HttpResponder& res, const std::string& endpoint, int status,
                const std::string& type, const std::string& message) {
  rt.metrics->count_request(endpoint, status);
  res.send(status, "application/json", net::error_body(message, type));
}

std::string sagemaker_response(const DoneEvent& d, const std::string& prompt) {
  JsonWriter w;
  w.begin_object().key("outputs").begin_array().begin_object();
  w.key("generated_text").value(prompt + d.generated_text).end_object().end_array().end_object();
  return w.take();
}

// A session's requests counted in Runtime::Impl::replies_pending: each from its submission until
// the session has handed its answer to the connection, and the rest when the session ends (its
// connection gone).
class PendingReplies {
 public:
  void attach(std::atomic<int64_t>* counter) { counter_ = counter; }
  void add() {
    ++held_;
    ++*counter_;
  }
  void remove() {
    --held_;
    --*counter_;
  }
  ~PendingReplies() {
    if (counter_) *counter_ -= held_;
  }

 private:
  std::atomic<int64_t>* counter_ = nullptr;
  int64_t held_ = 0;
};

struct HttpSessionState {
  PendingReplies pending;  // the one request, until the session ends
  std::shared_ptr<net::HttpResponder> res;
  HttpGeneration g;
  uint64_t id = 0;
  std::optional<TokenEvent> last;
  std::optional<net::StopHoldback> holdback;  // OpenAI streams: their text without the stop sequence
  bool streaming = false;
  bool first_chunk = true;
};

bool is_stream(HttpApi api) { return api == HttpApi::tgi_stream || api == HttpApi::openai_stream; }

}  // namespace

void start_http_generation(Runtime::Impl& rt, HttpGeneration g, std::shared_ptr<net::HttpResponder> res) {
  SeqRequest req;
  try {
    req = rt.prepare(g.prompt, g.params.sampling, g.params.decoder_input_details, g.params.truncate);
  } catch (const InvalidArgument& e) {
    send_error(rt, *res, g.endpoint, 422, "validation", e.what());
    return;
  }
  Runtime::Impl* rtp = &rt;
  rt.system->spawn([rtp, res, g = std::move(g), req = std::move(req)](
                       caf::stateful_actor<HttpSessionState>* self) mutable -> caf::behavior {
    auto& st = self->state;
    st.pending.attach(&rtp->replies_pending);
    st.pending.add();
    st.res = res;
    st.g = std::move(g);
    st.id = req.id;
    if (st.g.api == HttpApi::openai_stream) st.holdback.emplace(st.g.params.sampling.stop);
    caf::actor me = caf::actor_cast<caf::actor>(self);
    self->request(rtp->router, caf::infinite, submit_atom_v, std::move(req), me)
        .then([self, rtp, me](SubmitReply& r) {
          auto& s = self->state;
          if (r.status != 200) {
            send_error(*rtp, *s.res, s.g.endpoint, r.status, r.error_type, r.message);
            self->quit();
            return;
          }
          if (is_stream(s.g.api)) {
            s.streaming = true;
            rtp->metrics->count_request(s.g.endpoint, 200);
            s.res->begin_stream("text/event-stream");
          }
          s.res->on_close([me] { caf::anon_send(me, closed_atom_v); });
          if (s.res->closed()) caf::anon_send(me, closed_atom_v);
        });
    return {
        [self](TokenEvent& t) {
          auto& s = self->state;
          if (!s.streaming) return;
          if (s.g.api == HttpApi::openai_stream) {
            const std::string piece = s.holdback->push(t.text);
            if (piece.empty()) return;
            s.res->write(net::sse_event(net::openai_chunk(s.g.openai, piece, std::nullopt, s.first_chunk)));
            s.first_chunk = false;
          } else if (t.last) {
            s.last = std::move(t);
          } else {
            s.res->write(net::sse_event(net::tgi_stream_event(t, nullptr, s.g.params, s.g.prompt)));
          }
        },
        [self, rtp](DoneEvent& d) {
          auto& s = self->state;
          if (s.g.api == HttpApi::openai_stream) {
            const std::string rest = s.holdback->finish();
            if (!rest.empty()) {
              s.res->write(net::sse_event(net::openai_chunk(s.g.openai, rest, std::nullopt, s.first_chunk)));
              s.first_chunk = false;
            }
            s.res->write(net::sse_event(net::openai_chunk(s.g.openai, "", d.reason, s.first_chunk)));
            s.res->write(net::sse_event("[DONE]"));
            s.res->end();
          } else if (s.streaming) {
            if (s.last) s.res->write(net::sse_event(net::tgi_stream_event(*s.last, &d, s.g.params, s.g.prompt)));
            s.res->end();
          } else {
            rtp->metrics->count_request(s.g.endpoint, 200);
            std::string body;
            if (s.g.api == HttpApi::sagemaker_text)
              body = sagemaker_response(d, s.g.prompt);
            else if (s.g.api == HttpApi::openai)
              body = net::openai_response(s.g.openai, d, net::trim_at_stop(d.generated_text, s.g.params.sampling, d.reason));
            else
              body = net::tgi_generate_response(d, s.g.params, s.g.prompt);
            s.res->send(200, "application/json", std::move(body));
          }
          self->quit();
        },
        [self, rtp](closed_atom) {
          caf::anon_send(rtp->router, cancel_atom_v, self->state.id);
          self->quit();
        },
    };
  });
}

namespace {

struct WsSessionState {
  std::shared_ptr<net::WsWriter> writer;
  std::unordered_map<std::string, uint64_t> by_client;
  std::unordered_map<uint64_t, std::string> by_request;
  PendingReplies pending;  // one per entry of by_request

  void add(const std::string& client_id, uint64_t rid) {
    by_client[client_id] = rid;
    by_request[rid] = client_id;
    pending.add();
  }
  void remove(uint64_t rid) {
    auto it = by_request.find(rid);
    if (it == by_request.end()) return;
    by_client.erase(it->second);
    by_request.erase(it);
    pending.remove();
  }
};

using WsActor = caf::stateful_actor<WsSessionState>;

// Concurrent requests one connection may have in flight.
constexpr std::size_t kMaxPerConnection = 64;

void handle_frame(WsActor* self, Runtime::Impl& rt, const std::string& text) {
  auto& st = self->state;
  simdjson::dom::parser parser;
  std::optional<std::string> cid;
  try {
    simdjson::dom::element root = net::parse_json(parser, text);
    simdjson::dom::object obj;
    if (root.get(obj)) throw net::ApiError::bad_json("a frame must be a JSON object");
    std::string_view id;
    simdjson::dom::element id_el;
    if (!obj["id"].get(id_el)) {
      if (id_el.get(id)) throw net::ApiError::validation("`id` must be a string");
      cid = std::string(id);
    }
    std::string_view type;
    if (obj["type"].get(type)) throw net::ApiError::validation("missing string field `type` (generate or cancel)");
    if (type == "cancel") {
      if (!cid) throw net::ApiError::validation("`cancel` needs the `id` of a request");
      auto it = st.by_client.find(*cid);
      if (it != st.by_client.end()) caf::anon_send(rt.router, cancel_atom_v, it->second);
      return;
    }
    if (type != "generate")
      throw net::ApiError::validation("unknown frame type '" + std::string(type) + "' (generate or cancel)");
    if (!cid) throw net::ApiError::validation("`generate` needs a string `id` chosen by the client");
    if (st.by_client.count(*cid))
      throw net::ApiError::validation("a request with id '" + *cid + "' is already running on this connection");
    if (st.by_client.size() >= kMaxPerConnection)
      throw net::ApiError(429, "overloaded", "too many requests in flight on this connection");
    std::string prompt;
    std::string_view inputs;
    simdjson::dom::array messages;
    if (!obj["inputs"].get(inputs)) prompt = std::string(inputs);
    else if (!obj["messages"].get(messages)) prompt = net::render_falcon_chat(net::parse_chat_messages(messages));
    else throw net::ApiError::validation("`generate` needs `inputs` (a string) or `messages` (an array)");
    net::GenerateParams p;
    p.sampling.max_new_tokens = rt.options.default_max_new_tokens;
    simdjson::dom::element params;
    if (!obj["parameters"].get(params) && !params.is_null()) {
      simdjson::dom::object po;
      if (params.get(po)) throw net::ApiError::validation("`parameters` must be an object");
      net::read_parameters(po, p);
    }
    SeqRequest req;
    try {
      req = rt.prepare(prompt, p.sampling, false, p.truncate);
    } catch (const InvalidArgument& e) {
      throw net::ApiError::validation(e.what());
    }
    const uint64_t rid = req.id;
    st.add(*cid, rid);
    std::string client_id = *cid;
    self->request(rt.router, caf::infinite, submit_atom_v, std::move(req), caf::actor_cast<caf::actor>(self))
        .then([self, rid, client_id](SubmitReply& r) {
          if (r.status == 200) return;
          auto& s = self->state;
          s.writer->send_text(net::ws_error_frame(&client_id, r.error_type, r.message));
          s.remove(rid);
        });
  } catch (const net::ApiError& e) {
    st.writer->send_text(net::ws_error_frame(cid ? &*cid : nullptr, e.error_type(), e.what()));
  }
}

class ActorWsHandler : public net::WsHandler {
 public:
  explicit ActorWsHandler(caf::actor a) : actor_(std::move(a)) {}
  void on_text(std::string frame) override { caf::anon_send(actor_, frame_atom_v, std::move(frame)); }
  void on_close() override { caf::anon_send(actor_, closed_atom_v); }

 private:
  caf::actor actor_;
};

}  // namespace

std::shared_ptr<net::WsHandler> open_ws_session(Runtime::Impl& rt, std::shared_ptr<net::WsWriter> writer) {
  Runtime::Impl* rtp = &rt;
  caf::actor a = rt.system->spawn([rtp, writer](WsActor* self) -> caf::behavior {
    self->state.writer = writer;
    self->state.pending.attach(&rtp->replies_pending);
    return {
        [self, rtp](frame_atom, std::string& text) { handle_frame(self, *rtp, text); },
        [self](TokenEvent& t) {
          auto& s = self->state;
          auto it = s.by_request.find(t.request);
          if (it != s.by_request.end()) s.writer->send_text(net::ws_token_frame(it->second, t));
        },
        [self](DoneEvent& d) {
          auto& s = self->state;
          auto it = s.by_request.find(d.request);
          if (it == s.by_request.end()) return;
          s.writer->send_text(net::ws_done_frame(it->second, d));
          s.remove(d.request);
        },
        [self, rtp](closed_atom) {
          for (auto& [rid, cid] : self->state.by_request) caf::anon_send(rtp->router, cancel_atom_v, rid);
          self->quit();
        },
    };
  });
  return std::make_shared<ActorWsHandler>(std::move(a));
}

}  // namespace eyrie
