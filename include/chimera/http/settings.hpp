// What every HTTP endpoint is configured with: its timeouts and its size limits, and how a URL
// is shown in messages (its password hidden). The HTTP client owns these; backends and pools
// carry them in their endpoint configurations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace chimera {

// Timeouts, in milliseconds. 0 disables one. Each is at most kMaxTimeoutMs.
struct Timeouts {
  int64_t connect_ms = 5'000;        // TCP connect
  int64_t first_token_ms = 120'000;  // from sending the request to the first token
  int64_t idle_ms = 30'000;          // between two reads once tokens flow
  int64_t total_ms = 900'000;        // the whole request
  // The minimum rate once tokens flow (curl's --speed-limit/--speed-time): a stream that brings
  // fewer than min_rate_bytes_per_s on average over any min_rate_window_ms fails as a timeout.
  // The idle timeout cannot catch a server that trickles a byte every few hundred ms. The
  // default fails a stream slower than 16 bytes/s over 30 s: a tenth of a slow model's token
  // rate (one token a second is about 100-300 bytes of NDJSON or SSE). 0 disables it.
  int64_t min_rate_bytes_per_s = 16;
  int64_t min_rate_window_ms = 30'000;
  int64_t check_ms = 5'000;  // each request of a health or model-list check (check())
};
inline constexpr int64_t kMaxTimeoutMs = 7LL * 24 * 3'600'000;  // a week

// "" when every timeout is from 0 to kMaxTimeoutMs (and the rate from 0 to 1 GB/s); otherwise
// what is wrong, naming the field.
std::string validate(const Timeouts& timeouts);

struct Limits {
  std::size_t max_record_bytes = 1 << 20;   // one NDJSON line or SSE event
  std::size_t max_body_bytes = 256u << 20;  // a whole response body
  std::size_t max_idle_connections = 16;    // kept open per endpoint for reuse
};

// The URL with its password replaced by "***" ("http://user:***@host:port"), for messages
// and records; anything that is not a URL with a password comes back unchanged.
std::string redact_url(std::string_view url);

}  // namespace chimera
