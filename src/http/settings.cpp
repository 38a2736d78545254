#include <chimera/http/settings.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace chimera {

std::string validate(const Timeouts& t) {
  const std::pair<const char*, int64_t> fields[] = {{"connect_ms", t.connect_ms},
                                                    {"first_token_ms", t.first_token_ms},
                                                    {"idle_ms", t.idle_ms},
                                                    {"total_ms", t.total_ms},
                                                    {"min_rate_window_ms", t.min_rate_window_ms},
                                                    {"check_ms", t.check_ms}};
  for (const auto& [name, v] : fields) {
    if (v < 0 || v > kMaxTimeoutMs) {
      return fmt::format("timeout {} is {}; it must be from 0 (none) to {} ms (a week)", name, v,
                         kMaxTimeoutMs);
    }
  }
  if (t.min_rate_bytes_per_s < 0 || t.min_rate_bytes_per_s > 1'000'000'000) {
    return fmt::format("min_rate_bytes_per_s is {}; it must be from 0 (no minimum) to 1000000000",
                       t.min_rate_bytes_per_s);
  }
  return {};
}

std::string redact_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const std::size_t authority = scheme_end + 3;
  const std::size_t authority_end = std::min(url.find_first_of("/?#", authority), url.size());
  const std::size_t at = url.rfind('@', authority_end - 1);
  if (at == std::string_view::npos || at < authority) return std::string(url);
  const std::size_t colon = url.find(':', authority);
  if (colon == std::string_view::npos || colon > at) return std::string(url);  // no password
  return fmt::format("{}***{}", url.substr(0, colon + 1), url.substr(at));
}

}  // namespace chimera
