// The request options (struct Options, request.hpp), each declared once: its name, its type,
// its range and what it does. Everything that spells the options out is generated from this
// table: validate(), the configuration files' reader (pool, scene, workflow and engine files),
// the JSON of records and of the Ollama and OpenAI request bodies, the Python dict conversion
// and the command-line flags. Adding an option is one line here, one member in Options, and,
// where a backend names it differently, that backend's mapping.
//
// Unset options are not sent: the server's defaults apply. The names are Ollama's.
//
// Example: print every option that is set.
//   chimera::for_each_set_option(o, [](std::string_view name, const auto& value) {
//     fmt::print("{} = {}\n", name, value);
//   });
#pragma once

#include <chimera/core/request.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace chimera {

// One option of the table. `Field` is the member's type in Options: std::optional<int>,
// std::optional<int64_t>, std::optional<double>, or std::vector<std::string> (stop strings).
template <class Field>
struct OptionSpec {
  // Integers are bounded by integers, numbers by numbers; a list by its number of entries.
  using Bound = std::conditional_t<std::is_same_v<Field, std::optional<double>>, double, int64_t>;

  const char* name;  // the key in files, dicts and JSON; the flag is --name-with-dashes
  Field Options::*member;
  Bound lo;         // smallest accepted value (stop: fewest strings)
  Bound hi;         // largest accepted value (stop: most strings)
  const char* doc;  // one line: what it does, its special values in parentheses
  // How errors and help state the range when "from lo to hi" would mislead (num_predict's -1
  // and -2 mean something; other negative values do not). {lo} and {hi} are replaced.
  const char* range_text = nullptr;
};

// Whether an option's value is whole, fractional, or a list of strings (how files, flags and
// dicts must spell it).
template <class Field>
inline constexpr bool kIsNumberOption = std::is_same_v<Field, std::optional<double>>;
template <class Field>
inline constexpr bool kIsStringsOption = std::is_same_v<Field, std::vector<std::string>>;
template <class Field>
inline constexpr bool kIsIntegerOption = !kIsNumberOption<Field> && !kIsStringsOption<Field>;

// The table, in the order files, records and request bodies list the options. Ranges are the
// same for every front end (docs/http.md); a file type that wants a stricter one (scenes:
// kMinSceneNumCtx) narrows it there, explicitly.
inline constexpr auto kOptionTable = std::make_tuple(
    OptionSpec<std::optional<int>>{"num_ctx", &Options::num_ctx, 1, kMaxNumCtx,
                                   "Context window in tokens"},
    OptionSpec<std::optional<int>>{"num_gpu", &Options::num_gpu, -1, 100'000,
                                   "Layers to offload to the GPU (-1: as many as fit)"},
    OptionSpec<std::optional<int>>{"num_predict", &Options::num_predict, -2, kMaxNumPredict,
                                   "Most tokens to generate (0: read the prompt only, a prefill)",
                                   "-1 (no limit), -2 (fill the context) or from 0 to {hi}"},
    OptionSpec<std::optional<int>>{"num_thread", &Options::num_thread, 0, 4'096,
                                   "CPU threads (0: the server's choice)"},
    OptionSpec<std::optional<int>>{"top_k", &Options::top_k, 0, 1'000'000,
                                   "Top-k sampling: keep the k likeliest tokens (0: all)"},
    OptionSpec<std::optional<double>>{"top_p", &Options::top_p, 0, 1,
                                      "Nucleus sampling: keep the likeliest tokens up to this "
                                      "probability mass"},
    OptionSpec<std::optional<double>>{"min_p", &Options::min_p, 0, 1,
                                      "Min-p sampling: drop tokens less likely than this share "
                                      "of the likeliest"},
    OptionSpec<std::optional<double>>{"temperature", &Options::temperature, 0, 100,
                                      "Sampling temperature (0: always the likeliest token)"},
    OptionSpec<std::optional<double>>{"repeat_penalty", &Options::repeat_penalty, 0, 100,
                                      "Repetition penalty (1: none)"},
    OptionSpec<std::optional<int64_t>>{"seed", &Options::seed, std::numeric_limits<int64_t>::min(),
                                       std::numeric_limits<int64_t>::max(), "Sampling seed"},
    OptionSpec<std::vector<std::string>>{"stop", &Options::stop, 0, kMaxStopStrings,
                                         "Stop string: generation ends where it appears "
                                         "(repeat for several)"});

inline constexpr std::size_t kOptionCount = std::tuple_size_v<decltype(kOptionTable)>;

// Calls f(spec) for every option of the table, in order.
template <class F>
constexpr void for_each_option(F&& f) {
  std::apply([&](const auto&... spec) { (f(spec), ...); }, kOptionTable);
}

// Calls f(name, value) for every option that is set in `o`, in the table's order: value is an
// int, an int64_t, a double, or the non-empty std::vector<std::string> of stop strings.
template <class F>
void for_each_set_option(const Options& o, F&& f) {
  for_each_option([&](const auto& spec) {
    const auto& field = o.*spec.member;
    if constexpr (kIsStringsOption<std::remove_cvref_t<decltype(field)>>) {
      if (!field.empty()) f(std::string_view(spec.name), field);
    } else {
      if (field) f(std::string_view(spec.name), *field);
    }
  });
}

// Every option's name, in the table's order, less those in `except` (a file type that does not
// take some of them).
std::vector<std::string_view> option_names(std::initializer_list<std::string_view> except = {});

// The command-line flag of an option: "--" and its name with dashes ("--num-ctx").
std::string option_flag(std::string_view name);

// An option's help line: its doc line and its range ("Sampling temperature (0: always the
// likeliest token), from 0 to 100"), for flags and documentation.
std::string option_help(std::string_view name);

// Sets the option `name` of `o` from its text as a command line writes it ("0.8", "512"; a
// stop string as it is, added to the list). Returns "" when set, otherwise what is wrong: an
// unknown name (the known ones listed), text that is not a number of the option's type, or a
// value out of the option's range. `o` is unchanged on error.
std::string set_option_text(Options& o, std::string_view name, std::string_view text);

// Fills what `o` leaves unset from `defaults` (a scene's [defaults], a pool's settings).
void inherit_options(Options& o, const Options& defaults);

}  // namespace chimera
