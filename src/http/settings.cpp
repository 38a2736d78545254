#include <chimera/http/settings.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
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

namespace {

bool is_token_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  return std::string_view("\"(),/:;<=>?@[\\]{}").find(c) == std::string_view::npos;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::string validate_headers(const Headers& headers) {
  for (std::size_t i = 0; i < headers.size(); ++i) {
    const auto& [name, value] = headers[i];
    // An invalid name is not shown: it may be a mistyped secret.
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char)) {
      return fmt::format(
          "the name of header {} (of {}) is not an HTTP token (letters, digits, '-', no spaces)",
          i + 1, headers.size());
    }
    for (const char* own : {"Host", "Content-Length", "Transfer-Encoding", "Connection"}) {
      if (iequals(name, own)) {
        return fmt::format("header '{}' is written by the client itself and cannot be set", name);
      }
    }
    if (std::any_of(value.begin(), value.end(), [](char c) {
          const auto u = static_cast<unsigned char>(c);
          return (u < 0x20 && c != '\t') || u == 0x7f;
        })) {
      return fmt::format("the value of header '{}' holds a control character (a line break?)",
                         name);
    }
  }
  return {};
}

bool parse_header(std::string_view line, std::pair<std::string, std::string>& out,
                  std::string& error) {
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    error = "a header is written 'Name: value' (as curl's -H); this one has no name before a ':'";
    return false;
  }
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  out = {std::string(line.substr(0, colon)), std::string(value)};
  return true;
}

std::string validate(const Retry& r) {
  if (r.attempts < 1 || r.attempts > kMaxAttempts) {
    return fmt::format("retry attempts is {}; it must be from 1 (no retry) to {}", r.attempts,
                       kMaxAttempts);
  }
  const std::pair<const char*, int64_t> fields[] = {{"budget_ms", r.budget_ms},
                                                    {"base_delay_ms", r.base_delay_ms},
                                                    {"max_delay_ms", r.max_delay_ms}};
  for (const auto& [name, v] : fields) {
    if (v < 0 || v > kMaxTimeoutMs) {
      return fmt::format("retry {} is {}; it must be from 0 to {} ms", name, v, kMaxTimeoutMs);
    }
  }
  return {};
}

int64_t retry_after_ms(std::string_view value) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return -1;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return kMaxTimeoutMs;  // more than a week anyway
    return std::stoll(std::string(value)) * 1000;
  }
  std::tm tm{};
  const std::string text(value);
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return -1;
  const std::time_t at = ::timegm(&tm);
  const std::time_t now = std::time(nullptr);
  return at <= now ? 0 : static_cast<int64_t>(at - now) * 1000;
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
