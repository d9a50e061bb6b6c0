// Request conversion and the fixed replies the server writes on its own.
#include "net/http_messages.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <cstdio>
#include <sstream>

#include "net/json_writer.hpp"

namespace eyrie::net {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view kServerName = "eyrie";

template <typename Message>
std::string to_bytes(const Message& m) {
  std::ostringstream os;
  os << m;
  return std::move(os).str();
}

}  // namespace

HttpRequest to_http_request(http::request<http::string_body>&& req, const std::string& remote) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  out.target = std::string(req.target());
  out.path = out.target.substr(0, out.target.find('?'));
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto [it, inserted] = out.headers.emplace(name, std::string(field.value()));
    // Repeated fields are equivalent to one comma-separated field (RFC 9110 section 5.3).
    if (!inserted) it->second.append(", ").append(field.value());
  }
  out.body = std::move(req.body());
  out.remote = remote;
  return out;
}

std::string json_error(std::string_view message, std::string_view error_type) {
  JsonWriter w;
  w.begin_object().key("error").value(message).key("error_type").value(error_type).end_object();
  return w.take();
}

std::string serialize_response(unsigned status, unsigned version, bool keep_alive,
                               std::string_view content_type, std::string body,
                               const std::map<std::string, std::string>& extra_headers) {
  http::response<http::string_body> res;
  res.version(version);
  res.result(status);
  res.set(http::field::server, kServerName);
  res.set(http::field::content_type, content_type);
  for (const auto& [name, value] : extra_headers) res.set(name, value);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return to_bytes(res);
}

std::string error_reply(unsigned status, std::string_view message, std::string_view error_type,
                        unsigned version) {
  return serialize_response(status, version, false, "application/json",
                            json_error(message, error_type));
}

std::string stream_header(unsigned version, bool keep_alive, std::string_view content_type) {
  http::response<http::empty_body> res;
  res.version(version);
  res.result(http::status::ok);
  res.set(http::field::server, kServerName);
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-cache");
  // Stops nginx and similar proxies from holding events back in their buffers.
  if (content_type.starts_with("text/event-stream")) res.set("X-Accel-Buffering", "no");
  if (version >= 11) {
    res.chunked(true);
    res.keep_alive(keep_alive);
  } else {
    res.keep_alive(false);
  }
  return to_bytes(res.base());
}

std::string chunk(std::string_view data) {
  char size[32];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string out;
  out.reserve(static_cast<std::size_t>(n) + data.size() + 2);
  out.append(size, static_cast<std::size_t>(n)).append(data).append("\r\n");
  return out;
}

}  // namespace eyrie::net
