// Reading one TOML table with errors that name the file, the line and the key (private to the
// library): the readers of pool files and scene files share it.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::detail {

// "file:line" of a node, or the file alone when the node has no position.
inline std::string where(const std::string& source, const toml::node& n) {
  const auto& s = n.source();
  if (s.begin.line == 0) return source;
  return fmt::format("{}:{}", source, s.begin.line);
}

// One table's keys, each checked for its type; false (with `error` set) on the first mistake.
class Reader {
 public:
  Reader(const toml::table& t, const std::string& source, std::string& error)
      : t_(t), source_(source), error_(error) {}

  bool known(std::vector<std::string_view> keys, const char* what) {
    for (const auto& [k, v] : t_) {
      if (std::find(keys.begin(), keys.end(), k.str()) == keys.end()) {
        error_ = fmt::format("{}: unknown key '{}' in {} (known: {})", where(source_, v), k.str(),
                             what, fmt::join(keys, ", "));
        return false;
      }
    }
    return true;
  }
  bool str(const char* key, std::string& out) {
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (!n->is_string()) return fail(*n, key, "a string");
    out = *n->value<std::string>();
    return true;
  }
  template <class T>
  bool integer(const char* key, T& out) {
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (!n->is_integer()) return fail(*n, key, "an integer");
    out = static_cast<T>(*n->value<int64_t>());
    return true;
  }
  template <class T>
  bool integer(const char* key, std::optional<T>& out) {
    T v{};
    const bool present = t_.get(key) != nullptr;
    if (!integer(key, v)) return false;
    if (present) out = v;
    return true;
  }
  bool number(const char* key, std::optional<double>& out) {
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (!n->is_number()) return fail(*n, key, "a number");
    out = *n->value<double>();
    return true;
  }
  bool boolean(const char* key, bool& out) {
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (!n->is_boolean()) return fail(*n, key, "true or false");
    out = *n->value<bool>();
    return true;
  }
  bool strings(const char* key, std::vector<std::string>& out) {
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (n->is_string()) {
      out = {*n->value<std::string>()};
      return true;
    }
    if (!n->is_array()) return fail(*n, key, "a string or an array of strings");
    out.clear();
    for (const auto& e : *n->as_array()) {
      if (!e.is_string()) return fail(e, key, "a string or an array of strings");
      out.push_back(*e.value<std::string>());
    }
    return true;
  }
  bool range(const char* key, int64_t value, int64_t lo, int64_t hi) {
    if (value >= lo && value <= hi) return true;
    const toml::node* n = t_.get(key);
    error_ = fmt::format("{}: '{}' is {}; it must be between {} and {}",
                         n ? where(source_, *n) : source_, key, value, lo, hi);
    return false;
  }
  const toml::table& table() const { return t_; }

 private:
  bool fail(const toml::node& n, const char* key, const char* what) {
    error_ = fmt::format("{}: '{}' must be {}", where(source_, n), key, what);
    return false;
  }
  const toml::table& t_;
  const std::string& source_;
  std::string& error_;
};

}  // namespace chimera::detail
