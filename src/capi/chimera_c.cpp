// The C ABI (include/chimera.h) over the banter scene (include/chimera/banter/scene.hpp).
//
// Every entry point is wrapped so that no exception crosses into C. A line handle is shared
// between the host and the scene's callbacks: the host's reference is `self` (dropped by
// chimera_line_destroy); callbacks hold a weak reference, so that a line the host has
// destroyed gets no more callbacks and is freed as soon as nothing runs for it.
#include <chimera.h>
#include <chimera/banter/scene.hpp>
#include <chimera/core/runtime.hpp>
#include <chimera/engine/tool_loop.hpp>
#include <chimera/model/synthetic_model.hpp>
#include <chimera/pool/pool.hpp>

// The engine library's reader of engine configurations (private header; this target does not
// see src/): the library parses, the C ABI translates.
#include "../pool/config_reader.hpp"

#include <chimera/version.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>

namespace {

using namespace chimera;

thread_local std::string t_error;

constexpr int kMaxIoThreads = 256;
constexpr int kMaxThreads = 4'096;

chimera_status fail(chimera_status s, std::string message) {
  t_error = std::move(message);
  return s;
}

// Runs `fn`, turning every exception into a status and a message.
template <class F>
chimera_status guarded(const char* what, F&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return fail(CHIMERA_ERR_INTERNAL,
                fmt::format("{}: out of memory (ENOMEM): an allocation failed; lower num_ctx, "
                            "the number of characters or sessions, or raise the memory limit",
                            what));
  } catch (const std::invalid_argument& e) {
    return fail(CHIMERA_ERR_MODEL, fmt::format("{}: {}", what, e.what()));
  } catch (const std::exception& e) {
    return fail(CHIMERA_ERR_INTERNAL, fmt::format("{}: {}", what, e.what()));
  } catch (...) {
    return fail(CHIMERA_ERR_INTERNAL, fmt::format("{}: unknown error", what));
  }
}

bool read_file(const char* path, std::string& text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  text = ss.str();
  return true;
}

double ms(const std::optional<int64_t>& ns) {
  return ns ? static_cast<double>(*ns) / 1e6 : -1.0;
}

chimera_status status_of(const banter::LineRecord& r) {
  if (r.interrupted) return CHIMERA_ERR_CANCELLED;
  switch (r.completion.error.kind) {
    case ErrorKind::none:
      return CHIMERA_OK;
    case ErrorKind::cancelled:
      return CHIMERA_ERR_CANCELLED;
    case ErrorKind::bad_request:
      return CHIMERA_ERR_INVALID_ARGUMENT;
    case ErrorKind::timeout:
      return CHIMERA_ERR_TIMEOUT;
    default:
      return CHIMERA_ERR_BACKEND;
  }
}

struct Event;

struct EngineCore {
  chimera_delivery delivery = CHIMERA_DELIVERY_POLL;
  std::string default_model;
  std::string model_override;
  int threads = 0;
  std::vector<pool::PoolConfig> pools;
  std::unique_ptr<Runtime> runtime;

  std::mutex qmu;
  std::condition_variable qcv;
  std::deque<Event> queue;

  // Backends of agent runs (chimera_agent_run), by model file and context or by pool name:
  // loaded on first use, kept for later runs. Declared after `runtime`: destroyed before it.
  std::mutex agents_mu;
  std::map<std::string, std::shared_ptr<Backend>> agent_backends;

  ~EngineCore();
  void post(Event e);
};

}  // namespace

struct chimera_line {
  std::shared_ptr<chimera_line> self;  // the host's reference
  std::weak_ptr<EngineCore> engine;    // weak: queued events hold lines, lines hold no engine
  chimera_line_params params{};
  std::shared_ptr<banter::Line> line;
  std::atomic<bool> released{false};
  std::atomic<bool> stop{false};

  std::string speaker;
  std::atomic<bool> has_speaker{false};

  mutable std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  banter::LineRecord rec;
  chimera_status status = CHIMERA_OK;
  std::string error;
};

