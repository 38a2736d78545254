// What the option table (options.hpp) generates that is not a template: validate(), the names,
// flags and help lines.
#include <chimera/core/options.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace chimera {

namespace {

// "from 0 to 100", or the option's own wording of its range.
template <class Spec>
std::string range_of(const Spec& spec) {
  if (spec.range_text != nullptr) {
    return fmt::format(fmt::runtime(spec.range_text), fmt::arg("lo", spec.lo),
                       fmt::arg("hi", spec.hi));
  }
  return fmt::format("from {} to {}", spec.lo, spec.hi);
}

template <class Spec>
std::string check(const Spec& spec, const Options& o) {
  const auto& field = o.*spec.member;
  using Field = std::remove_cvref_t<decltype(field)>;
  if constexpr (kIsStringsOption<Field>) {
    if (field.size() > static_cast<std::size_t>(spec.hi)) {
      return fmt::format("{} {} strings; at most {} are accepted", field.size(), spec.name,
                         spec.hi);
    }
    for (const auto& s : field) {
      if (s.empty()) return fmt::format("a {} string is empty", spec.name);
      if (s.size() > kMaxStopBytes) {
        return fmt::format("a {} string is {} bytes long; at most {} are accepted", spec.name,
                           s.size(), kMaxStopBytes);
      }
    }
    return {};
  } else {
    if (!field) return {};
    if constexpr (kIsNumberOption<Field>) {
      if (!std::isfinite(*field)) {
        return fmt::format("{} is {}; it must be a finite number {}", spec.name, *field,
                           range_of(spec));
      }
    }
    if (*field < spec.lo || *field > spec.hi) {
      return fmt::format("{} is {}; it must be {}", spec.name, *field, range_of(spec));
    }
    return {};
  }
}

}  // namespace

std::string validate(const Options& o) {
  std::string error;
  for_each_option([&](const auto& spec) {
    if (error.empty()) error = check(spec, o);
  });
  return error;
}

std::vector<std::string_view> option_names(std::initializer_list<std::string_view> except) {
  std::vector<std::string_view> names;
  for_each_option([&](const auto& spec) {
    const std::string_view name = spec.name;
    if (std::find(except.begin(), except.end(), name) == except.end()) names.push_back(name);
  });
  return names;
}

std::string option_flag(std::string_view name) {
  std::string flag = "--" + std::string(name);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

std::string option_help(std::string_view name) {
  std::string help;
  for_each_option([&](const auto& spec) {
    if (spec.name != name) return;
    using Field = std::remove_cvref_t<decltype(Options{}.*spec.member)>;
    if constexpr (kIsStringsOption<Field>) {
      help = fmt::format("{}, at most {}, each 1 to {} bytes", spec.doc, spec.hi, kMaxStopBytes);
    } else if (spec.lo == std::numeric_limits<decltype(spec.lo)>::min()) {
      help = spec.doc;  // any value of its type
    } else {
      help = fmt::format("{}, {}", spec.doc, range_of(spec));
    }
  });
  return help;
}

namespace {

// The whole of `text` as a T (an integer, or a finite or infinite double: validate() judges
// the value); nullopt when it is not exactly one.
template <class T>
std::optional<T> number_of(std::string_view text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

std::string set_option_text(Options& o, std::string_view name, std::string_view text) {
  bool known = false;
  std::string error;
  Options changed = o;
  for_each_option([&](const auto& spec) {
    if (spec.name != name) return;
    known = true;
    auto& field = changed.*spec.member;
    using Field = std::remove_cvref_t<decltype(field)>;
    if constexpr (kIsStringsOption<Field>) {
      field.emplace_back(text);
    } else {
      const auto value = number_of<typename Field::value_type>(text);
      if (!value) {
        error = fmt::format("{} is '{}'; it must be {} number {}", name, text,
                            kIsNumberOption<Field> ? "a" : "a whole", range_of(spec));
        return;
      }
      field = *value;
    }
    error = check(spec, changed);
  });
  if (!known) {
    return fmt::format("'{}' is not an option (options: {})", name,
                       fmt::join(option_names(), ", "));
  }
  if (error.empty()) o = std::move(changed);
  return error;
}

void inherit_options(Options& o, const Options& defaults) {
  for_each_option([&](const auto& spec) {
    auto& field = o.*spec.member;
    using Field = std::remove_cvref_t<decltype(field)>;
    if constexpr (kIsStringsOption<Field>) {
      if (field.empty()) field = defaults.*spec.member;
    } else {
      if (!field) field = defaults.*spec.member;
    }
  });
}

}  // namespace chimera
