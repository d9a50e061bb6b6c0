// TGI, SageMaker and WebSocket routes over the runtime.
#include "actors/http_frontend.hpp"

#include <atomic>
#include <ctime>
#include <filesystem>

#include "actors/sessions.hpp"
#include "net/api/api_error.hpp"
#include "net/api/responses.hpp"
#include "net/json_writer.hpp"
#include "web/web_assets.hpp"

namespace eyrie {
namespace {

constexpr const char* kJson = "application/json";
// The UI loads only its own files and talks only to this server; model text can never run.
constexpr const char* kUiPolicy =
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

class Frontend : public net::HttpHandler {
 public:
  explicit Frontend(Runtime::Impl& rt) : rt_(rt) {}

  void handle(net::HttpRequest req, std::shared_ptr<net::HttpResponder> res) override {
    const std::string& path = req.path;
    try {
      if (path == "/health") return only(req, res, "GET", [&] { health(*res, false); });
      if (path == "/ping") return only(req, res, "GET", [&] { health(*res, true); });
      if (path == "/info") return only(req, res, "GET", [&] { reply(*res, path, 200, info()); });
      if (path == "/metrics")
        return only(req, res, "GET", [&] {
          rt_.metrics->count_request(path, 200);
          res->send(200, "text/plain; version=0.0.4", rt_.metrics->render());
        });
      if (path == "/tokenize")
        return only(req, res, "POST", [&] { tokenize(req, *res); });
      if (req.method == "GET")
        if (const web::Asset* a = web::find_asset(path)) return asset(req, *res, *a);
      if (path == "/generate" || path == "/generate_stream" || path == "/")
        return only(req, res, "POST", [&] { generate(req, res, path); });
      if (path == "/invocations") return only(req, res, "POST", [&] { invocations(req, res); });
      if (path == "/v1/completions") return only(req, res, "POST", [&] { openai(req, res, false); });
      if (path == "/v1/chat/completions") return only(req, res, "POST", [&] { openai(req, res, true); });
      if (path == "/v1/models")
        return only(req, res, "GET", [&] { reply(*res, path, 200, net::openai_models(model_id(), started_)); });
      if (path == "/ws")
        return reply(*res, path, 400, net::error_body("/ws expects a WebSocket upgrade", "validation"));
      reply(*res, "other", 404, net::error_body("no route for " + req.method + " " + path, "not_found"));
    } catch (const net::ApiError& e) {
      reply(*res, path, e.status(), net::error_body(e.what(), e.error_type()));
    } catch (const std::exception& e) {
      reply(*res, path, 500, net::error_body(e.what(), "internal"));
    }
  }

  bool is_websocket_path(const std::string& path) const override { return path == "/ws"; }

  std::shared_ptr<net::WsHandler> open_websocket(const net::HttpRequest&,
                                                 std::shared_ptr<net::WsWriter> writer) override {
    rt_.metrics->count_request("/ws", 101);
    return open_ws_session(rt_, std::move(writer));
  }

 private:
  template <typename F>
  void only(const net::HttpRequest& req, const std::shared_ptr<net::HttpResponder>& res,
            const char* method, F&& fn) {
    if (req.method != method) {
      reply(*res, req.path, 405,
            net::error_body(req.method + " is not allowed on " + req.path + "; use " + method, "method_not_allowed"),
            {{"Allow", method}});
      return;
    }
    fn();
  }

  void reply(net::HttpResponder& res, const std::string& endpoint, int status, std::string body,
             std::map<std::string, std::string> headers = {}) {
    rt_.metrics->count_request(endpoint, status);
    res.send(status, kJson, std::move(body), std::move(headers));
  }

  // The chat UI's files. They are not fingerprinted, so browsers revalidate each load (no-cache)
  // and get a 304 while the ETag still matches. GET / is counted as /index.html, apart from
  // TGI's POST /.
  void asset(const net::HttpRequest& req, net::HttpResponder& res, const web::Asset& a) {
    std::map<std::string, std::string> headers = {{"Cache-Control", "no-cache"},
                                                  {"ETag", std::string(a.etag)},
                                                  {"Content-Security-Policy", kUiPolicy},
                                                  {"X-Content-Type-Options", "nosniff"},
                                                  {"Referrer-Policy", "no-referrer"}};
    const std::string endpoint(a.path);
    auto match = req.headers.find("if-none-match");
    const bool fresh = match != req.headers.end() && match->second == a.etag;
    rt_.metrics->count_request(endpoint, fresh ? 304 : 200);
    if (fresh) return res.send(304, std::string(a.content_type), "", std::move(headers));
    res.send(200, std::string(a.content_type), std::string(a.body), std::move(headers));
  }

  void health(net::HttpResponder& res, bool sagemaker) {
    const bool ok = rt_.ready.load();
    const std::string endpoint = sagemaker ? "/ping" : "/health";
    if (sagemaker) reply(res, endpoint, ok ? 200 : 503, ok ? R"({"status":"healthy"})" : R"({"status":"loading"})");
    else reply(res, endpoint, ok ? 200 : 503, ok ? "" : net::error_body("model is loading", "unavailable"));
  }

