// Routes of the HTTP API: each a function from a parsed request to a reply or a session.
#pragma once

#include <memory>

#include "actors/runtime_impl.hpp"
#include "net/http_types.hpp"

namespace eyrie {

std::shared_ptr<net::HttpHandler> make_http_frontend(Runtime::Impl& rt);

}  // namespace eyrie
