// Server-sent events framing (text/event-stream) for streamed responses.
#pragma once

#include <string>
#include <string_view>

namespace eyrie::net {

// One event: an "event:" line when event is given, then one "data:" line per line of data
// (a browser's EventSource joins them with \n again), then the blank line that ends the event.
std::string sse_event(std::string_view data, std::string_view event = {});

// A comment line, ignored by clients; sent as a keep-alive so proxies do not time out.
std::string sse_comment(std::string_view text);

}  // namespace eyrie::net