  std::string info() const {
    const FalconConfig& c = rt_.model->config;
    JsonWriter w;
    w.begin_object();
    w.key("model_id").value(model_id());
    w.key("model_dir").value(rt_.options.model_dir);
    w.key("model_type").value(c.model_type);
    w.key("model_dtype").value(std::string(dtype_name(rt_.model->weights.word_embeddings->dtype)));
    w.key("model_device_type").value(rt_.options.device);
    w.key("max_concurrent_requests").value(static_cast<int64_t>(rt_.options.max_queue) * rt_.options.replicas);
    w.key("max_best_of").value(int64_t{1});
    w.key("max_stop_sequences").value(int64_t{8});
    w.key("max_input_tokens").value(rt_.options.max_input_tokens);
    w.key("max_total_tokens").value(rt_.options.max_total_tokens);
    w.key("max_batch_size").value(static_cast<int64_t>(rt_.options.max_batch_size));
    w.key("replicas").value(static_cast<int64_t>(rt_.options.replicas));
    w.key("tensor_parallel_degree").value(static_cast<int64_t>(rt_.options.tensor_parallel_degree));
    w.key("router").value("eyrie");
    w.key("version").value("0.1.0");
    w.key("architecture").value(c.describe());
    w.end_object();
    return w.take();
  }

  void tokenize(const net::HttpRequest& req, net::HttpResponder& res) {
    simdjson::dom::parser parser;
    simdjson::dom::element root = net::parse_json(parser, req.body);
    std::string_view inputs;
    if (root["inputs"].get(inputs)) throw net::ApiError::validation("missing string field `inputs`");
    reply(res, req.path, 200, net::tgi_tokenize_response(*rt_.tokenizer, std::string(inputs)));
  }

  net::GenerateParams defaults() const {
    net::GenerateParams p;
    p.sampling.max_new_tokens = rt_.options.default_max_new_tokens;
    return p;
  }

  void generate(const net::HttpRequest& req, const std::shared_ptr<net::HttpResponder>& res,
                const std::string& path) {
    net::GenerateRequestBody body = net::parse_generate_body(req.body, defaults());
    HttpGeneration g;
    g.endpoint = path;
    g.api = path == "/generate_stream" || (path == "/" && body.stream) ? HttpApi::tgi_stream : HttpApi::tgi_generate;
    g.prompt = std::move(body.inputs);
    g.params = body.params;
    start_http_generation(rt_, std::move(g), res);
  }

  // SageMaker: TGI-style {"inputs","parameters"} or {"text","text_length"}, which behaves like
  // the transformers pipeline call: text_length counts prompt tokens too, sampling is on.
  void invocations(const net::HttpRequest& req, const std::shared_ptr<net::HttpResponder>& res) {
    simdjson::dom::parser parser;
    simdjson::dom::element root = net::parse_json(parser, req.body);
    simdjson::dom::element in;
    if (!root["inputs"].get(in)) return generate(req, res, "/invocations");
    std::string_view text;
    if (root["text"].get(text))
      throw net::ApiError::validation("the body needs `inputs` (TGI style) or `text` (with `text_length`)");
    HttpGeneration g;
    g.api = HttpApi::sagemaker_text;
    g.endpoint = "/invocations";
    g.prompt = std::string(text);
    g.params.sampling.do_sample = true;
    g.params.sampling.top_k = 50;
    int64_t total = 0;
    simdjson::dom::element len;
    if (root["text_length"].get(len) || len.get(total))
      throw net::ApiError::validation("`text_length` must be an integer (total tokens, prompt included)");
    const auto prompt_tokens = static_cast<int64_t>(rt_.tokenizer->encode(g.prompt).size());
    if (total <= prompt_tokens)
      throw net::ApiError::validation("`text_length` (" + std::to_string(total) +
                                      ") must exceed the prompt's " + std::to_string(prompt_tokens) +
                                      " tokens");
    g.params.sampling.max_new_tokens = total - prompt_tokens;
    start_http_generation(rt_, std::move(g), res);
  }

  std::string model_id() const { return std::filesystem::path(rt_.options.model_dir).filename().string(); }

  void openai(const net::HttpRequest& req, const std::shared_ptr<net::HttpResponder>& res, bool chat) {
    net::OpenAiRequest o = net::parse_openai_request(req.body, chat, rt_.options.default_max_new_tokens);
    HttpGeneration g;
    g.api = o.stream ? HttpApi::openai_stream : HttpApi::openai;
    g.endpoint = req.path;
    g.prompt = std::move(o.prompt);
    g.params = o.params;
    g.openai.chat = chat;
    g.openai.id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_openai_id_.fetch_add(1));
    g.openai.created = static_cast<int64_t>(std::time(nullptr));
    g.openai.model = o.model.empty() ? model_id() : o.model;
    start_http_generation(rt_, std::move(g), res);
  }

  Runtime::Impl& rt_;
  const int64_t started_ = static_cast<int64_t>(std::time(nullptr));
  std::atomic<uint64_t> next_openai_id_{1};
};

}  // namespace

std::shared_ptr<net::HttpHandler> make_http_frontend(Runtime::Impl& rt) { return std::make_shared<Frontend>(rt); }

}  // namespace eyrie
