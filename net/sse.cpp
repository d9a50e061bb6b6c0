// Server-sent events framing.
#include "net/sse.hpp"

namespace eyrie::net {

namespace {

// Calls fn for each line of text; \r\n, \n and \r all end a line, as the SSE grammar says.
template <typename Fn>
void for_each_line(std::string_view text, Fn fn) {
  std::size_t start = 0;
  while (true) {
    std::size_t end = text.find_first_of("\r\n", start);
    if (end == std::string_view::npos) {
      fn(text.substr(start));
      return;
    }
    fn(text.substr(start, end - start));
    start = end + ((text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n') ? 2 : 1);
  }
}

}  // namespace

std::string sse_event(std::string_view data, std::string_view event) {
  std::string out;
  out.reserve(data.size() + event.size() + 16);
  if (!event.empty()) {
    // A line break inside the name would start a new field; an event name is one line.
    std::string_view name = event.substr(0, event.find_first_of("\r\n"));
    out.append("event: ").append(name).append("\n");
  }
  for_each_line(data,
                [&](std::string_view line) { out.append("data: ").append(line).append("\n"); });
  out.append("\n");
  return out;
}

std::string sse_comment(std::string_view text) {
  std::string out;
  for_each_line(text, [&](std::string_view line) { out.append(": ").append(line).append("\n"); });
  out.append("\n");
  return out;
}

}  // namespace eyrie::net
