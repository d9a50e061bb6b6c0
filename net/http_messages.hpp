// Conversions between Beast messages and the seam's types, and the server's own canned replies
// (error bodies, headers of streamed responses, chunk framing).
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <map>
#include <string>
#include <string_view>

#include "net/http_types.hpp"

namespace eyrie::net {

HttpRequest to_http_request(boost::beast::http::request<boost::beast::http::string_body>&& req,
                            const std::string& remote);

// {"error":"...","error_type":"..."}
std::string json_error(std::string_view message, std::string_view error_type);

// A whole serialized response; version is 10 or 11 as in the request.
std::string serialize_response(unsigned status, unsigned version, bool keep_alive,
                               std::string_view content_type, std::string body,
                               const std::map<std::string, std::string>& extra_headers = {});

// A JSON error response that ends the connection.
std::string error_reply(unsigned status, std::string_view message, std::string_view error_type,
                        unsigned version);

// The header of a streamed 200; chunked unless the client speaks HTTP/1.0, in which case the
// body runs until the connection closes.
std::string stream_header(unsigned version, bool keep_alive, std::string_view content_type);

std::string chunk(std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace eyrie::net