namespace {

enum class EventKind { token, thinking, sentence, done };

struct Event {
  std::shared_ptr<chimera_line> line;
  EventKind kind = EventKind::token;
  std::string text;
  int index = 0;
  chimera_status status = CHIMERA_OK;
};

EngineCore::~EngineCore() {
  std::lock_guard lock(qmu);
  queue.clear();
}

void EngineCore::post(Event e) {
  {
    std::lock_guard lock(qmu);
    queue.push_back(std::move(e));
  }
  qcv.notify_one();
}

// Runs one callback for a line, in whichever delivery mode. Returns what a text callback said.
bool run_callback(const std::shared_ptr<chimera_line>& l, const Event& e) {
  if (l->released.load()) return true;
  const chimera_line_params& p = l->params;
  switch (e.kind) {
    case EventKind::token:
      return p.on_token == nullptr ||
             p.on_token(l.get(), e.text.c_str(), e.text.size(), p.user_data);
    case EventKind::thinking:
      return p.on_thinking == nullptr ||
             p.on_thinking(l.get(), e.text.c_str(), e.text.size(), p.user_data);
    case EventKind::sentence:
      return p.on_sentence == nullptr ||
             p.on_sentence(l.get(), e.text.c_str(), e.text.size(), e.index, p.user_data);
    case EventKind::done:
      if (p.on_done != nullptr) p.on_done(l.get(), e.status, p.user_data);
      return true;
  }
  return true;
}

// Hands an event to the host: at once, or through the engine's queue.
bool deliver(const std::weak_ptr<chimera_line>& w, Event e) {
  auto l = w.lock();
  if (!l || l->released.load()) return true;
  if (e.kind != EventKind::done && l->stop.load()) return false;
  auto engine = l->engine.lock();
  if (!engine) return true;  // nobody can poll any more
  if (engine->delivery == CHIMERA_DELIVERY_IMMEDIATE) {
    const bool go = run_callback(l, e);
    if (!go) l->stop.store(true);
    return go;
  }
  e.line = std::move(l);
  engine->post(std::move(e));
  return true;
}

banter::LineOptions line_options(const std::shared_ptr<chimera_line>& l) {
  banter::LineOptions o;
  const chimera_line_params& p = l->params;
  if (p.speaker != nullptr) o.speaker = p.speaker;
  o.budget_ms = p.budget_ms > 0 ? p.budget_ms : -1;
  o.priority = p.background ? banter::Priority::background : banter::Priority::live;
  std::weak_ptr<chimera_line> w = l;
  o.on_start = [w](std::string_view speaker) {
    if (auto l = w.lock()) {
      l->speaker.assign(speaker);
      l->has_speaker.store(true);
    }
  };
  if (p.on_token != nullptr) {
    o.on_text = [w](std::string_view t) {
      return deliver(w, Event{nullptr, EventKind::token, std::string(t), 0, CHIMERA_OK});
    };
  }
  if (p.on_thinking != nullptr) {
    o.on_thinking = [w](std::string_view t) {
      return deliver(w, Event{nullptr, EventKind::thinking, std::string(t), 0, CHIMERA_OK});
    };
  }
  if (p.on_sentence != nullptr) {
    o.on_sentence = [w](const banter::Sentence& s) {
      return deliver(w,
                     Event{nullptr, EventKind::sentence, std::string(s.text), s.index, CHIMERA_OK});
    };
  }
  o.on_done = [w](const banter::LineRecord& r) {
    auto l = w.lock();
    if (!l) return;
    const chimera_status st = status_of(r);
    {
      std::lock_guard lock(l->mu);
      l->rec = r;
      l->status = st;
      l->error = r.completion.error ? r.completion.error.message : std::string();
      if (!l->has_speaker.load() && !r.speaker.empty()) {
        l->speaker = r.speaker;
        l->has_speaker.store(true);
      }
      l->done = true;
    }
    l->cv.notify_all();
    if (l->params.on_done != nullptr) deliver(w, Event{nullptr, EventKind::done, {}, 0, st});
  };
  return o;
}

chimera_status start_line(const std::shared_ptr<EngineCore>& engine, banter::Scene& scene,
                          const chimera_line_params* params, chimera_line** out) {
  auto l = std::make_shared<chimera_line>();
  l->engine = engine;
  l->params = params ? *params : chimera_line_default_params();
  // The speaker name is copied: the caller's string may not outlive this call.
  std::string speaker = l->params.speaker ? l->params.speaker : "";
  l->params.speaker = nullptr;
  auto options = line_options(l);
  options.speaker = speaker;
  l->self = l;
  l->line = scene.start_line(std::move(options));
  *out = l.get();
  return CHIMERA_OK;
}

}  // namespace

struct chimera_engine {
  std::shared_ptr<EngineCore> core;
};

struct chimera_scene {
  std::shared_ptr<EngineCore> core;  // declared first: destroyed after the scene
  std::unique_ptr<banter::Scene> scene;
  std::vector<std::string> names;
};

struct chimera_session {
  std::shared_ptr<EngineCore> core;
  std::unique_ptr<banter::Scene> scene;
};

