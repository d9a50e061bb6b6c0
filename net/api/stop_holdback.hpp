// The text of an OpenAI stream with its stop sequences left out, as the non-streamed response
// leaves them out: a piece goes to the client only once no stop sequence can begin inside it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace eyrie::net {

class StopHoldback {
 public:
  explicit StopHoldback(std::vector<std::string> stops);

  // Adds a generated piece; returns the text that may be sent now (possibly empty). Once a stop
  // sequence has appeared, nothing from its first byte on is ever returned.
  std::string push(std::string_view piece);
  // At the end of the generation: the text still held that belongs to the output.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace eyrie::net
