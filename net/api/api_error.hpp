// Errors of the HTTP and WebSocket APIs, with TGI's status codes and error types.
#pragma once

#include <string>

#include "model/error.hpp"

namespace eyrie::net {

class ApiError : public Error {
 public:
  ApiError(int status, std::string error_type, const std::string& message)
      : Error(message), status_(status), error_type_(std::move(error_type)) {}
  int status() const { return status_; }
  const std::string& error_type() const { return error_type_; }

  static ApiError bad_json(const std::string& m) { return {400, "validation", m}; }
  static ApiError validation(const std::string& m) { return {422, "validation", m}; }
  static ApiError overloaded() { return {429, "overloaded", "Model is overloaded: the request queue is full"}; }

 private:
  int status_;
  std::string error_type_;
};

// {"error": message, "error_type": type}
std::string error_body(const std::string& message, const std::string& error_type);

}  // namespace eyrie::net
