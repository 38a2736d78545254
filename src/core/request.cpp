#include <chimera/core/request.hpp>

#include <fmt/format.h>

#include <chrono>

namespace chimera {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// validate(Options) is generated from the option table: src/core/options.cpp.

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::none:
      return "none";
    case FinishReason::stop:
      return "stop";
    case FinishReason::length:
      return "length";
    case FinishReason::tool_calls:
      return "tool_calls";
    case FinishReason::cancelled:
      return "cancelled";
    case FinishReason::error:
      return "error";
  }
  return "unknown";
}

const char* to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::none:
      return "none";
    case ErrorKind::bad_request:
      return "bad_request";
    case ErrorKind::connect:
      return "connect";
    case ErrorKind::timeout:
      return "timeout";
    case ErrorKind::http_status:
      return "http_status";
    case ErrorKind::server:
      return "server";
    case ErrorKind::protocol:
      return "protocol";
    case ErrorKind::truncated:
      return "truncated";
    case ErrorKind::cancelled:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace chimera