extern "C" {

const char* chimera_status_name(chimera_status s) {
  switch (s) {
    case CHIMERA_OK:
      return "CHIMERA_OK";
    case CHIMERA_ERR_INVALID_ARGUMENT:
      return "CHIMERA_ERR_INVALID_ARGUMENT";
    case CHIMERA_ERR_CONFIG:
      return "CHIMERA_ERR_CONFIG";
    case CHIMERA_ERR_MODEL:
      return "CHIMERA_ERR_MODEL";
    case CHIMERA_ERR_NOT_FOUND:
      return "CHIMERA_ERR_NOT_FOUND";
    case CHIMERA_ERR_TIMEOUT:
      return "CHIMERA_ERR_TIMEOUT";
    case CHIMERA_ERR_CANCELLED:
      return "CHIMERA_ERR_CANCELLED";
    case CHIMERA_ERR_BACKEND:
      return "CHIMERA_ERR_BACKEND";
    case CHIMERA_ERR_CLOSED:
      return "CHIMERA_ERR_CLOSED";
    case CHIMERA_ERR_INTERNAL:
      return "CHIMERA_ERR_INTERNAL";
  }
  return "CHIMERA_ERR_UNKNOWN";
}

const char* chimera_last_error(void) {
  return t_error.c_str();
}

const char* chimera_version(void) {
  return CHIMERA_VERSION_STRING;
}

// ------------------------------------------------------------------------------------ engine

chimera_engine_params chimera_engine_default_params(void) {
  chimera_engine_params p;
  p.delivery = CHIMERA_DELIVERY_POLL;
  p.model = nullptr;
  p.model_override = nullptr;
  p.threads = 0;
  p.io_threads = 0;
  return p;
}

chimera_status chimera_engine_create(const char* config_toml, const chimera_engine_params* params,
                                     chimera_engine** out) {
  if (out == nullptr)
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_engine_create: out is NULL");
  *out = nullptr;
  return guarded("chimera_engine_create", [&]() -> chimera_status {
    const chimera_engine_params p = params ? *params : chimera_engine_default_params();
    if (p.delivery != CHIMERA_DELIVERY_POLL && p.delivery != CHIMERA_DELIVERY_IMMEDIATE) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                  "chimera_engine_create: delivery must be CHIMERA_DELIVERY_POLL or "
                  "CHIMERA_DELIVERY_IMMEDIATE");
    }
    auto core = std::make_shared<EngineCore>();
    core->delivery = p.delivery;
    int io_threads = 1;
    const std::string text = config_toml ? config_toml : "";
    if (!text.empty()) {
      // The library reads the file; here it is only translated into the engine's settings.
      pool::detail::EngineFileConfig file;
      std::string error;
      if (!pool::detail::parse_engine_config(text, "engine config", kMaxThreads, kMaxIoThreads,
                                             file, error)) {
        return fail(CHIMERA_ERR_CONFIG, error);
      }
      core->default_model = std::move(file.model);
      if (file.threads) core->threads = *file.threads;
      if (file.io_threads) io_threads = *file.io_threads;
      core->pools = std::move(file.pools);
    }
    if (p.model != nullptr) core->default_model = p.model;
    if (p.model_override != nullptr) core->model_override = p.model_override;
    if (p.threads > 0) core->threads = p.threads;
    if (p.io_threads > 0) io_threads = p.io_threads;
    if (io_threads < 1 || io_threads > kMaxIoThreads) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                  fmt::format("chimera_engine_create: io_threads is {}; use 1 to {}", io_threads,
                              kMaxIoThreads));
    }
    if (core->threads < 0 || core->threads > kMaxThreads) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                  fmt::format("chimera_engine_create: threads is {}; use 0 (all cores) to {}",
                              core->threads, kMaxThreads));
    }
    core->runtime = std::make_unique<Runtime>(io_threads);
    *out = new chimera_engine{std::move(core)};
    return CHIMERA_OK;
  });
}

chimera_status chimera_engine_create_from_file(const char* path,
                                               const chimera_engine_params* params,
                                               chimera_engine** out) {
  if (out != nullptr) *out = nullptr;
  if (path == nullptr)
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_engine_create_from_file: path is NULL");
  std::string text;
  if (!read_file(path, text)) {
    return fail(CHIMERA_ERR_NOT_FOUND, fmt::format("cannot read engine config '{}'", path));
  }
  return chimera_engine_create(text.c_str(), params, out);
}

void chimera_engine_destroy(chimera_engine* engine) {
  try {
    delete engine;
  } catch (...) {
  }
}

int chimera_poll(chimera_engine* engine, int timeout_ms) {
  if (engine == nullptr) {
    fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_poll: engine is NULL");
    return -1;
  }
  try {
    EngineCore& core = *engine->core;
    if (core.delivery != CHIMERA_DELIVERY_POLL) return 0;
    std::deque<Event> batch;
    {
      std::unique_lock lock(core.qmu);
      auto ready = [&] { return !core.queue.empty(); };
      if (timeout_ms < 0) {
        core.qcv.wait(lock, ready);
      } else if (timeout_ms > 0) {
        core.qcv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
      }
      batch.swap(core.queue);
    }
    int ran = 0;
    for (auto& e : batch) {
      const auto& l = e.line;
      if (l->released.load()) continue;
      if (e.kind != EventKind::done && l->stop.load()) continue;
      ++ran;
      if (!run_callback(l, e) && !l->stop.exchange(true)) l->line->cancel();
    }
    return ran;
  } catch (const std::exception& e) {
    fail(CHIMERA_ERR_INTERNAL, fmt::format("chimera_poll: {}", e.what()));
    return -1;
  } catch (...) {
    fail(CHIMERA_ERR_INTERNAL, "chimera_poll: unknown error");
    return -1;
  }
}

