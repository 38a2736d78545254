// What every HTTP endpoint is configured with: its timeouts and its size limits, and how a URL
// is shown in messages (its password hidden). The HTTP client owns these; backends and pools
// carry them in their endpoint configurations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// Retries on the same endpoint before anything reached the caller: a connection refused or
// reset, HTTP 429 or 503. The wait is the server's Retry-After (seconds or an HTTP date) when it
// sends one, else an exponential back-off with jitter (base_delay_ms doubled each retry, up to
// max_delay_ms, a random half of it taken off). No retry once a byte of a 2xx body reached the
// caller (it could duplicate text), nor one whose wait would end after `budget_ms` from the first
// try or after the request's own deadline (first-token, total). attempts = 1 turns retries off.
struct Retry {
  int attempts = 3;  // tries in all, the first included: 1 to kMaxAttempts
  int64_t budget_ms = 10'000;
  int64_t base_delay_ms = 100;
  int64_t max_delay_ms = 2'000;
};
inline constexpr int kMaxAttempts = 100;

// "" when the retry settings are within their bounds; otherwise what is wrong, naming the field.
std::string validate(const Retry& retry);

// A Retry-After value as a wait in ms: delta-seconds ("120") or an HTTP date ("Wed, 21 Oct 2015
// 07:28:00 GMT", against the clock now); -1 when it is neither. A date in the past is 0.
int64_t retry_after_ms(std::string_view value);

struct Limits {
  std::size_t max_record_bytes = 1 << 20;   // one NDJSON line or SSE event
  std::size_t max_body_bytes = 256u << 20;  // a whole response body
  std::size_t max_idle_connections = 16;    // kept open per endpoint for reuse
  // An idle connection kept longer than this is closed instead of reused (its server has most
  // likely closed its end by then); 0: kept until reused. 90 s, as hyper's pool keeps them.
  int64_t idle_expiry_ms = 90'000;
};

// TLS for https:// endpoints. Verified by default against the system's CA store (OpenSSL's
// default paths, /etc/ssl/certs on Debian), with SNI and a check of the host name (or address)
// against the certificate. Ignored for http:// endpoints.
struct Tls {
  std::string ca_file;      // PEM file of CA certificates trusted instead of the system store
  std::string client_cert;  // PEM certificate (chain) for mutual TLS; needs client_key
  std::string client_key;   // PEM private key of client_cert
  bool insecure = false;    // no verification at all (a warning is printed on stderr)
};

// Extra request headers, as {name, value}.
using Headers = std::vector<std::pair<std::string, std::string>>;

// "" when every name is an HTTP token and no value holds a control character (a tab aside), and
// none is a header the client writes itself (Host, Content-Length, Transfer-Encoding,
// Connection); otherwise what is wrong, naming the header but never showing its value.
std::string validate_headers(const Headers& headers);

// Reads "Name: value" (curl's -H form) into `out`; false with `error` set (naming the header,
// not its value) when there is no ':' or the name is empty.
bool parse_header(std::string_view line, std::pair<std::string, std::string>& out,
                  std::string& error);

// The URL with its password replaced by "***" ("http://user:***@host:port"), for messages
// and records; anything that is not a URL with a password comes back unchanged.
std::string redact_url(std::string_view url);

}  // namespace chimera
