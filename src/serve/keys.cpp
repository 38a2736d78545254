// API keys and their limits: the keys file, and the per-key counters serve checks before a
// generation request (keys.hpp).
#include "serve/keys.hpp"

#include "core/toml_reader.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>

namespace chimera::serve {

using chimera::detail::Reader;

bool parse_keys(std::string_view text, const std::string& source, std::vector<ApiKey>& out,
                std::string& error) {
  toml::table root;
  if (!chimera::detail::parse_toml(text, source, root, error)) return false;
  Reader top(root, source, error);
  if (!top.known({"key"}, "a keys file")) return false;
  const toml::node* keys = root.get("key");
  if (keys == nullptr) {
    error = fmt::format("{}: no [[key]] table; a keys file lists [[key]] tables", source);
    return false;
  }
  if (!keys->is_array_of_tables()) {
    error = fmt::format("{}: 'key' must be [[key]] tables", source);
    return false;
  }
  out.clear();
  for (const auto& node : *keys->as_array()) {
    const toml::table& t = *node.as_table();
    Reader r(t, source, error);
    ApiKey k;
    if (!r.known({"key", "name", "max_concurrency", "requests_per_minute"}, "[[key]]") ||
        !r.str("key", k.key) || !r.str("name", k.name) ||
        !r.integer("max_concurrency", k.max_concurrency, 0, 1'000'000) ||
        !r.integer("requests_per_minute", k.requests_per_minute, 0, 1'000'000'000)) {
      return false;
    }
    if (k.key.empty()) {
      error = fmt::format("{}: [[key]] {} has no 'key'", detail::where(source, t), out.size() + 1);
      return false;
    }
    if (k.name.empty()) k.name = fmt::format("key {}", out.size() + 1);
    for (const auto& other : out) {
      if (other.key == k.key) {
        error = fmt::format("{}: {} repeats the key of {}", detail::where(source, t), k.name,
                            other.name);
        return false;
      }
    }
    out.push_back(std::move(k));
  }
  return true;
}

bool load_keys(const std::string& file, std::vector<ApiKey>& out, std::string& error) {
  std::string text;
  if (!chimera::detail::read_config_file(file, "keys file", text, error)) return false;
  return parse_keys(text, file, out, error);
}

KeyLimits::KeyLimits(std::vector<ApiKey> keys) : keys_(std::move(keys)), state_(keys_.size()) {
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    state_[i].tokens = keys_[i].requests_per_minute;
    state_[i].refilled = std::chrono::steady_clock::now();
  }
}

KeyLimits::Verdict KeyLimits::admit(std::string_view authorization) {
  Verdict v;
  if (keys_.empty()) return v;
  std::string_view key = authorization;
  if (key.size() >= 7 && (key.substr(0, 7) == "Bearer " || key.substr(0, 7) == "bearer ")) {
    key.remove_prefix(7);
  } else {
    key = {};
  }
  const auto it = std::find_if(keys_.begin(), keys_.end(),
                               [&](const ApiKey& k) { return !key.empty() && k.key == key; });
  if (it == keys_.end()) {
    v.status = 401;
    v.message = authorization.empty()
                    ? "no API key: send 'Authorization: Bearer KEY' with a key of this server"
                    : "the API key is not one of this server's keys";
    return v;
  }
  const std::size_t i = static_cast<std::size_t>(it - keys_.begin());
  std::lock_guard lock(mu_);
  State& s = state_[i];
  if (it->max_concurrency > 0 && s.in_flight >= it->max_concurrency) {
    v.status = 429;
    v.message = fmt::format("{} has {} requests in flight, its limit", it->name, s.in_flight);
    v.retry_after_s = 1;
    return v;
  }
  if (it->requests_per_minute > 0) {
    // A token bucket: a minute's requests at once at most, refilled evenly.
    const auto now = std::chrono::steady_clock::now();
    const double minutes = std::chrono::duration<double>(now - s.refilled).count() / 60.0;
    s.tokens =
        std::min<double>(it->requests_per_minute, s.tokens + minutes * it->requests_per_minute);
    s.refilled = now;
    if (s.tokens < 1) {
      v.status = 429;
      v.message = fmt::format("{} is over its limit of {} requests per minute", it->name,
                              it->requests_per_minute);
      v.retry_after_s =
          std::max(1, static_cast<int>((1 - s.tokens) * 60.0 / it->requests_per_minute + 0.999));
      return v;
    }
    s.tokens -= 1;
  }
  ++s.in_flight;
  v.index = static_cast<int>(i);
  return v;
}

void KeyLimits::release(int index) {
  if (index < 0) return;
  std::lock_guard lock(mu_);
  --state_[static_cast<std::size_t>(index)].in_flight;
}

}  // namespace chimera::serve
