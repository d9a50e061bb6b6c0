// Falcon chat rendering.
#include "net/api/chat_template.hpp"

#include "net/api/api_error.hpp"

namespace eyrie::net {

std::vector<ChatMessage> parse_chat_messages(simdjson::dom::array messages) {
  std::vector<ChatMessage> out;
  std::size_t i = 0;
  for (auto m : messages) {
    const std::string where = "`messages[" + std::to_string(i++) + "]`";
    simdjson::dom::object o;
    std::string_view role, content;
    if (m.get(o)) throw ApiError::validation(where + " must be an object");
    if (o["role"].get(role)) throw ApiError::validation(where + " needs a string `role`");
    if (o["content"].get(content)) throw ApiError::validation(where + " needs a string `content`");
    if (role != "system" && role != "user" && role != "assistant")
      throw ApiError::validation(where + ": unknown role '" + std::string(role) +
                                 "' (system, user or assistant)");
    out.push_back({std::string(role), std::string(content)});
  }
  if (out.empty()) throw ApiError::validation("`messages` must not be empty");
  return out;
}

std::string render_falcon_chat(const std::vector<ChatMessage>& messages) {
  std::string p;
  for (const auto& m : messages) {
    const char* who = m.role == "system" ? "System" : m.role == "user" ? "User" : "Falcon";
    p.append(who).append(": ").append(m.content).append("\n");
  }
  return p + "Falcon:";
}

}  // namespace eyrie::net