// ------------------------------------------------------------------------------------ lines

chimera_line_params chimera_line_default_params(void) {
  chimera_line_params p;
  p.speaker = nullptr;
  p.budget_ms = 0;
  p.background = false;
  p.on_token = nullptr;
  p.on_thinking = nullptr;
  p.on_sentence = nullptr;
  p.on_done = nullptr;
  p.user_data = nullptr;
  return p;
}

chimera_status chimera_line_cancel(chimera_line* line) {
  if (line == nullptr)
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_line_cancel: line is NULL");
  return guarded("chimera_line_cancel", [&] {
    line->line->cancel();
    return CHIMERA_OK;
  });
}

chimera_status chimera_line_wait(chimera_line* line, int timeout_ms) {
  if (line == nullptr) return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_line_wait: line is NULL");
  return guarded("chimera_line_wait", [&] {
    std::unique_lock lock(line->mu);
    auto done = [&] { return line->done; };
    if (timeout_ms < 0) {
      line->cv.wait(lock, done);
    } else if (!line->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), done)) {
      return fail(CHIMERA_ERR_TIMEOUT,
                  fmt::format("chimera_line_wait: the line did not end within {} ms", timeout_ms));
    }
    return CHIMERA_OK;
  });
}

bool chimera_line_done(const chimera_line* line) {
  if (line == nullptr) return false;
  std::lock_guard lock(line->mu);
  return line->done;
}

chimera_status chimera_line_get_figures(const chimera_line* line, chimera_line_figures* out) {
  if (line == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_line_get_figures: line or out is NULL");
  }
  return guarded("chimera_line_get_figures", [&] {
    banter::LineRecord r;
    chimera_status st = CHIMERA_OK;
    bool done = false;
    {
      std::lock_guard lock(line->mu);
      done = line->done;
      st = line->status;
      if (done) r = line->rec;
    }
    if (!done) r = line->line->record();
    const Figures& f = r.completion.figures;
    chimera_line_figures g;
    g.index = r.index;
    g.finished = done ? 1 : 0;
    g.status = st;
    g.interrupted = r.interrupted ? 1 : 0;
    g.budget_held = r.budget_held ? (*r.budget_held ? 1 : 0) : -1;
    g.budget_ms = static_cast<double>(r.budget_ms);
    g.ttft_line_ms = ms(r.ttft_line_ns);
    g.ttft_client_ms = ms(f.ttft_client_ns);
    g.ttft_server_ms = f.ttft_server_ms.value_or(-1.0);
    g.first_sentence_ms = ms(r.first_sentence_ns);
    g.e2e_ms = ms(f.e2e_ns);
    g.director_ms = static_cast<double>(r.director_ns) / 1e6;
    g.scheduled_ms = static_cast<double>(r.scheduled_ns) / 1e6;
    g.decode_tps_client = f.decode_tps_client.value_or(-1.0);
    g.tokens_out = f.tokens_out.value_or(-1);
    g.tokens_in = f.tokens_in.value_or(-1);
    g.prompt_tokens_cached = f.prompt_tokens_cached.value_or(-1);
    g.sentences = r.sentences;
    g.attempts = f.attempts;
    *out = g;
    return CHIMERA_OK;
  });
}

const char* chimera_line_speaker(const chimera_line* line) {
  if (line == nullptr || !line->has_speaker.load()) return nullptr;
  return line->speaker.c_str();
}

const char* chimera_line_text(const chimera_line* line) {
  if (line == nullptr) return nullptr;
  std::lock_guard lock(line->mu);
  return line->done ? line->rec.text.c_str() : nullptr;
}

const char* chimera_line_thinking(const chimera_line* line) {
  if (line == nullptr) return nullptr;
  std::lock_guard lock(line->mu);
  return line->done ? line->rec.thinking.c_str() : nullptr;
}

const char* chimera_line_error(const chimera_line* line) {
  if (line == nullptr) return nullptr;
  std::lock_guard lock(line->mu);
  return line->done ? line->error.c_str() : nullptr;
}

void chimera_line_destroy(chimera_line* line) {
  if (line == nullptr) return;
  try {
    line->released.store(true);
    if (line->line) line->line->cancel();
    std::shared_ptr<chimera_line> keep = std::move(line->self);  // may free the line here
  } catch (...) {
  }
}

// ------------------------------------------------------------------------------------ scenes

chimera_scene_params chimera_scene_default_params(void) {
  chimera_scene_params p;
  p.warm_up = -1;
  p.budget_ms = 0;
  return p;
}

