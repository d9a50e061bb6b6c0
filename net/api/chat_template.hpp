// Chat messages rendered into a Falcon-instruct prompt.
#pragma once

#include <string>
#include <vector>

#include <simdjson.h>

namespace eyrie::net {

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

// Reads [{"role","content"}]; throws ApiError 422 naming the bad entry.
std::vector<ChatMessage> parse_chat_messages(simdjson::dom::array messages);

// "System: ...\nUser: ...\nFalcon: ...\nUser: ...\nFalcon:", the format Falcon's instruct and
// chat models were tuned on; the prompt ends where the model's reply begins.
std::string render_falcon_chat(const std::vector<ChatMessage>& messages);

}  // namespace eyrie::net
