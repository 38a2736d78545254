// A banter scene as written in a TOML file: who is on stage, how they take turns, what each runs
// on, and the latency budget of a line.
//
// A scene file:
//
//   [scene]
//   title = "Last orders at the Drowned Lantern"
//   setting = "A harbour tavern at closing time. Rain on the windows."
//   turns = "round-robin"        # round-robin | reply-to-last | director
//   budget_ms = 200              # to the first token of a line
//   lines = 12                   # lines a batch run produces (chimeraforge banter --lines)
//   player = "Player"            # the player's name in the transcript
//   narrator = "Narrator"        # who speaks `opening`
//   opening = "The bell rings for last orders."   # optional first line of the transcript
//   warm_up = true               # prefill every persona when the scene opens
//   sessions = true              # keep each character's prompt cached between its lines
//   catch_up = true              # prefill listeners' new lines in the background
//   split = "sentence"           # sentence | clause: what on_sentence hands over
//   hedge_after_ms = -1          # pools: -1 = budget_ms / 2 when the pool has 2+ endpoints
//   max_concurrent = 0           # requests in flight per backend; 0: as many as it serves
//
//   [defaults]                   # every character's settings unless it sets its own
//   model = "tiny"               # a GGUF file (in-process), or "tiny": the synthetic model
//   num_ctx = 384                # 256-512 is what the study advises for banter
//   num_predict = 48             # longest line, tokens
//   temperature = 0.8
//
//   [[character]]
//   name = "Mira"
//   persona = "The tavern keeper. Tired, kind, sharp with drunks."
//   style = "Short sentences. Dry humour."
//   model = "..." or pool = "taverns"   # in-process GGUF, or a pool below
//   temperature = 0.9            # any [defaults] key, for this character only
//
//   [director]                   # turns = "director": an LLM picks the next speaker
//   prompt = "Pick who speaks next so that the scene stays lively."
//   pool = "..." or model = "..."          # default: the first character's
//
//   [[pool]]                     # pools, exactly as in a pool file (docs/pools.md)
//   name = "taverns"
//   routing = "session-affinity"
//   [[pool.endpoint]]
//   url = "http://127.0.0.1:8080"
//   backend = "openai"
//
// Relative model paths are taken from the scene file's folder. Unknown keys are errors, so a
// typo never silently falls back to a default.
//
// Thread safety: plain values and free functions.
#pragma once

#include <chimera/core/request.hpp>
#include <chimera/pool/pool.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::banter {

enum class TurnPolicy {
  round_robin,    // characters in the order the file lists them
  reply_to_last,  // the character the last line names; else the one silent longest
  director,       // an LLM call picks the next speaker (a grammar keeps its answer a name)
};
const char* to_string(TurnPolicy t);
std::optional<TurnPolicy> parse_turn_policy(std::string_view name);

enum class SplitMode {
  sentence,  // on_sentence gets whole sentences
  clause,    // also clauses (after , ; : and dashes) once they are long enough to speak
};

// What a character runs on: a GGUF file in this process, or a pool (by name).
struct Placement {
  std::string model;  // GGUF path, or "tiny"; used when `pool` is empty
  std::string pool;   // a pool of the scene file or of the engine
};

struct CharacterConfig {
  std::string name;
  std::string persona;
  std::string style;
  Placement placement;
  Options options;  // sampling; num_ctx and num_predict always set after parsing
};

struct DirectorConfig {
  std::string prompt;
  Placement placement;  // empty: the first character's
  Options options;
};

struct SceneConfig {
  std::string title;
  std::string setting;
  TurnPolicy turns = TurnPolicy::round_robin;
  int64_t budget_ms = 200;
  int lines = 12;
  std::string player = "Player";
  std::string narrator = "Narrator";
  std::string opening;
  bool warm_up = true;
  bool sessions = true;
  bool catch_up = true;
  SplitMode split = SplitMode::sentence;
  int64_t hedge_after_ms = -1;
  int max_concurrent = 0;
  std::vector<CharacterConfig> characters;
  DirectorConfig director;
  std::vector<pool::PoolConfig> pools;
  std::filesystem::path base_dir;  // where relative model paths start
};

// Defaults every character starts from.
inline constexpr int kDefaultNumCtx = 384;
inline constexpr int kDefaultNumPredict = 48;

// Bounds of a scene, checked before anything is loaded or allocated (scene files, the C ABI):
// a character's num_ctx from kMinSceneNumCtx to kMaxNumCtx (request.hpp) and num_predict from 1
// to kMaxSceneNumPredict; at most kMaxCharacters characters (each keeps a session: in-process,
// a llama.cpp sequence, of which a context holds at most 256); a persona, style, setting, title,
// opening or director prompt of at most kMaxSceneTextBytes; a line said by the player of at most
// kMaxLineBytes (speech, not a document: longer text would not fit a character's window).
inline constexpr int kMinSceneNumCtx = 64;
inline constexpr int kMaxSceneNumPredict = 4'096;
inline constexpr std::size_t kMaxCharacters = 128;
inline constexpr std::size_t kMaxSceneTextBytes = 64 * 1024;
inline constexpr std::size_t kMaxLineBytes = 4 * 1024;

// Checks a scene against the bounds above and every character's and the director's options
// (validate(Options)). Returns "" when usable, otherwise what is wrong, naming the character.
std::string validate_scene(const SceneConfig& scene);
// Checks a line the player says: "" or what is wrong with it (too long, a NUL byte).
std::string validate_line(std::string_view text);

// Parses a scene. Returns false with `error` naming the source, the line and the key.
bool parse_scene(std::string_view toml_text, const std::string& source, SceneConfig& out,
                 std::string& error);
bool load_scene(const std::filesystem::path& file, SceneConfig& out, std::string& error);

}  // namespace chimera::banter