namespace {

banter::SceneOptions scene_options(const EngineCore& core) {
  banter::SceneOptions so;
  so.runtime = core.runtime.get();
  so.pools = core.pools;
  so.model_override = core.model_override;
  so.default_model = core.default_model;
  so.threads = core.threads;
  return so;
}

chimera_status open_scene(chimera_engine* engine, const std::string& text,
                          const std::string& source, const std::filesystem::path& base,
                          const chimera_scene_params* params, chimera_scene** out) {
  const chimera_scene_params p = params ? *params : chimera_scene_default_params();
  banter::SceneConfig cfg;
  std::string error;
  if (!banter::parse_scene(text, source, cfg, error)) return fail(CHIMERA_ERR_CONFIG, error);
  cfg.base_dir = base;
  if (p.budget_ms > 0) cfg.budget_ms = p.budget_ms;
  const bool warm = p.warm_up < 0 ? cfg.warm_up : p.warm_up != 0;
  auto s = std::make_unique<chimera_scene>();
  s->core = engine->core;
  for (const auto& c : cfg.characters) s->names.push_back(c.name);
  s->scene = std::make_unique<banter::Scene>(std::move(cfg), scene_options(*engine->core));
  if (warm) {
    const auto report = s->scene->warm_up();
    if (!report.ok()) {
      for (const auto& e : report.entries) {
        if (!e.error.empty()) {
          return fail(CHIMERA_ERR_BACKEND, fmt::format("warm-up of {} failed: {}", e.who, e.error));
        }
      }
    }
  }
  *out = s.release();
  return CHIMERA_OK;
}

}  // namespace

chimera_status chimera_scene_open(chimera_engine* engine, const char* scene_toml,
                                  const chimera_scene_params* params, chimera_scene** out) {
  if (out != nullptr) *out = nullptr;
  if (engine == nullptr || scene_toml == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                "chimera_scene_open: engine, scene_toml or out is NULL");
  }
  return guarded("chimera_scene_open",
                 [&] { return open_scene(engine, scene_toml, "scene", {}, params, out); });
}

chimera_status chimera_scene_open_file(chimera_engine* engine, const char* path,
                                       const chimera_scene_params* params, chimera_scene** out) {
  if (out != nullptr) *out = nullptr;
  if (engine == nullptr || path == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                "chimera_scene_open_file: engine, path or out is NULL");
  }
  return guarded("chimera_scene_open_file", [&] {
    std::string text;
    if (!read_file(path, text)) {
      return fail(CHIMERA_ERR_NOT_FOUND, fmt::format("cannot read scene file '{}'", path));
    }
    return open_scene(engine, text, path, std::filesystem::path(path).parent_path(), params, out);
  });
}

void chimera_scene_destroy(chimera_scene* scene) {
  try {
    delete scene;
  } catch (...) {
  }
}

chimera_status chimera_scene_warm_up(chimera_scene* scene) {
  if (scene == nullptr)
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_scene_warm_up: scene is NULL");
  return guarded("chimera_scene_warm_up", [&] {
    const auto report = scene->scene->warm_up();
    for (const auto& e : report.entries) {
      if (!e.error.empty()) {
        return fail(CHIMERA_ERR_BACKEND, fmt::format("warm-up of {} failed: {}", e.who, e.error));
      }
    }
    return CHIMERA_OK;
  });
}

int chimera_scene_character_count(const chimera_scene* scene) {
  return scene == nullptr ? 0 : static_cast<int>(scene->names.size());
}

const char* chimera_scene_character_name(const chimera_scene* scene, int index) {
  if (scene == nullptr || index < 0 || index >= static_cast<int>(scene->names.size()))
    return nullptr;
  return scene->names[std::size_t(index)].c_str();
}

chimera_status chimera_scene_say(chimera_scene* scene, const char* speaker, const char* text,
                                 bool interrupt) {
  if (scene == nullptr || text == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_scene_say: scene or text is NULL");
  }
  if (auto e = banter::validate_line(text); !e.empty()) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, fmt::format("chimera_scene_say: {}", e));
  }
  return guarded("chimera_scene_say", [&] {
    scene->scene->say(text, speaker ? speaker : "", interrupt);
    return CHIMERA_OK;
  });
}

int chimera_scene_interrupt(chimera_scene* scene) {
  if (scene == nullptr) {
    fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_scene_interrupt: scene is NULL");
    return -1;
  }
  try {
    return scene->scene->interrupt();
  } catch (const std::exception& e) {
    fail(CHIMERA_ERR_INTERNAL, fmt::format("chimera_scene_interrupt: {}", e.what()));
    return -1;
  }
}

chimera_status chimera_scene_next(chimera_scene* scene, const chimera_line_params* params,
                                  chimera_line** out) {
  if (out != nullptr) *out = nullptr;
  if (scene == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_scene_next: scene or out is NULL");
  }
  return guarded("chimera_scene_next", [&] {
    if (params != nullptr && params->speaker != nullptr) {
      bool known = false;
      for (const auto& n : scene->names) known = known || n == params->speaker;
      if (!known) {
        return fail(CHIMERA_ERR_NOT_FOUND,
                    fmt::format("chimera_scene_next: no character is named '{}'", params->speaker));
      }
    }
    if (params != nullptr && params->budget_ms < 0) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_scene_next: budget_ms must be 0 or more");
    }
    return start_line(scene->core, *scene->scene, params, out);
  });
}

