// Live banter: characters that talk in real time, each line's first token within a budget.
//
// A Scene (this header) runs a SceneConfig (scene_config.hpp): its characters, their turns, and
// every request they make. What it does for speed:
// - Sessions. Each character is a session: its persona and the scene so far stay in its KV cache
//   (in-process: the engine keeps the session's sequence; llama-server: `cache_prompt`, and a
//   pool with session-affinity routing keeps the character on one server), so a new line
//   prefills only what is new. With an in-process model the scene writes the prompt text itself
//   with the model's chat template, so that every request of a character extends the text of
//   the one before and the engine reuses the cached tokens exactly.
// - Warm-up. warm_up() prefills every character's persona (and the director's) before the
//   first line, so the first line is as fast as the rest.
// - Catch-up. After a line, the characters that listened prefill it in the background, so
//   their next line starts from a warm cache; a character whose context is filling up moves its
//   window (drops its oldest lines) then too, off the critical path.
// - Deadline-aware scheduling (schedule.hpp): live lines before background work, the line due
//   soonest first; background work waits while a live line waits for its first token.
// - Hedging: a line on a pool of two or more endpoints is sent to a second one when its first
//   token has not come by half the budget (the pool's `hedge_after_ms`; see scene.hpp).
// Each line's record says whether its budget held: its first token (METRICS.md: the first chunk
// with text or reasoning) came within `budget_ms` of the moment the line was asked for
// (`ttft_line`, which includes the director's decision and any wait in the scheduler).
//
// Streaming for speech: a line's spoken text arrives through `on_text`, its reasoning
// (<think>...</think>, or what the server sends apart) through `on_thinking`, and whole
// sentences (or clauses; SceneConfig::split) through `on_sentence` as soon as each is complete.
//
// Interruption: Line::cancel() or Scene::interrupt() (the player speaks) stops a line at once;
// its record says `interrupted`, what was said so far stays in the transcript (marked cut off),
// and the next line can start immediately.
//
// Threading: every member is thread-safe. Callbacks run on the backend's threads (the
// in-process engine's decode thread, or a Runtime thread): keep them short, do not block, do not
// throw, and do not wait on a Line from inside one. Returning false from a callback cancels the
// line. A Scene must outlive nothing but itself: its destructor cancels what runs and waits for
// every callback to return.
//
// Example:
//   chimera::banter::SceneConfig cfg;
//   std::string error;
//   if (!chimera::banter::load_scene("examples/scenes/tavern.toml", cfg, error)) fail(error);
//   chimera::banter::Scene scene(cfg);         // throws std::invalid_argument on a bad setup
//   scene.warm_up();
//   for (int i = 0; i < 8; ++i) {
//     chimera::banter::LineOptions o;
//     o.on_sentence = [](const chimera::banter::Sentence& s) { speak(s.text); return true; };
//     chimera::banter::LineRecord r = scene.line(o);
//     fmt::print("{}: {} ({})\n", r.speaker, r.text, *r.budget_held ? "in budget" : "late");
//   }
#pragma once

#include <chimera/banter/scene_config.hpp>
#include <chimera/banter/schedule.hpp>
#include <chimera/core/request.hpp>
#include <chimera/core/runtime.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::banter {

struct SceneOptions {
  Runtime* runtime = nullptr;           // I/O threads for pools; nullptr: Runtime::shared()
  std::vector<pool::PoolConfig> pools;  // pools besides the scene file's (e.g. the engine's)
  std::string model_override;           // every character and the director on this GGUF file
  std::string default_model;            // for characters that name neither model nor pool;
                                        // empty: the tiny synthetic model
  int threads = 0;                      // in-process decode threads; 0: every hardware thread
  int gpu_layers = 0;                   // in-process layers offloaded to a GPU (a CUDA build of
                                        // llama.cpp); 0: all on the CPU
  bool flash_attention = false;         // in-process flash attention (LlamaConfig says when)
  int64_t background_grace_ms = 20;     // see schedule.hpp
};

// A complete sentence (or clause) of a line, ready for speech.
struct Sentence {
  std::string_view text;
  int index = 0;     // 0, 1, 2, ... within the line; on_done marks the end of the line
  int64_t t_ns = 0;  // when it was complete (steady clock)
};

