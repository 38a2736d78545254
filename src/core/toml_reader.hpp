// Reading one TOML table with errors that name the file, the line and the key (private to the
// library): the readers of pool files, scene files, workflow configurations and the C ABI's
// engine configuration share it. Every integer is checked against the range of the type it is
// read into before it is converted (4294967297 read into an int is an error, never 1), and
// every floating-point number is checked for being finite (nan and inf are TOML numbers too).
#pragma once

#include <chimera/core/options.hpp>
#include <chimera/core/request.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace chimera::detail {

// Reads a configuration file whole into `text`; false with "cannot read <what> '<file>': <reason>".
inline bool read_config_file(const std::filesystem::path& file, const char* what, std::string& text,
                             std::string& error) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read {} '{}': {}", what, file.string(), std::strerror(errno));
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  text = std::move(ss).str();
  return true;
}

// Parses a whole TOML document; false with "source:line:column: what is wrong" on a syntax error.
inline bool parse_toml(std::string_view text, const std::string& source, toml::table& root,
                       std::string& error) {
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    error = fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                        e.description());
    return false;
  }
  return true;
}

// "file:line" of a node, or the file alone when the node has no position.
inline std::string where(const std::string& source, const toml::node& n) {
  const auto& s = n.source();
  if (s.begin.line == 0) return source;
  return fmt::format("{}:{}", source, s.begin.line);
}

// One table's keys, each checked for its type; false (with `error` set) on the first mistake.
// It keeps references to `source` and `error`: both must outlive it (not a temporary).
class Reader {
 public:
  Reader(const toml::table& t, const std::string& source, std::string& error)
      : t_(t), source_(source), error_(error) {}
  Reader(const toml::table& t, std::string&& source, std::string& error) = delete;

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
  // An integer within [lo, hi], both within T; by default T's whole range.
  template <class T>
  bool integer(const char* key, T& out, int64_t lo = std::numeric_limits<T>::min(),
               int64_t hi = static_cast<int64_t>(std::min<uintmax_t>(
                   std::numeric_limits<T>::max(), std::numeric_limits<int64_t>::max()))) {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (!n->is_integer()) return fail(*n, key, "an integer");
    const int64_t v = *n->value_exact<int64_t>();
    if (!range(key, v, lo, hi)) return false;
    out = static_cast<T>(v);
    return true;
  }
  template <class T>
  bool integer(const char* key, std::optional<T>& out, int64_t lo = std::numeric_limits<T>::min(),
               int64_t hi = static_cast<int64_t>(std::min<uintmax_t>(
                   std::numeric_limits<T>::max(), std::numeric_limits<int64_t>::max()))) {
    T v{};
    const bool present = t_.get(key) != nullptr;
    if (!integer(key, v, lo, hi)) return false;
    if (present) out = v;
    return true;
  }
  // A finite number within [lo, hi] (an integer is taken as a number).
  bool number(const char* key, std::optional<double>& out,
              double lo = -std::numeric_limits<double>::max(),
              double hi = std::numeric_limits<double>::max()) {
    const toml::node* n = t_.get(key);
    if (n == nullptr) return true;
    if (!n->is_number()) return fail(*n, key, "a number");
    const double v = n->is_integer() ? static_cast<double>(*n->value_exact<int64_t>())
                                     : *n->value_exact<double>();
    if (!std::isfinite(v)) {
      error_ =
          fmt::format("{}: '{}' is {}; it must be a finite number", where(source_, *n), key, v);
      return false;
    }
    if (v < lo || v > hi) {
      error_ = fmt::format("{}: '{}' is {}; it must be from {} to {}", where(source_, *n), key, v,
                           lo, hi);
      return false;
    }
    out = v;
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
  // Where the table is ("file:line"), for errors about several of its keys at once.
  std::string location() const { return where(source_, t_); }
  // Where a key is, or the table when it is absent.
  std::string location(const char* key) const {
    const toml::node* n = t_.get(key);
    return n != nullptr ? where(source_, *n) : location();
  }
  bool range(const char* key, int64_t value, int64_t lo, int64_t hi) {
    if (value >= lo && value <= hi) return true;
    const toml::node* n = t_.get(key);
    error_ = fmt::format("{}: '{}' is {}; it must be between {} and {}",
                         n ? where(source_, *n) : source_, key, value, lo, hi);
    return false;
  }
  const toml::table& table() const { return t_; }
  std::string& error() { return error_; }

 private:
  bool fail(const toml::node& n, const char* key, const char* what) {
    error_ = fmt::format("{}: '{}' must be {}", where(source_, n), key, what);
    return false;
  }
  const toml::table& t_;
  const std::string& source_;
  std::string& error_;
};

// One option of the table (options.hpp), read with its type: an integer within the range of
// its type, a finite number, a string or a list of strings. Its own range is validate()'s.
template <class Spec>
bool read_option(Reader& r, const Spec& spec, Options& o) {
  auto& field = o.*spec.member;
  using Field = std::remove_cvref_t<decltype(field)>;
  if constexpr (kIsStringsOption<Field>) {
    return r.strings(spec.name, field);
  } else if constexpr (kIsNumberOption<Field>) {
    return r.number(spec.name, field);
  } else {
    return r.integer(spec.name, field);
  }
}

// The request options a configuration file may set: every option of the table (options.hpp),
// each read with its type, then validate(Options) as every front end does, so a file, a flag
// and an API call are held to the same bounds; an error names the file, the line and the key.
// The caller's known() decides which options its file type takes (option_names()). False with
// the reader's error set.
inline bool read_options(Reader& r, Options& o) {
  bool ok = true;
  for_each_option([&](const auto& spec) { ok = ok && read_option(r, spec, o); });
  if (!ok) return false;
  const std::string e = validate(o);
  if (e.empty()) return true;
  // validate() names the option first ("top_p is 7.5; ..."), or speaks of stop strings.
  const std::string first_word = e.substr(0, e.find(' '));
  const auto names = option_names();
  const bool named = std::find(names.begin(), names.end(), first_word) != names.end();
  r.error() = fmt::format("{}: {}", r.location(named ? first_word.c_str() : "stop"), e);
  return false;
}

}  // namespace chimera::detail