// ------------------------------------------------------------------------------------ sessions

chimera_session_params chimera_session_default_params(void) {
  chimera_session_params p;
  p.name = nullptr;
  p.persona = nullptr;
  p.style = nullptr;
  p.setting = nullptr;
  p.player = nullptr;
  p.model = nullptr;
  p.pool = nullptr;
  p.num_ctx = 0;
  p.num_predict = 0;
  p.temperature = -1.0f;
  p.budget_ms = 0;
  p.warm_up = true;
  return p;
}

chimera_status chimera_session_open(chimera_engine* engine, const chimera_session_params* params,
                                    chimera_session** out) {
  if (out != nullptr) *out = nullptr;
  if (engine == nullptr || params == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                "chimera_session_open: engine, params or out is NULL");
  }
  if (params->name == nullptr || *params->name == '\0') {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_session_open: params->name is required");
  }
  // Bounded before anything is allocated, with the bounds of scene files (scene.hpp): num_ctx
  // sizes the session's KV cache.
  if (params->num_ctx != 0 &&
      (params->num_ctx < banter::kMinSceneNumCtx || params->num_ctx > kMaxNumCtx)) {
    return fail(
        CHIMERA_ERR_INVALID_ARGUMENT,
        fmt::format("chimera_session_open: num_ctx is {}; use 0 (the default, {}) or {} "
                    "to {}",
                    params->num_ctx, banter::kDefaultNumCtx, banter::kMinSceneNumCtx, kMaxNumCtx));
  }
  if (params->num_predict < 0 || params->num_predict > banter::kMaxSceneNumPredict) {
    return fail(
        CHIMERA_ERR_INVALID_ARGUMENT,
        fmt::format("chimera_session_open: num_predict is {}; use 0 (the default, {}) "
                    "to {}",
                    params->num_predict, banter::kDefaultNumPredict, banter::kMaxSceneNumPredict));
  }
  if (params->budget_ms < 0 || params->budget_ms > 600'000) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                fmt::format("chimera_session_open: budget_ms is {}; use 0 (the default) to 600000",
                            params->budget_ms));
  }
  if (std::isnan(params->temperature) || params->temperature > 100) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                "chimera_session_open: temperature must be a number from 0 to 100 (or negative "
                "for the default)");
  }
  return guarded("chimera_session_open", [&] {
    banter::SceneConfig cfg;
    banter::CharacterConfig c;
    c.name = params->name;
    if (params->persona) c.persona = params->persona;
    if (params->style) c.style = params->style;
    if (params->model) c.placement.model = params->model;
    if (params->pool) c.placement.pool = params->pool;
    c.options.num_ctx = params->num_ctx > 0 ? params->num_ctx : banter::kDefaultNumCtx;
    c.options.num_predict =
        params->num_predict > 0 ? params->num_predict : banter::kDefaultNumPredict;
    c.options.temperature = params->temperature >= 0 ? params->temperature : 0.8;
    if (params->setting) cfg.setting = params->setting;
    if (params->player) cfg.player = params->player;
    if (params->budget_ms > 0) cfg.budget_ms = params->budget_ms;
    if (c.name == cfg.player || c.name == cfg.narrator) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                  fmt::format("chimera_session_open: the character may not be named '{}' (the "
                              "player's or the narrator's name)",
                              c.name));
    }
    cfg.characters.push_back(std::move(c));
    if (auto e = banter::validate_scene(cfg); !e.empty()) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT, fmt::format("chimera_session_open: {}", e));
    }
    auto s = std::make_unique<chimera_session>();
    s->core = engine->core;
    s->scene = std::make_unique<banter::Scene>(std::move(cfg), scene_options(*engine->core));
    if (params->warm_up) {
      const auto report = s->scene->warm_up();
      for (const auto& e : report.entries) {
        if (!e.error.empty()) {
          return fail(CHIMERA_ERR_BACKEND, fmt::format("warm-up failed: {}", e.error));
        }
      }
    }
    *out = s.release();
    return CHIMERA_OK;
  });
}

void chimera_session_destroy(chimera_session* session) {
  try {
    delete session;
  } catch (...) {
  }
}

chimera_status chimera_session_send(chimera_session* session, const char* text,
                                    const chimera_line_params* params, chimera_line** out) {
  if (out != nullptr) *out = nullptr;
  if (session == nullptr || text == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_session_send: session, text or out is NULL");
  }
  if (auto e = banter::validate_line(text); !e.empty()) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, fmt::format("chimera_session_send: {}", e));
  }
  return guarded("chimera_session_send", [&] {
    session->scene->say(text, {}, true);
    chimera_line_params p = params ? *params : chimera_line_default_params();
    p.speaker = nullptr;
    return start_line(session->core, *session->scene, &p, out);
  });
}

}  // extern "C"