// What happened to one line of the transcript.
struct LineRecord {
  int index = -1;  // position in the transcript (0-based); -1 if never added
  std::string speaker;
  int character = -1;    // index into SceneConfig::characters; -1: player or narrator
  std::string text;      // spoken text
  std::string thinking;  // reasoning, kept apart
  std::string raw;       // exactly what the model generated
  bool interrupted = false;
  int64_t budget_ms = 0;
  // The budget held: the first token came within budget_ms of t_due. Empty when the line ended
  // (cancelled or failed) before its first token and before its budget ran out.
  std::optional<bool> budget_held;
  int64_t t_due_ns = 0;                      // when the line was asked for
  int64_t t_dispatch_ns = 0;                 // when its request was sent (0: never)
  std::optional<int64_t> ttft_line_ns;       // first token − t_due
  std::optional<int64_t> first_sentence_ns;  // first complete sentence − t_due
  int64_t director_ns = 0;                   // the director's decision (turns = director)
  int64_t scheduled_ns = 0;  // waiting in the scene's scheduler (after the director)
  int sentences = 0;
  bool hedged = false;    // a second endpoint was tried (Figures::attempts > 1)
  Completion completion;  // the request: figures (METRICS.md), endpoint, error
  bool ok() const { return !completion.error || interrupted; }
};

struct LineOptions {
  std::string speaker;                 // empty: the scene's turn policy picks
  int64_t budget_ms = -1;              // -1: the scene's
  Priority priority = Priority::live;  // background: an ambient line that may wait
  // The speaker is chosen and the request is about to be sent (before any other callback):
  // the moment to pick a voice or start a speaking animation.
  std::function<void(std::string_view speaker)> on_start;
  std::function<bool(std::string_view spoken)> on_text;
  std::function<bool(std::string_view thinking)> on_thinking;
  std::function<bool(const Sentence&)> on_sentence;
  std::function<void(const LineRecord&)> on_done;  // once, whatever happened
};

// A line in progress. Thread-safe; keep it as long as you like (it holds no scene resources).
class Line {
 public:
  struct State;
  explicit Line(std::shared_ptr<State> s) : s_(std::move(s)) {}

  void cancel();                      // at once; idempotent; on_done still runs once
  LineRecord wait();                  // until on_done has run
  bool wait_for(int64_t timeout_ms);  // true once done
  bool done() const;
  std::string speaker() const;  // empty until the speaker is chosen
  LineRecord record() const;    // as it stands now

 private:
  std::shared_ptr<State> s_;
};

struct WarmUpReport {
  struct Entry {
    std::string who;     // a character's name, or "director"
    int64_t ns = 0;      // its prefill request, end to end
    int64_t tokens = 0;  // prompt tokens it prefilled
    std::string error;   // empty when it worked
  };
  std::vector<Entry> entries;
  int64_t wall_ns = 0;
  bool ok() const {
    for (const auto& e : entries) {
      if (!e.error.empty()) return false;
    }
    return true;
  }
};

class Scene {
 public:
  // Makes the backends (loads in-process models, starts pools). Throws std::invalid_argument
  // naming what is wrong: an unknown pool, a model that cannot be loaded, a persona longer than
  // its num_ctx.
  explicit Scene(SceneConfig config, SceneOptions options = {});
  ~Scene();
  Scene(const Scene&) = delete;
  Scene& operator=(const Scene&) = delete;

  const SceneConfig& config() const;

  // Prefills every character's prompt; blocks until done.
  WarmUpReport warm_up();

  // Adds a line that nobody generates: the player's (speaker empty) or anyone's. With
  // `interrupt`, live lines are cancelled first (the player speaks over them).
  void say(std::string_view text, const std::string& speaker = {}, bool interrupt = true);
  // Cancels every live line (queued or running); returns how many.
  int interrupt();

  // Starts the next line and returns at once.
  std::shared_ptr<Line> start_line(LineOptions options = {});
  // Runs the next line to its end.
  LineRecord line(LineOptions options = {}) { return start_line(std::move(options))->wait(); }

  // Every line so far, in order (said and generated).
  std::vector<LineRecord> transcript() const;
  // Who the turn policy would pick now (the director's choice is not known in advance: empty).
  std::string next_speaker() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace chimera::banter
