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

namespace {

std::string check_int(const char* name, const std::optional<int>& v, int64_t lo, int64_t hi) {
  if (!v || (*v >= lo && *v <= hi)) return {};
  return fmt::format("{} is {}; it must be from {} to {}", name, *v, lo, hi);
}

std::string check_number(const char* name, const std::optional<double>& v, double lo, double hi) {
  if (!v) return {};
  if (!std::isfinite(*v)) {
    return fmt::format("{} is {}; it must be a finite number from {} to {}", name, *v, lo, hi);
  }
  if (*v < lo || *v > hi) return fmt::format("{} is {}; it must be from {} to {}", name, *v, lo, hi);
  return {};
}

}  // namespace

std::string validate(const Options& o) {
  for (std::string e : {check_int("num_ctx", o.num_ctx, 1, kMaxNumCtx),
                        check_int("num_gpu", o.num_gpu, -1, 100'000),
                        check_int("num_thread", o.num_thread, 0, 4'096),
                        check_int("top_k", o.top_k, 0, 1'000'000),
                        check_number("temperature", o.temperature, 0, 100),
                        check_number("top_p", o.top_p, 0, 1),
                        check_number("min_p", o.min_p, 0, 1),
                        check_number("repeat_penalty", o.repeat_penalty, 0, 100)}) {
    if (!e.empty()) return e;
  }
  // Ollama's -1 (no limit) and -2 (fill the context) mean something, and 0 (read the prompt,
  // generate nothing: a prefill); other negative values do not (llama.cpp reads any of them as
  // "no limit").
  if (o.num_predict && (*o.num_predict < -2 || *o.num_predict > kMaxNumPredict)) {
    return fmt::format("num_predict is {}; it must be -1 (no limit), -2 (fill the context) or "
                       "from 0 to {}",
                       *o.num_predict, kMaxNumPredict);
  }
  if (o.stop.size() > static_cast<std::size_t>(kMaxStopStrings)) {
    return fmt::format("{} stop strings; at most {} are accepted", o.stop.size(), kMaxStopStrings);
  }
  for (const auto& s : o.stop) {
    if (s.empty()) return "a stop string is empty";
    if (s.size() > kMaxStopBytes) {
      return fmt::format("a stop string is {} bytes long; at most {} are accepted", s.size(),
                         kMaxStopBytes);
    }
  }
  return {};
}

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::tool_calls: return "tool_calls";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "unknown";
}

const char* to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::none: return "none";
    case ErrorKind::bad_request: return "bad_request";
    case ErrorKind::connect: return "connect";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::http_status: return "http_status";
    case ErrorKind::server: return "server";
    case ErrorKind::protocol: return "protocol";
    case ErrorKind::truncated: return "truncated";
    case ErrorKind::cancelled: return "cancelled";
  }
  return "unknown";
}

}  // namespace chimera
