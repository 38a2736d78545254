#include <chimera/core/request.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cmath>

namespace chimera {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// validate(Options) is generated from the option table: src/core/options.cpp.

std::string validate(const std::vector<LogitBias>& logit_bias) {
  constexpr std::size_t kMaxLogitBias = 1'024;
  if (logit_bias.size() > kMaxLogitBias) {
    return fmt::format("logit_bias has {} entries; at most {} are taken", logit_bias.size(),
                       kMaxLogitBias);
  }
  for (std::size_t i = 0; i < logit_bias.size(); ++i) {
    const LogitBias& b = logit_bias[i];
    if (b.token < 0) {
      return fmt::format("logit_bias entry {} names token {}; a token id is 0 or more", i, b.token);
    }
    if (!std::isfinite(b.bias) || b.bias < -100.0 || b.bias > 100.0) {
      return fmt::format("logit_bias entry {} (token {}) has bias {}; it must be from -100 to 100",
                         i, b.token, b.bias);
    }
  }
  return {};
}

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
