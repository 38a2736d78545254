// The request options as command-line flags, generated from the option table (options.hpp):
// --num-ctx, --temperature, ... with help text from each option's doc line and range.
#pragma once

#include <chimera/core/options.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace chimera::cli {

// A short name a command gives an option's flag ({"num_predict", "-n"}).
using FlagAlias = std::pair<std::string_view, const char*>;

// Adds one flag per option of the table, each storing into `options`. Ranges are checked by
// validate(Options) after parsing, as every front end checks them (CLI11's Range lets nan
// through); a flag left out stays unset, so the server's default applies.
inline void add_option_flags(CLI::App* cmd, Options& options,
                             std::initializer_list<FlagAlias> aliases = {}) {
  for_each_option([&](const auto& spec) {
    std::string names = option_flag(spec.name);
    for (const auto& [option, alias] : aliases) {
      if (option == spec.name) names += std::string(",") + alias;
    }
    cmd->add_option(names, options.*spec.member, option_help(spec.name));
  });
}

// One option's flag alone, storing into `value` (a command that takes only some options), with
// `note` after the table's help line.
template <class T>
CLI::Option* add_option_flag(CLI::App* cmd, std::string_view name, T& value,
                             std::string_view note = {}) {
  std::string help = option_help(name);
  if (!note.empty()) help += fmt::format(" {}", note);
  return cmd->add_option(option_flag(name), value, help);
}

}  // namespace chimera::cli