// ------------------------------------------------------------------------------------- agents

struct chimera_toolbox {
  Toolbox tools;
};

struct chimera_tool_output {
  std::string text;
};

struct chimera_agent_result {
  LoopResult result;
  std::string end;
  std::string error;
  std::string json;
};

namespace {

// A tool's failure, as the host's function reported it (the loop turns it into a result that
// says "failed").
struct ToolFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kAgentDefaultCtx = 4'096;
constexpr int kAgentDefaultPredict = 256;

// The backend of a run: the pool named, or the model file in-process (loaded once per engine
// and context size).
std::shared_ptr<Backend> agent_backend(EngineCore& core, const chimera_agent_params& p,
                                       int num_ctx) {
  std::lock_guard lock(core.agents_mu);
  if (p.pool != nullptr) {
    const std::string key = std::string("pool:") + p.pool;
    if (auto it = core.agent_backends.find(key); it != core.agent_backends.end()) {
      return it->second;
    }
    for (const auto& pc : core.pools) {
      if (pc.name != p.pool) continue;
      auto b = std::make_shared<pool::Pool>(pc, *core.runtime);
      core.agent_backends[key] = b;
      return b;
    }
    throw std::out_of_range(
        fmt::format("there is no pool named '{}' in the engine config", p.pool));
  }
  std::string model = !core.model_override.empty() ? core.model_override
                      : p.model != nullptr         ? std::string(p.model)
                                                   : core.default_model;
  if (model.empty() || model == "tiny") {
    bool created = false;
    std::string error;
    const auto path = model::cached_tiny_model(created, error);
    if (path.empty()) throw std::invalid_argument(error);
    model = path.string();
  }
  if (!std::filesystem::exists(model)) {
    throw std::out_of_range(fmt::format("the model file '{}' does not exist", model));
  }
  const std::string key = fmt::format("model:{}:{}", model, num_ctx);
  if (auto it = core.agent_backends.find(key); it != core.agent_backends.end()) return it->second;
  EndpointConfig cfg;
  cfg.kind = BackendKind::llama;
  cfg.url = model;
  cfg.llama.parallel = 1;
  cfg.llama.ctx_per_seq = num_ctx;
  cfg.llama.threads = core.threads;
  std::shared_ptr<Backend> b = make_backend(cfg, *core.runtime);
  core.agent_backends[key] = b;
  return b;
}

std::string check_agent_params(const chimera_agent_params& p) {
  if (p.max_steps < 0 || p.max_steps > 1'000) {
    return fmt::format("max_steps is {}; use 0 (the default, 8) or 1 to 1000", p.max_steps);
  }
  if (p.tool_timeout_ms < 0 || p.tool_timeout_ms > 86'400'000) {
    return fmt::format("tool_timeout_ms is {}; use 0 (the default, 30000) or 1 to 86400000",
                       p.tool_timeout_ms);
  }
  if (p.num_ctx != 0 && (p.num_ctx < 64 || p.num_ctx > kMaxNumCtx)) {
    return fmt::format("num_ctx is {}; use 0 (the default, {}) or 64 to {}", p.num_ctx,
                       kAgentDefaultCtx, kMaxNumCtx);
  }
  if (p.num_predict < 0 || p.num_predict > kMaxNumPredict) {
    return fmt::format("num_predict is {}; use 0 (the default, {}) or 1 to {}", p.num_predict,
                       kAgentDefaultPredict, kMaxNumPredict);
  }
  if (std::isnan(p.temperature) || p.temperature > 100.0f) {
    return "temperature must be a number from 0 to 100 (or negative for the default)";
  }
  if (p.n_logit_bias < 0 || (p.n_logit_bias > 0 && p.logit_bias == nullptr)) {
    return fmt::format("n_logit_bias is {} but logit_bias is {}", p.n_logit_bias,
                       p.logit_bias == nullptr ? "NULL" : "set");
  }
  if (p.tool_choice != nullptr) {
    const std::string c = p.tool_choice;
    if (c != "auto" && c != "required" && c != "none") {
      return fmt::format("tool_choice is '{}'; use auto, required or none (or NULL)", c);
    }
  }
  return {};
}

}  // namespace

