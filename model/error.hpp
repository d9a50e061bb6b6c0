// Error types thrown by model loading, tokenization and the engines.
#pragma once

#include <stdexcept>
#include <string>

namespace eyrie {

// Every error says what was wrong and where (file, tensor, key) in its message; callers that
// face users print what() as it is.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Invalid request arguments: the CLI maps these to exit code 2 and the server to HTTP 422.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// The request queue is full: retry later (HTTP 429).
class Overloaded : public Error {
 public:
  using Error::Error;
};

}  // namespace eyrie
