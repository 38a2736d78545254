// Scene files (see scene.hpp for the format).
#include "core/toml_reader.hpp"
#include "pool/config_reader.hpp"

#include <chimera/banter/scene_config.hpp>
#include <chimera/core/options.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <initializer_list>

namespace chimera::banter {

using detail::Reader;
using detail::where;

const char* to_string(TurnPolicy t) {
  switch (t) {
    case TurnPolicy::round_robin:
      return "round-robin";
    case TurnPolicy::reply_to_last:
      return "reply-to-last";
    case TurnPolicy::director:
      return "director";
  }
  return "?";
}

std::optional<TurnPolicy> parse_turn_policy(std::string_view name) {
  std::string n(name);
  std::replace(n.begin(), n.end(), '_', '-');
  if (n == "round-robin") return TurnPolicy::round_robin;
  if (n == "reply-to-last") return TurnPolicy::reply_to_last;
  if (n == "director") return TurnPolicy::director;
  return std::nullopt;
}

namespace {

// The option keys a character, the director and [defaults] take: the option table's
// (options.hpp), less num_gpu and num_thread, which are the engine's to set for the model it
// loads, not a character's. Where a scene wants a stricter range than the table's, it says so
// here: num_ctx from kMinSceneNumCtx (a persona and a line must fit) and num_predict from 1 to
// kMaxSceneNumPredict (a line is spoken, so it is short and never empty).
std::vector<std::string_view> scene_option_keys() {
  std::vector<std::string_view> keys = {"model", "pool"};
  for (std::string_view name : option_names({"num_gpu", "num_thread"})) keys.push_back(name);
  return keys;
}

bool read_options(Reader& r, Placement& p, Options& o) {
  if (!r.str("model", p.model) || !r.str("pool", p.pool)) return false;
  if (!r.integer("num_ctx", o.num_ctx, kMinSceneNumCtx, kMaxNumCtx) ||
      !r.integer("num_predict", o.num_predict, 1, kMaxSceneNumPredict)) {
    return false;
  }
  return detail::read_options(r, o);
}

// A text field of the scene within its bound.
bool read_text(Reader& r, const char* key, std::string& out) {
  if (!r.str(key, out)) return false;
  if (out.size() <= kMaxSceneTextBytes) return true;
  r.error() = fmt::format(
      "{}: '{}' is {} bytes; at most {} are accepted (a scene's text must "
      "fit a character's context of at most {} tokens)",
      r.location(key), key, out.size(), kMaxSceneTextBytes, kMaxNumCtx);
  return false;
}

void inherit(Placement& p, const Placement& d) {
  if (p.model.empty() && p.pool.empty()) p = d;
}

std::vector<std::string_view> with_options(std::initializer_list<std::string_view> keys) {
  std::vector<std::string_view> out(keys);
  for (std::string_view key : scene_option_keys()) out.push_back(key);
  return out;
}

}  // namespace

bool parse_scene(std::string_view text, const std::string& source, SceneConfig& out,
                 std::string& error) {
  toml::table root;
  if (!chimera::detail::parse_toml(text, source, root, error)) return false;
  {
    Reader top(root, source, error);
    if (!top.known({"scene", "defaults", "character", "director", "pool"}, "the scene file")) {
      return false;
    }
  }
  SceneConfig sc;
  static const toml::table kEmpty;
  auto table_of = [&](const char* key, const toml::table*& t) {
    const toml::node* n = root.get(key);
    t = &kEmpty;
    if (n == nullptr) return true;
    if (!n->is_table()) {
      error = fmt::format("{}: '{}' must be a table ([{}])", where(source, *n), key, key);
      return false;
    }
    t = n->as_table();
    return true;
  };

  const toml::table* scene_t = nullptr;
  if (!table_of("scene", scene_t)) return false;
  Reader s(*scene_t, source, error);
  if (!s.known({"title", "setting", "turns", "budget_ms", "lines", "player", "narrator", "opening",
                "warm_up", "sessions", "catch_up", "split", "hedge_after_ms", "max_concurrent"},
               "[scene]")) {
    return false;
  }
  std::string turns = to_string(sc.turns);
  std::string split = "sentence";
  if (!read_text(s, "title", sc.title) || !read_text(s, "setting", sc.setting) ||
      !s.str("turns", turns) || !s.integer("budget_ms", sc.budget_ms, 1, 600'000) ||
      !s.integer("lines", sc.lines, 0, 100'000) || !read_text(s, "player", sc.player) ||
      !read_text(s, "narrator", sc.narrator) || !read_text(s, "opening", sc.opening) ||
      !s.boolean("warm_up", sc.warm_up) || !s.boolean("sessions", sc.sessions) ||
      !s.boolean("catch_up", sc.catch_up) || !s.str("split", split) ||
      !s.integer("hedge_after_ms", sc.hedge_after_ms, -1, 600'000) ||
      !s.integer("max_concurrent", sc.max_concurrent, 0, 4096)) {
    return false;
  }
  if (auto t = parse_turn_policy(turns)) {
    sc.turns = *t;
  } else {
    error = fmt::format("{}: unknown turns '{}' (round-robin, reply-to-last, director)",
                        where(source, *scene_t->get("turns")), turns);
    return false;
  }
  if (split == "sentence") {
    sc.split = SplitMode::sentence;
  } else if (split == "clause") {
    sc.split = SplitMode::clause;
  } else {
    error = fmt::format("{}: unknown split '{}' (sentence, clause)",
                        where(source, *scene_t->get("split")), split);
    return false;
  }
  if (sc.player.empty() || sc.narrator.empty()) {
    error = fmt::format("{}: 'player' and 'narrator' must not be empty", source);
    return false;
  }

  const toml::table* defaults_t = nullptr;
  if (!table_of("defaults", defaults_t)) return false;
  Reader d(*defaults_t, source, error);
  if (!d.known(with_options({}), "[defaults]")) return false;
  Placement default_place;
  Options defaults;
  if (!read_options(d, default_place, defaults)) return false;
  if (!defaults.num_ctx) defaults.num_ctx = kDefaultNumCtx;
  if (!defaults.num_predict) defaults.num_predict = kDefaultNumPredict;

  const toml::node* chars = root.get("character");
  if (chars == nullptr || !chars->is_array_of_tables() || chars->as_array()->empty()) {
    error = fmt::format(
        "{}: no [[character]]; a scene needs at least one, e.g.\n"
        "  [[character]]\n  name = \"Mira\"\n  persona = \"The tavern keeper.\"",
        source);
    return false;
  }
  if (chars->as_array()->size() > kMaxCharacters) {
    error = fmt::format(
        "{}: {} characters; a scene takes at most {} (each keeps a session of "
        "its own)",
        where(source, *chars), chars->as_array()->size(), kMaxCharacters);
    return false;
  }
  for (const auto& node : *chars->as_array()) {
    Reader c(*node.as_table(), source, error);
    if (!c.known(with_options({"name", "persona", "style"}), "[[character]]")) return false;
    CharacterConfig cc;
    if (!read_text(c, "name", cc.name) || !read_text(c, "persona", cc.persona) ||
        !read_text(c, "style", cc.style)) {
      return false;
    }
    if (!read_options(c, cc.placement, cc.options)) return false;
    if (cc.name.empty()) {
      error = fmt::format("{}: a [[character]] needs a name", where(source, node));
      return false;
    }
    for (const auto& other : sc.characters) {
      if (other.name == cc.name) {
        error = fmt::format("{}: two characters are named '{}'", where(source, node), cc.name);
        return false;
      }
    }
    if (cc.name == sc.player || cc.name == sc.narrator) {
      error = fmt::format(
          "{}: character '{}' has the name of the {}; rename one of them", where(source, node),
          cc.name,
          cc.name == sc.player ? "player ([scene] player)" : "narrator ([scene] narrator)");
      return false;
    }
    inherit_options(cc.options, defaults);
    inherit(cc.placement, default_place);
    sc.characters.push_back(std::move(cc));
  }

  const toml::table* director_t = nullptr;
  if (!table_of("director", director_t)) return false;
  Reader dr(*director_t, source, error);
  if (!dr.known(with_options({"prompt"}), "[director]")) return false;
  if (!read_text(dr, "prompt", sc.director.prompt)) return false;
  if (!read_options(dr, sc.director.placement, sc.director.options)) return false;
  if (sc.director.prompt.empty()) {
    sc.director.prompt =
        "You direct a scene of spoken banter. Pick who speaks next so that the scene stays "
        "lively and everyone gets a turn.";
  }
  inherit(sc.director.placement, sc.characters.front().placement);
  if (!sc.director.options.num_ctx) sc.director.options.num_ctx = defaults.num_ctx;
  if (!sc.director.options.num_predict) sc.director.options.num_predict = 16;
  if (!sc.director.options.temperature) sc.director.options.temperature = 0.0;

  if (root.get("pool") != nullptr) {
    if (!pool::detail::read_pools(root, source, sc.pools, error)) return false;
  }
  // Pools named by characters may also come from the engine (SceneOptions::pools): they are
  // checked when the scene opens.
  if (auto e = validate_scene(sc); !e.empty()) {
    error = fmt::format("{}: {}", source, e);
    return false;
  }
  out = std::move(sc);
  return true;
}

std::string validate_scene(const SceneConfig& sc) {
  if (sc.characters.empty()) return "the scene has no character";
  if (sc.characters.size() > kMaxCharacters) {
    return fmt::format("{} characters; a scene takes at most {} (each keeps a session of its own)",
                       sc.characters.size(), kMaxCharacters);
  }
  if (sc.budget_ms < 1 || sc.budget_ms > 600'000) {
    return fmt::format("budget_ms is {}; it must be from 1 to 600000", sc.budget_ms);
  }
  const std::pair<const char*, const std::string*> scene_texts[] = {
      {"title", &sc.title},     {"setting", &sc.setting},
      {"player", &sc.player},   {"narrator", &sc.narrator},
      {"opening", &sc.opening}, {"the director's prompt", &sc.director.prompt}};
  for (const auto& [name, t] : scene_texts) {
    if (t->size() > kMaxSceneTextBytes) {
      return fmt::format("the scene's {} is {} bytes; at most {} are accepted", name, t->size(),
                         kMaxSceneTextBytes);
    }
  }
  auto check_options = [](const std::string& who, const Options& o) -> std::string {
    if (o.num_ctx && (*o.num_ctx < kMinSceneNumCtx || *o.num_ctx > kMaxNumCtx)) {
      return fmt::format("{}: num_ctx is {}; it must be from {} to {}", who, *o.num_ctx,
                         kMinSceneNumCtx, kMaxNumCtx);
    }
    if (o.num_predict && (*o.num_predict < 1 || *o.num_predict > kMaxSceneNumPredict)) {
      return fmt::format("{}: num_predict is {}; it must be from 1 to {}", who, *o.num_predict,
                         kMaxSceneNumPredict);
    }
    if (auto e = validate(o); !e.empty()) return fmt::format("{}: {}", who, e);
    return {};
  };
  for (const auto& c : sc.characters) {
    const std::string who = fmt::format("character '{}'", c.name);
    if (c.name.empty()) return "a character has no name";
    for (const auto& [name, t] : {std::pair{"name", &c.name}, std::pair{"persona", &c.persona},
                                  std::pair{"style", &c.style}}) {
      if (t->size() > kMaxSceneTextBytes) {
        return fmt::format("{}: its {} is {} bytes; at most {} are accepted", who, name, t->size(),
                           kMaxSceneTextBytes);
      }
    }
    if (auto e = check_options(who, c.options); !e.empty()) return e;
  }
  return check_options("the director", sc.director.options);
}

std::string validate_line(std::string_view line) {
  if (line.size() > kMaxLineBytes) {
    return fmt::format(
        "the line is {} bytes; a line is at most {} bytes (it must fit beside the "
        "persona in a character's context)",
        line.size(), kMaxLineBytes);
  }
  if (line.find('\0') != std::string_view::npos) return "the line holds a NUL byte";
  return {};
}

bool load_scene(const std::filesystem::path& file, SceneConfig& out, std::string& error) {
  std::string text;
  if (!detail::read_config_file(file, "scene file", text, error)) return false;
  if (!parse_scene(text, file.string(), out, error)) return false;
  out.base_dir = file.parent_path();
  return true;
}

}  // namespace chimera::banter