extern "C" {

void chimera_tool_output_set(chimera_tool_output* output, const char* text, size_t length) {
  if (output == nullptr) return;
  try {
    output->text.assign(text != nullptr ? text : "", text != nullptr ? length : 0);
  } catch (...) {
  }
}

chimera_status chimera_toolbox_create(chimera_toolbox** out) {
  if (out == nullptr)
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_toolbox_create: out is NULL");
  *out = nullptr;
  return guarded("chimera_toolbox_create", [&] {
    *out = new chimera_toolbox();
    return CHIMERA_OK;
  });
}

void chimera_toolbox_destroy(chimera_toolbox* toolbox) {
  delete toolbox;
}

chimera_status chimera_toolbox_add(chimera_toolbox* toolbox, const char* name,
                                   const char* description, const char* parameters_json,
                                   chimera_tool_fn fn, void* user_data) {
  if (toolbox == nullptr || name == nullptr || fn == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_toolbox_add: toolbox, name or fn is NULL");
  }
  return guarded("chimera_toolbox_add", [&] {
    Tool t;
    t.name = name;
    if (description != nullptr) t.description = description;
    if (parameters_json != nullptr) t.parameters_json = parameters_json;
    t.run = [fn, user_data](const std::string& args) {
      chimera_tool_output out;
      if (!fn(args.c_str(), &out, user_data)) throw ToolFailed(out.text);
      return std::move(out.text);
    };
    try {
      toolbox->tools.add(std::move(t));
    } catch (const std::invalid_argument& e) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT, fmt::format("chimera_toolbox_add: {}", e.what()));
    }
    return CHIMERA_OK;
  });
}

chimera_agent_params chimera_agent_default_params(void) {
  chimera_agent_params p;
  p.model = nullptr;
  p.pool = nullptr;
  p.system = nullptr;
  p.tool_choice = nullptr;
  p.max_steps = 0;
  p.tool_timeout_ms = 0;
  p.num_ctx = 0;
  p.num_predict = 0;
  p.temperature = -1.0f;
  p.seed = -1;
  p.logit_bias = nullptr;
  p.n_logit_bias = 0;
  return p;
}

chimera_status chimera_agent_run(chimera_engine* engine, const chimera_agent_params* params,
                                 const chimera_toolbox* toolbox, const char* prompt,
                                 chimera_agent_result** out) {
  if (out != nullptr) *out = nullptr;
  if (engine == nullptr || toolbox == nullptr || prompt == nullptr || out == nullptr) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT,
                "chimera_agent_run: engine, toolbox, prompt or out is NULL");
  }
  const chimera_agent_params p = params ? *params : chimera_agent_default_params();
  if (auto e = check_agent_params(p); !e.empty()) {
    return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_agent_run: " + e);
  }
  return guarded("chimera_agent_run", [&] {
    Request req;
    if (p.system != nullptr) req.messages.push_back({.role = "system", .content = p.system});
    req.messages.push_back({.role = "user", .content = prompt});
    if (p.tool_choice != nullptr) req.tool_choice = p.tool_choice;
    req.options.num_predict = p.num_predict > 0 ? p.num_predict : kAgentDefaultPredict;
    if (p.temperature >= 0.0f) req.options.temperature = p.temperature;
    if (p.seed >= 0) req.options.seed = p.seed;
    for (int i = 0; i < p.n_logit_bias; ++i) {
      req.logit_bias.push_back({p.logit_bias[i].token, p.logit_bias[i].bias});
    }
    if (auto e = validate(req.logit_bias); !e.empty()) {
      return fail(CHIMERA_ERR_INVALID_ARGUMENT, "chimera_agent_run: " + e);
    }
    const int num_ctx = p.num_ctx > 0 ? p.num_ctx : kAgentDefaultCtx;
    std::shared_ptr<Backend> backend;
    try {
      backend = agent_backend(*engine->core, p, num_ctx);
    } catch (const std::out_of_range& e) {
      return fail(CHIMERA_ERR_NOT_FOUND, fmt::format("chimera_agent_run: {}", e.what()));
    }
    LoopOptions lo;
    if (p.max_steps > 0) lo.max_steps = p.max_steps;
    if (p.tool_timeout_ms > 0) lo.tool_timeout_ms = p.tool_timeout_ms;
    auto r = std::make_unique<chimera_agent_result>();
    r->result = run_tool_loop(*backend, std::move(req), toolbox->tools, lo);
    r->end = to_string(r->result.end);
    r->error = r->result.error.message;
    r->json = to_json(r->result);
    *out = r.release();
    return CHIMERA_OK;
  });
}

void chimera_agent_result_destroy(chimera_agent_result* result) {
  delete result;
}

const char* chimera_agent_result_end(const chimera_agent_result* result) {
  return result != nullptr ? result->end.c_str() : "";
}

const char* chimera_agent_result_answer(const chimera_agent_result* result) {
  return result != nullptr ? result->result.answer.c_str() : "";
}

const char* chimera_agent_result_error(const chimera_agent_result* result) {
  return result != nullptr ? result->error.c_str() : "";
}

int chimera_agent_result_steps(const chimera_agent_result* result) {
  return result != nullptr ? static_cast<int>(result->result.steps.size()) : 0;
}

const char* chimera_agent_result_json(const chimera_agent_result* result) {
  return result != nullptr ? result->json.c_str() : "";
}

}  // extern "C"
