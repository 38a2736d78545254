// The banter scene at run time (see banter.hpp): characters as sessions, turns, warm-up,
// background catch-up, deadline-aware scheduling, streaming for speech, interruption.
#include <chimera/banter/banter.hpp>
#include <chimera/banter/speech.hpp>

#include "banter/model_text.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/model/synth.hpp>
#include <chimera/pool/pool.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

namespace chimera::banter {

namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kFarAway = int64_t(3600) * 1'000 * kMs;  // background deadline
std::atomic<uint64_t> g_scene_ids{0};

// Set while a scene runs a caller's callback on this thread: such a thread must not wait for a
// line to end (it may be the very thread that ends it).
thread_local int t_in_callback = 0;
struct InCallback {
  InCallback() { ++t_in_callback; }
  ~InCallback() { --t_in_callback; }
};

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

// Position of `name` in `text` as a whole word, case-insensitive; npos when absent.
std::size_t find_word(std::string_view text, std::string_view name) {
  if (name.empty() || text.size() < name.size()) return std::string_view::npos;
  auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::size_t i = 0; i + name.size() <= text.size(); ++i) {
    bool eq = true;
    for (std::size_t k = 0; k < name.size() && eq; ++k) eq = lower(text[i + k]) == lower(name[k]);
    if (!eq) continue;
    if (i > 0 && word_char(text[i - 1])) continue;
    if (i + name.size() < text.size() && word_char(text[i + name.size()])) continue;
    return i;
  }
  return std::string_view::npos;
}

std::string strip(std::string s) {
  auto sp = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '"'; };
  while (!s.empty() && sp(s.front())) s.erase(s.begin());
  while (!s.empty() && sp(s.back())) s.pop_back();
  return s;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

// ------------------------------------------------------------------------------ Line::State

void cancel_queued_line(Scene::Impl& s, const std::shared_ptr<Line::State>& st);

struct Line::State {
  LineOptions opts;
  std::weak_ptr<Scene::Impl> scene;
  int64_t t_due = 0;
  int64_t deadline = 0;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<RequestHandle> handle;  // the request running for it now (director or line)
  bool cancel_requested = false;
  bool finished = false;
  LineRecord rec;

  // Scene mutex.
  Scheduler::Id job = 0;
  int actor = -1;

  // The thread that runs the line's request callbacks (one at a time).
  ThinkSplitter think;
  std::unique_ptr<NamePrefix> name;
  std::unique_ptr<SentenceSplitter> split;
  bool first_token = false;
  int64_t t_first = 0;
  int sentence_index = 0;
  std::optional<int64_t> t_first_sentence;
  bool stopped = false;  // a callback asked to stop

  bool cancelled() const {
    std::lock_guard lock(mu);
    return cancel_requested;
  }
};

void Line::cancel() {
  std::shared_ptr<RequestHandle> h;
  {
    std::lock_guard lock(s_->mu);
    if (s_->finished || s_->cancel_requested) return;
    s_->cancel_requested = true;
    h = s_->handle;
  }
  if (h) h->cancel();
  // Queued (not sent yet): take it out of the scene's queue and end it here.
  if (auto scene = s_->scene.lock()) cancel_queued_line(*scene, s_);
}

LineRecord Line::wait() {
  std::unique_lock lock(s_->mu);
  s_->cv.wait(lock, [&] { return s_->finished; });
  return s_->rec;
}

bool Line::wait_for(int64_t timeout_ms) {
  std::unique_lock lock(s_->mu);
  return s_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                         [&] { return s_->finished; });
}

bool Line::done() const {
  std::lock_guard lock(s_->mu);
  return s_->finished;
}

std::string Line::speaker() const {
  std::lock_guard lock(s_->mu);
  return s_->rec.speaker;
}

LineRecord Line::record() const {
  std::lock_guard lock(s_->mu);
  return s_->rec;
}

// ------------------------------------------------------------------------------ Scene::Impl

namespace {

struct Actor {
  std::string name;
  bool director = false;
  int lane = 0;
  Options options;
  std::string system;
  std::string session;
  int sys_tokens = 0;            // its prompt without any line
  std::size_t window_start = 0;  // first transcript entry in its prompt
  std::size_t seen = 0;          // transcript entries its cache holds
  bool suspect = false;          // its cache must be rebuilt (a prefill was cut short)
  int64_t last_assigned = -1;    // for reply-to-last: when it was last given a line
  Scheduler::Id catch_up = 0;    // a queued catch-up, 0: none
};

struct Lane {
  Backend* backend = nullptr;
  bool inproc = false;
  std::shared_ptr<detail::ModelText> text;
  std::string label;
  int limit = 0;
  // Tokens of each transcript line as a message of this lane's model: as seen by others
  // ("Name: text") and by its speaker (the raw text); -1 until first needed.
  std::vector<std::array<int, 2>> line_tokens;
  std::array<int, 2> wrap = {8, 8};  // tokens the template adds around a user / assistant message
};

enum class JobKind { line, director, catch_up, warm };

struct WarmTracker {
  std::mutex mu;
  std::condition_variable cv;
  int remaining = 0;
  WarmUpReport report;
};

struct JobInfo {
  JobKind kind = JobKind::line;
  int actor = -1;
  std::shared_ptr<Line::State> line;
  std::shared_ptr<WarmTracker> warm;
  std::size_t warm_slot = 0;
  std::size_t upto = 0;  // transcript entries in its prompt
  std::shared_ptr<RequestHandle> handle;
  int64_t t_start = 0;
};

struct Launch {
  Scheduler::Id id = 0;
  JobKind kind = JobKind::line;
  Backend* backend = nullptr;
  Request request;
  std::shared_ptr<Line::State> line;
};

}  // namespace

struct Scene::Impl : std::enable_shared_from_this<Impl> {
  SceneConfig cfg;
  SceneOptions opts;
  uint64_t uid = 0;
  std::vector<std::unique_ptr<Backend>> owned;  // destroyed by ~Scene, after every request ended
  std::vector<Lane> lanes;
  std::vector<Actor> actors;  // the characters, then the director (turns = director)
  int director = -1;

  mutable std::mutex mu;
  std::condition_variable idle_cv;
  std::vector<LineRecord> transcript;
  std::unique_ptr<Scheduler> sched;
  std::map<Scheduler::Id, JobInfo> jobs;
  std::set<std::shared_ptr<Line::State>> open_lines;
  int in_flight = 0;
  bool closing = false;
  int rr_next = 0;
  int64_t assign_seq = 0;

  // The service thread: pumps the scheduler when a line's first token or end lets background
  // work go, and when a grace period runs out.
  std::thread service;
  std::mutex svc_mu;
  std::condition_variable svc_cv;
  bool svc_poke = false;
  bool svc_stop = false;
  int64_t svc_wake = 0;

  void setup();
  void shutdown();
  void service_loop();
  void want_pump() {
    {
      std::lock_guard lock(svc_mu);
      svc_poke = true;
    }
    svc_cv.notify_one();
  }
  void pump();
  void start(Launch& l);

  // Scene mutex held.
  int pick_speaker(TurnPolicy policy);
  int find_character(std::string_view name) const;
  void submit_line(const std::shared_ptr<Line::State>& st, int actor);
  void schedule_catch_ups();
  std::vector<detail::ChatMessage> messages(const Actor& a, std::size_t from,
                                            std::size_t upto) const;
  int count_tokens(const Actor& a, std::size_t from, std::size_t upto) const;
  int line_tokens(const Actor& a, std::size_t i);
  bool fit_window(Actor& a, bool prefill, std::size_t upto, std::string& error);
  bool build(JobInfo& j, Request& r, bool& skip, std::string& error);

  // Callbacks.
  bool line_token(Scheduler::Id id, const std::shared_ptr<Line::State>& st, const TokenEvent& ev);
  void line_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st, Completion c);
  void director_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st, Completion c);
  void prefill_done(Scheduler::Id id, Completion c);
  void end_line(const std::shared_ptr<Line::State>& st, LineRecord rec);
  void fail_line(const std::shared_ptr<Line::State>& st, ErrorKind kind, std::string message);
};

void cancel_queued_line(Scene::Impl& s, const std::shared_ptr<Line::State>& st) {
  bool removed = false;
  {
    std::lock_guard lock(s.mu);
    if (st->job != 0 && s.sched->remove(st->job)) {
      s.jobs.erase(st->job);
      s.open_lines.erase(st);
      removed = true;
    }
  }
  if (removed) s.fail_line(st, ErrorKind::cancelled, "cancelled before it was sent");
}

void Scene::Impl::setup() {
  uid = ++g_scene_ids;
  Runtime& rt = opts.runtime ? *opts.runtime : Runtime::shared();
  if (cfg.characters.empty()) throw std::invalid_argument("a scene needs at least one character");

  // Where each actor runs. Lanes are keyed by model file or pool name.
  struct Want {
    std::string key;
    bool inproc = false;
    std::string path;
    const pool::PoolConfig* pool = nullptr;
    int actors = 0;
    int ctx = 0;
  };
  std::vector<Want> wants;
  auto resolve = [&](const Placement& p, int num_ctx, const std::string& who) -> int {
    Want w;
    if (!opts.model_override.empty() || p.pool.empty()) {
      std::string model = !opts.model_override.empty() ? opts.model_override : p.model;
      const bool from_scene = opts.model_override.empty() && !p.model.empty();
      if (model.empty()) model = opts.default_model;
      if (model.empty() || model == "tiny") {
        bool created = false;
        std::string error;
        const auto path = model::cached_tiny_model(created, error);
        if (path.empty()) throw std::invalid_argument(fmt::format("{}: {}", who, error));
        model = path.string();
      } else if (from_scene && std::filesystem::path(model).is_relative() &&
                 !cfg.base_dir.empty()) {  // relative to the scene file
        model = (cfg.base_dir / model).string();
      }
      std::error_code ec;
      const auto canon = std::filesystem::weakly_canonical(model, ec);
      w.inproc = true;
      w.path = ec ? model : canon.string();
      w.key = "model:" + w.path;
    } else {
      for (const auto* list : {&cfg.pools, &opts.pools}) {
        for (const auto& pc : *list) {
          if (pc.name == p.pool && w.pool == nullptr) w.pool = &pc;
        }
      }
      if (w.pool == nullptr) {
        std::vector<std::string> names;
        for (const auto& pc : cfg.pools) names.push_back(pc.name);
        for (const auto& pc : opts.pools) names.push_back(pc.name);
        throw std::invalid_argument(
            fmt::format("{} runs on pool '{}', which neither the scene nor the engine defines "
                        "(pools: {})",
                        who, p.pool, names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
      }
      w.key = "pool:" + p.pool;
    }
    for (std::size_t i = 0; i < wants.size(); ++i) {
      if (wants[i].key == w.key) {
        ++wants[i].actors;
        wants[i].ctx = std::max(wants[i].ctx, num_ctx);
        return static_cast<int>(i);
      }
    }
    w.actors = 1;
    w.ctx = num_ctx;
    wants.push_back(w);
    return static_cast<int>(wants.size()) - 1;
  };

  for (const auto& c : cfg.characters) {
    Actor a;
    a.name = c.name;
    a.options = c.options;
    if (!a.options.num_ctx) a.options.num_ctx = kDefaultNumCtx;
    if (!a.options.num_predict) a.options.num_predict = kDefaultNumPredict;
    a.lane = resolve(c.placement, *a.options.num_ctx, "character '" + c.name + "'");
    a.session = fmt::format("banter-{}-{}", uid, c.name);
    std::string others;
    for (const auto& o : cfg.characters) {
      if (o.name != c.name) others += (others.empty() ? "" : ", ") + o.name;
    }
    others += (others.empty() ? "" : ", and ") + cfg.player;
    // The name and persona come first: each character's prompt then differs from its first
    // words on, which is what lets llama-server find a character's slot by prompt similarity
    // (its default threshold is a 10% common prefix).
    a.system = fmt::format("{}: {}", c.name, c.persona.empty() ? "a character" : c.persona);
    if (!c.style.empty()) a.system += fmt::format("\nHow {} speaks: {}", c.name, c.style);
    if (!cfg.title.empty() || !cfg.setting.empty()) {
      a.system += fmt::format("\nThe scene: {}{}{}", cfg.title,
                              cfg.title.empty() || cfg.setting.empty() ? "" : ". ", cfg.setting);
    }
    a.system += fmt::format("\nAlso here: {}.", others);
    a.system += fmt::format(
        "\nYou are {}. Answer with one short line that {} says out loud: no name in front, no "
        "narration.",
        c.name, c.name);
    actors.push_back(std::move(a));
  }
  if (cfg.turns == TurnPolicy::director) {
    Actor d;
    d.name = "director";
    d.director = true;
    d.options = cfg.director.options;
    if (!d.options.num_ctx) d.options.num_ctx = kDefaultNumCtx;
    if (!d.options.num_predict) d.options.num_predict = 16;
    if (!d.options.temperature) d.options.temperature = 0.0;
    d.lane = resolve(cfg.director.placement, *d.options.num_ctx, "the director");
    d.session = fmt::format("banter-{}-director", uid);
    std::string cast;
    for (const auto& c : cfg.characters) {
      cast += fmt::format("\n- {}: {}", c.name, c.persona.empty() ? "a character" : c.persona);
    }
    d.system = fmt::format("{}\nThe scene: {}. {}\nThe characters:{}\nAfter each line, answer "
                           "with the name of the character who speaks next.",
                           cfg.director.prompt, cfg.title, cfg.setting, cast);
    director = static_cast<int>(actors.size());
    actors.push_back(std::move(d));
  }

  std::vector<int> limits;
  for (const auto& w : wants) {
    Lane l;
    if (w.inproc) {
      EndpointConfig ec;
      ec.kind = BackendKind::llama;
      ec.url = w.path;
      ec.llama.parallel = w.actors + 1;  // every session stays resident, plus one spare
      ec.llama.ctx_per_seq = std::max(w.ctx, 64);
      ec.llama.threads = opts.threads;
      owned.push_back(make_backend(ec, rt));  // throws std::invalid_argument with the reason
      std::string error;
      l.text = detail::ModelText::load(w.path, error);
      if (!l.text) throw std::invalid_argument(error);
      l.inproc = true;
      l.label = w.path;
      // What the template adds around one message, measured on this model's template.
      const std::vector<detail::ChatMessage> base = {{"system", "s"}};
      const int n0 = l.text->count_tokens(l.text->format(base, true));
      const int nx = l.text->count_tokens("x") - 1;
      for (int k = 0; k < 2; ++k) {
        auto msgs = base;
        msgs.push_back({k == 0 ? "user" : "assistant", "x"});
        l.wrap[std::size_t(k)] =
            std::max(0, l.text->count_tokens(l.text->format(msgs, true)) - n0 - nx) + 2;
      }
      l.limit = ec.llama.parallel;
    } else {
      pool::PoolConfig pc = *w.pool;
      if (pc.hedge_after_ms == 0 && pc.endpoints.size() >= 2) {
        if (cfg.hedge_after_ms < 0) pc.hedge_after_ms = std::max<int64_t>(1, cfg.budget_ms / 2);
        if (cfg.hedge_after_ms > 0) pc.hedge_after_ms = cfg.hedge_after_ms;
      }
      int limit = 0;
      bool unlimited = false;
      for (const auto& e : pc.endpoints) {
        if (e.max_concurrency <= 0) unlimited = true;
        limit += e.max_concurrency;
      }
      owned.push_back(std::make_unique<pool::Pool>(pc, rt));
      l.label = "pool:" + pc.name;
      l.limit = unlimited ? 0 : limit;
    }
    if (cfg.max_concurrent > 0) l.limit = cfg.max_concurrent;
    l.backend = owned.back().get();
    limits.push_back(l.limit);
    lanes.push_back(std::move(l));
  }
  sched = std::make_unique<Scheduler>(limits, opts.background_grace_ms * kMs);

  // Every persona must leave room for at least a line.
  for (auto& a : actors) {
    const int need = count_tokens(a, 0, 0);
    a.sys_tokens = need;
    const int room = *a.options.num_ctx - *a.options.num_predict - 8;
    if (need > room) {
      throw std::invalid_argument(fmt::format(
          "{}'s prompt (persona, style, scene) takes {} tokens, but num_ctx {} minus num_predict "
          "{} leaves {}: shorten it or raise num_ctx",
          a.name, need, *a.options.num_ctx, *a.options.num_predict, room));
    }
  }

  if (!cfg.opening.empty()) {
    LineRecord r;
    r.index = 0;
    r.speaker = cfg.narrator;
    r.text = cfg.opening;
    r.raw = cfg.opening;
    r.t_due_ns = now_ns();
    transcript.push_back(std::move(r));
  }
  service = std::thread([this] { service_loop(); });
}

void Scene::Impl::shutdown() {
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::vector<std::shared_ptr<Line::State>> queued;
  {
    std::lock_guard lock(mu);
    closing = true;
    for (auto it = jobs.begin(); it != jobs.end();) {
      if (sched->remove(it->first)) {
        if (it->second.line) queued.push_back(it->second.line);
        if (it->second.warm) {
          std::lock_guard wl(it->second.warm->mu);
          it->second.warm->report.entries[it->second.warm_slot].error = "the scene closed";
          if (--it->second.warm->remaining == 0) it->second.warm->cv.notify_all();
        }
        it = jobs.erase(it);
        continue;
      }
      if (it->second.handle) handles.push_back(it->second.handle);
      ++it;
    }
    for (const auto& st : open_lines) {
      std::lock_guard ll(st->mu);
      st->cancel_requested = true;
      if (st->handle) handles.push_back(st->handle);
    }
  }
  for (auto& st : queued) {
    {
      std::lock_guard lock(mu);
      open_lines.erase(st);
    }
    fail_line(st, ErrorKind::cancelled, "the scene closed");
  }
  for (auto& h : handles) h->cancel();
  {
    std::unique_lock lock(mu);
    idle_cv.wait(lock, [&] { return in_flight == 0; });
  }
  {
    std::lock_guard lock(svc_mu);
    svc_stop = true;
  }
  svc_cv.notify_one();
  if (service.joinable()) service.join();
  owned.clear();  // here, on the owner's thread
  for (auto& l : lanes) l.backend = nullptr;
}

void Scene::Impl::service_loop() {
  for (;;) {
    {
      std::unique_lock lock(svc_mu);
      auto ready = [&] { return svc_poke || svc_stop || (svc_wake != 0 && now_ns() >= svc_wake); };
      while (!ready()) {
        if (svc_wake != 0) {
          const int64_t wait = std::max<int64_t>(svc_wake - now_ns(), 0);
          svc_cv.wait_for(lock, std::chrono::nanoseconds(wait));
        } else {
          svc_cv.wait(lock);
        }
      }
      if (svc_stop) return;
      svc_poke = false;
      svc_wake = 0;
    }
    pump();
  }
}

int Scene::Impl::find_character(std::string_view name) const {
  for (std::size_t i = 0; i < cfg.characters.size(); ++i) {
    if (cfg.characters[i].name == name) return static_cast<int>(i);
  }
  for (std::size_t i = 0; i < cfg.characters.size(); ++i) {
    const auto& n = cfg.characters[i].name;
    if (n.size() == name.size() &&
        std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) { return lower(a) == lower(b); })) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

int Scene::Impl::pick_speaker(TurnPolicy policy) {
  const int n = static_cast<int>(cfg.characters.size());
  if (policy == TurnPolicy::round_robin) return rr_next % n;
  if (policy == TurnPolicy::director) return -1;
  // reply-to-last: the character the last line names (not its own speaker), else the one
  // silent longest.
  int last_speaker = -1;
  if (!transcript.empty()) {
    const LineRecord& last = transcript.back();
    last_speaker = last.character;
    std::size_t best = std::string::npos;
    int who = -1;
    for (int i = 0; i < n; ++i) {
      if (i == last.character) continue;
      const std::size_t at = find_word(last.text, cfg.characters[std::size_t(i)].name);
      if (at < best) {
        best = at;
        who = i;
      }
    }
    if (who >= 0) return who;
  }
  int who = -1;
  for (int i = 0; i < n; ++i) {
    if (i == last_speaker && n > 1) continue;
    if (who < 0 || actors[std::size_t(i)].last_assigned < actors[std::size_t(who)].last_assigned) {
      who = i;
    }
  }
  return who;
}

void Scene::Impl::submit_line(const std::shared_ptr<Line::State>& st, int actor) {
  Actor& a = actors[std::size_t(actor)];
  a.last_assigned = ++assign_seq;
  if (cfg.turns == TurnPolicy::round_robin) {
    rr_next = (actor + 1) % static_cast<int>(cfg.characters.size());
  }
  if (a.catch_up != 0 && sched->remove(a.catch_up)) jobs.erase(a.catch_up);  // the line covers it
  a.catch_up = 0;
  const Scheduler::Id id =
      sched->submit({a.lane, actor, st->opts.priority, st->deadline});
  JobInfo j;
  j.kind = JobKind::line;
  j.actor = actor;
  j.line = st;
  jobs[id] = std::move(j);
  st->job = id;
  st->actor = actor;
  st->name = std::make_unique<NamePrefix>(a.name);  // no token of the line has come yet
  std::lock_guard lock(st->mu);
  st->rec.speaker = a.name;
  st->rec.character = actor;
}

void Scene::Impl::schedule_catch_ups() {
  if (!cfg.sessions || !cfg.catch_up || closing) return;
  // Whoever is likely to speak soonest catches up first: the director (it decides every turn),
  // then the characters in turn order (round-robin) or the one silent longest first.
  const int n = static_cast<int>(cfg.characters.size());
  std::vector<int> rank(actors.size(), 0);
  std::vector<int> order(std::size_t(n), 0);
  for (int i = 0; i < n; ++i) order[std::size_t(i)] = i;
  if (cfg.turns == TurnPolicy::round_robin) {
    for (int i = 0; i < n; ++i) rank[std::size_t(i)] = (i - rr_next + n) % n + 1;
  } else {
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return actors[std::size_t(a)].last_assigned < actors[std::size_t(b)].last_assigned;
    });
    for (int k = 0; k < n; ++k) rank[std::size_t(order[std::size_t(k)])] = k + 1;
  }
  const int64_t base = now_ns() + kFarAway;
  for (std::size_t i = 0; i < actors.size(); ++i) {
    Actor& a = actors[i];
    if (a.catch_up != 0) continue;  // one is queued; it will see everything when it goes
    if (!a.suspect && transcript.size() <= a.seen) continue;
    bool has_line = false;
    for (const auto& [id, j] : jobs) {
      if (j.actor == static_cast<int>(i) && j.kind == JobKind::line && sched->is_queued(id)) {
        has_line = true;
      }
    }
    if (has_line) continue;
    const Scheduler::Id id = sched->submit(
        {a.lane, static_cast<int>(i), Priority::background, base + rank[i] * kMs});
    JobInfo j;
    j.kind = JobKind::catch_up;
    j.actor = static_cast<int>(i);
    jobs[id] = std::move(j);
    a.catch_up = id;
  }
}

std::vector<detail::ChatMessage> Scene::Impl::messages(const Actor& a, std::size_t from,
                                                       std::size_t upto) const {
  std::vector<detail::ChatMessage> out;
  out.push_back({"system", a.system});
  const int self = a.director ? -2 : static_cast<int>(&a - actors.data());
  for (std::size_t i = from; i < upto && i < transcript.size(); ++i) {
    const LineRecord& e = transcript[i];
    if (e.character == self && !e.raw.empty()) {
      out.push_back({"assistant", e.raw});
    } else if (!e.text.empty()) {
      out.push_back({"user", fmt::format("{}: {}{}", e.speaker, e.text, e.interrupted ? " —" : "")});
    }
  }
  return out;
}

int Scene::Impl::count_tokens(const Actor& a, std::size_t from, std::size_t upto) const {
  const auto msgs = messages(a, from, upto);
  const Lane& l = lanes[std::size_t(a.lane)];
  if (l.text) return l.text->count_tokens(l.text->format(msgs, true));
  // No local vocabulary (a remote server): a conservative estimate, 3 bytes per token.
  int n = 8;
  for (const auto& m : msgs) n += static_cast<int>(m.content.size() / 3) + 6;
  return n;
}

int Scene::Impl::line_tokens(const Actor& a, std::size_t i) {
  Lane& l = lanes[std::size_t(a.lane)];
  const LineRecord& e = transcript[i];
  const bool own = !a.director && e.character == static_cast<int>(&a - actors.data());
  if (l.line_tokens.size() < transcript.size()) l.line_tokens.resize(transcript.size(), {-1, -1});
  int& n = l.line_tokens[i][own ? 1 : 0];
  if (n < 0) {
    const std::string text =
        own ? e.raw : fmt::format("{}: {}{}", e.speaker, e.text, e.interrupted ? " —" : "");
    // The text alone (without its BOS), plus what the chat template puts around a message.
    n = (l.text ? l.text->count_tokens(text) - 1 : static_cast<int>(text.size() / 3)) +
        l.wrap[own ? 1 : 0];
  }
  return n;
}

bool Scene::Impl::fit_window(Actor& a, bool prefill, std::size_t upto, std::string& error) {
  const int num_ctx = *a.options.num_ctx;
  const int predict = *a.options.num_predict;
  int limit = num_ctx - predict - 8;
  // A prefill prepares the actor's next line: leave room for one more line on top, so that the
  // line itself need not move the window (which would prefill everything again).
  if (prefill) limit -= predict + 24;
  if (a.window_start > upto) a.window_start = upto;
  // Sized line by line (each line is tokenized once), so that a line's request does not wait
  // for its whole prompt to be tokenized; counted exactly only near the limit.
  constexpr int kMargin = 24;
  int estimate = a.sys_tokens;
  for (std::size_t i = a.window_start; i < upto; ++i) estimate += line_tokens(a, i);
  if (estimate <= limit - kMargin) return true;
  if (estimate <= limit + kMargin && count_tokens(a, a.window_start, upto) <= limit) return true;
  // Move the window: keep the newest lines that fill half of what the persona leaves, so the
  // window moves again only after several lines.
  const int target = a.sys_tokens + std::max(0, limit - a.sys_tokens) / 2;
  std::size_t start = upto;
  for (int sum = a.sys_tokens; start > a.window_start;) {
    sum += line_tokens(a, start - 1);
    if (sum > target) break;
    --start;
  }
  while (start < upto && count_tokens(a, start, upto) > limit) ++start;
  a.window_start = start;
  const int n = count_tokens(a, start, upto);
  if (n > num_ctx - predict - 8) {
    error = fmt::format("{}'s prompt needs {} tokens even without earlier lines; num_ctx {} "
                        "minus num_predict {} is too small",
                        a.name, n, num_ctx, predict);
    return false;
  }
  return true;
}

bool Scene::Impl::build(JobInfo& j, Request& r, bool& skip, std::string& error) {
  Actor& a = actors[std::size_t(j.actor)];
  const Lane& l = lanes[std::size_t(a.lane)];
  const bool prefill = j.kind == JobKind::catch_up || j.kind == JobKind::warm;
  const std::size_t upto = transcript.size();
  if (j.kind == JobKind::catch_up) {
    a.catch_up = 0;
    const std::size_t before = a.window_start;
    if (!fit_window(a, true, upto, error)) return false;
    if (!a.suspect && upto <= a.seen && before == a.window_start) {
      skip = true;  // nothing new since its last request
      return true;
    }
  } else if (!fit_window(a, prefill, upto, error)) {
    return false;
  }
  j.upto = upto;
  const auto msgs = messages(a, a.window_start, upto);
  r.options = a.options;
  if (cfg.sessions) {
    r.session = a.session;
    r.cache_prompt = true;
  } else {
    r.cache_prompt = false;
  }
  r.agent = a.session;
  if (l.inproc) {
    // The scene writes the prompt text itself: a prefill stops where the next message will
    // start, so that every request of this character extends the text of its last one.
    r.kind = RequestKind::completion;
    r.prompt = l.text->format(msgs, !prefill);
    if (r.prompt.empty()) {
      error = "the model's chat template cannot format this scene's messages";
      return false;
    }
  } else {
    r.kind = RequestKind::chat;
    for (const auto& m : msgs) r.messages.push_back({m.role, m.content, {}, {}, {}});
  }
  if (prefill) r.options.num_predict = l.inproc ? 0 : 1;
  if (j.kind == JobKind::director) {
    std::string names;
    for (const auto& c : cfg.characters) names += (names.empty() ? "" : ",") + json_string(c.name);
    r.format_json = fmt::format(R"({{"type":"string","enum":[{}]}})", names);
  }
  return true;
}

void Scene::Impl::pump() {
  for (;;) {
    std::vector<Launch> launches;
    std::vector<std::pair<std::shared_ptr<Line::State>, std::string>> failed;
    {
      std::lock_guard lock(mu);
      if (closing) return;
      const int64_t now = now_ns();
      const auto ready = sched->take_ready(now);
      if (ready.empty()) {
        if (auto w = sched->next_wake(now)) {
          std::lock_guard sl(svc_mu);
          if (svc_wake == 0 || *w < svc_wake) svc_wake = *w;
          svc_cv.notify_one();
        }
        return;
      }
      for (const auto id : ready) {
        JobInfo& j = jobs[id];
        Launch l;
        l.id = id;
        l.kind = j.kind;
        l.line = j.line;
        bool skip = false;
        std::string error;
        if (!build(j, l.request, skip, error) || skip) {
          sched->finished(id, now);
          if (!skip && j.line) {
            open_lines.erase(j.line);
            failed.emplace_back(j.line, error);
          }
          if (!skip && j.warm) {
            std::lock_guard wl(j.warm->mu);
            j.warm->report.entries[j.warm_slot].error = error;
            if (--j.warm->remaining == 0) j.warm->cv.notify_all();
          }
          jobs.erase(id);
          continue;
        }
        j.t_start = now;
        l.backend = lanes[std::size_t(actors[std::size_t(j.actor)].lane)].backend;
        if (j.kind == JobKind::line) {
          std::lock_guard ll(j.line->mu);
          j.line->rec.t_dispatch_ns = now;
          j.line->rec.scheduled_ns = now - j.line->t_due - j.line->rec.director_ns;
        }
        ++in_flight;
        launches.push_back(std::move(l));
      }
    }
    for (auto& [st, error] : failed) fail_line(st, ErrorKind::bad_request, error);
    for (auto& l : launches) start(l);
  }
}

void Scene::Impl::start(Launch& l) {
  auto self = shared_from_this();
  const Scheduler::Id id = l.id;
  TokenCallback on_token;
  DoneCallback on_done;
  auto st = l.line;
  switch (l.kind) {
    case JobKind::line:
      on_token = [self, id, st](const TokenEvent& ev) { return self->line_token(id, st, ev); };
      on_done = [self, id, st](Completion c) { self->line_done(id, st, std::move(c)); };
      break;
    case JobKind::director:
      on_done = [self, id, st](Completion c) { self->director_done(id, st, std::move(c)); };
      break;
    case JobKind::catch_up:
    case JobKind::warm:
      on_done = [self, id](Completion c) { self->prefill_done(id, std::move(c)); };
      break;
  }
  if (l.kind == JobKind::line && st->opts.on_start) {
    std::string speaker;
    {
      std::lock_guard lock(st->mu);
      speaker = st->rec.speaker;
    }
    InCallback in_cb;
    st->opts.on_start(speaker);
  }
  auto handle = l.backend->start(std::move(l.request), std::move(on_token), std::move(on_done));
  bool cancel_now = false;
  {
    std::lock_guard lock(mu);
    if (auto it = jobs.find(id); it != jobs.end()) it->second.handle = handle;
    cancel_now = closing;
  }
  if (st) {
    std::lock_guard lock(st->mu);
    if (!st->finished) st->handle = handle;
    cancel_now = cancel_now || st->cancel_requested;
  }
  if (cancel_now) handle->cancel();
}

bool Scene::Impl::line_token(Scheduler::Id id, const std::shared_ptr<Line::State>& st,
                             const TokenEvent& ev) {
  if (ev.text.empty() && ev.thinking.empty()) return true;
  if (!st->first_token) {
    st->first_token = true;
    st->t_first = ev.t_ns;
    {
      std::lock_guard lock(mu);
      sched->first_token(id);
    }
    want_pump();  // background work of this lane may go now
  }
  if (st->stopped) return false;
  ThinkSplitter::Parts parts = st->think.push(ev.text);
  std::string thinking(ev.thinking);
  thinking += parts.thinking;
  const std::string spoken = st->name->push(parts.spoken);
  std::vector<std::string> sentences;
  if (!spoken.empty()) sentences = st->split->push(spoken);
  {
    std::lock_guard lock(st->mu);
    st->rec.thinking += thinking;
    st->rec.text += spoken;
    st->rec.sentences += static_cast<int>(sentences.size());
  }
  bool go = true;
  InCallback in_cb;
  if (!thinking.empty() && st->opts.on_thinking) go = st->opts.on_thinking(thinking) && go;
  if (!spoken.empty() && st->opts.on_text && go) go = st->opts.on_text(spoken);
  for (const auto& s : sentences) {
    if (!st->t_first_sentence) st->t_first_sentence = now_ns();
    if (st->opts.on_sentence && go) {
      go = st->opts.on_sentence(Sentence{s, st->sentence_index, now_ns()});
    }
    ++st->sentence_index;
  }
  if (!go) st->stopped = true;
  return go;
}

void Scene::Impl::end_line(const std::shared_ptr<Line::State>& st, LineRecord rec) {
  {
    std::lock_guard lock(st->mu);
    st->rec = rec;
    st->handle.reset();
  }
  if (st->opts.on_done) {
    InCallback in_cb;
    st->opts.on_done(rec);
  }
  {
    std::lock_guard lock(st->mu);
    st->finished = true;
  }
  st->cv.notify_all();
}

void Scene::Impl::fail_line(const std::shared_ptr<Line::State>& st, ErrorKind kind,
                            std::string message) {
  LineRecord rec;
  {
    std::lock_guard lock(st->mu);
    if (st->finished) return;
    rec = st->rec;
  }
  const int64_t now = now_ns();
  rec.completion.error = {kind, std::move(message)};
  rec.completion.finish = kind == ErrorKind::cancelled ? FinishReason::cancelled : FinishReason::error;
  rec.interrupted = kind == ErrorKind::cancelled;
  if (now - st->t_due > rec.budget_ms * kMs) rec.budget_held = false;
  end_line(st, std::move(rec));
}

void Scene::Impl::line_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st,
                            Completion c) {
  const bool cancelled = c.error.kind == ErrorKind::cancelled;
  // The rest of the stream, unless the line was cut off (speech stops with it).
  if (!cancelled && !c.error) {
    auto parts = st->think.finish();
    std::string spoken = st->name->push(parts.spoken);
    spoken += st->name->finish();
    std::vector<std::string> sentences = st->split->push(spoken);
    for (auto& s : st->split->finish()) sentences.push_back(std::move(s));
    {
      std::lock_guard lock(st->mu);
      st->rec.thinking += parts.thinking;
      st->rec.text += spoken;
      st->rec.sentences += static_cast<int>(sentences.size());
    }
    InCallback in_cb;
    bool go = !st->stopped;
    if (!parts.thinking.empty() && st->opts.on_thinking && go) go = st->opts.on_thinking(parts.thinking);
    if (!spoken.empty() && st->opts.on_text && go) go = st->opts.on_text(spoken);
    for (const auto& s : sentences) {
      if (!st->t_first_sentence) st->t_first_sentence = now_ns();
      if (st->opts.on_sentence && go) go = st->opts.on_sentence(Sentence{s, st->sentence_index, now_ns()});
      ++st->sentence_index;
    }
  }
  LineRecord rec;
  {
    std::lock_guard lock(st->mu);
    rec = st->rec;
  }
  const int64_t now = now_ns();
  rec.raw = c.text;
  rec.interrupted = cancelled;
  if (st->first_token) {
    rec.ttft_line_ns = st->t_first - st->t_due;
    rec.budget_held = *rec.ttft_line_ns <= rec.budget_ms * kMs;
  } else if (now - st->t_due > rec.budget_ms * kMs) {
    rec.budget_held = false;
  }
  if (st->t_first_sentence) rec.first_sentence_ns = *st->t_first_sentence - st->t_due;
  rec.hedged = c.figures.attempts > 1;
  rec.completion = std::move(c);
  const Completion& cc = rec.completion;
  bool drop = false;
  std::string drop_session;
  Backend* drop_backend = nullptr;
  {
    std::lock_guard lock(mu);
    std::size_t upto = 0;
    if (auto it = jobs.find(id); it != jobs.end()) upto = it->second.upto;
    sched->finished(id, now);
    jobs.erase(id);
    open_lines.erase(st);
    Actor& a = actors[std::size_t(rec.character)];
    const bool has_text = !rec.raw.empty() || !rec.text.empty();
    if (has_text && (cc.ok() || cancelled)) {
      rec.index = static_cast<int>(transcript.size());
      transcript.push_back(rec);
      // Its cache holds its prompt and this line; lines said meanwhile are still new to it.
      a.seen = upto == transcript.size() - 1 ? transcript.size() : upto;
      a.suspect = false;
    } else if (cfg.sessions && lanes[std::size_t(a.lane)].inproc && !st->first_token) {
      // Cut off while reading its prompt: the engine's session may hold part of that prompt
      // under the whole prompt's text. Start that session afresh.
      drop = true;
      drop_session = a.session;
      drop_backend = lanes[std::size_t(a.lane)].backend;
      a.seen = 0;
      a.suspect = true;
    }
    schedule_catch_ups();
    --in_flight;
    if (drop && drop_backend != nullptr) drop_backend->drop_session(drop_session);
  }
  idle_cv.notify_all();
  end_line(st, std::move(rec));
  want_pump();
}

void Scene::Impl::director_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st,
                                Completion c) {
  const int64_t now = now_ns();
  bool cancelled = false;
  {
    std::lock_guard lock(st->mu);
    st->handle.reset();
    cancelled = st->cancel_requested;
    st->rec.director_ns = now - st->t_due;
  }
  bool ended = false;
  {
    std::lock_guard lock(mu);
    sched->finished(id, now);
    jobs.erase(id);
    if (!cancelled && !closing) {
      int who = c.ok() ? find_character(strip(c.text)) : -1;
      if (who < 0 && c.ok()) {  // not a clean name: the first name it mentions
        std::size_t best = std::string::npos;
        for (std::size_t i = 0; i < cfg.characters.size(); ++i) {
          const auto at = find_word(c.text, cfg.characters[i].name);
          if (at < best) {
            best = at;
            who = static_cast<int>(i);
          }
        }
      }
      if (who < 0) who = pick_speaker(TurnPolicy::reply_to_last);  // it named nobody
      submit_line(st, who);
    } else {
      open_lines.erase(st);
      ended = true;
    }
    --in_flight;
  }
  idle_cv.notify_all();
  if (ended) {
    fail_line(st, ErrorKind::cancelled, "cancelled while the director chose the speaker");
    return;
  }
  pump();  // the line is live: send it from here, without a thread hop
}

void Scene::Impl::prefill_done(Scheduler::Id id, Completion c) {
  std::shared_ptr<WarmTracker> warm;
  std::size_t slot = 0;
  std::string drop_session;
  Backend* drop_backend = nullptr;
  {
    std::lock_guard lock(mu);
    auto it = jobs.find(id);
    sched->finished(id, now_ns());
    if (it != jobs.end()) {
      JobInfo& j = it->second;
      Actor& a = actors[std::size_t(j.actor)];
      if (c.ok()) {
        a.seen = std::max(a.seen, j.upto);
        a.suspect = false;
      } else if (cfg.sessions && lanes[std::size_t(a.lane)].inproc) {
        drop_session = a.session;
        drop_backend = lanes[std::size_t(a.lane)].backend;
        a.seen = 0;
        a.suspect = !closing;
      }
      warm = j.warm;
      slot = j.warm_slot;
      jobs.erase(it);
    }
    if (drop_backend != nullptr) drop_backend->drop_session(drop_session);
    --in_flight;
  }
  idle_cv.notify_all();
  if (warm) {
    std::lock_guard wl(warm->mu);
    auto& e = warm->report.entries[slot];
    e.ns = c.figures.e2e_ns.value_or(0);
    e.tokens = c.figures.tokens_in.value_or(0) - c.figures.prompt_tokens_cached.value_or(0);
    if (!c.ok()) e.error = c.error.message;
    if (--warm->remaining == 0) warm->cv.notify_all();
  }
  want_pump();
}

// ------------------------------------------------------------------------------ Scene

Scene::Scene(SceneConfig config, SceneOptions options) : impl_(std::make_shared<Impl>()) {
  impl_->cfg = std::move(config);
  impl_->opts = std::move(options);
  try {
    impl_->setup();
  } catch (...) {
    impl_->shutdown();
    throw;
  }
}

Scene::~Scene() { impl_->shutdown(); }

const SceneConfig& Scene::config() const { return impl_->cfg; }

WarmUpReport Scene::warm_up() {
  auto tracker = std::make_shared<WarmTracker>();
  const int64_t t0 = now_ns();
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closing || !impl_->cfg.sessions) return {};
    for (std::size_t i = 0; i < impl_->actors.size(); ++i) {
      Actor& a = impl_->actors[i];
      if (a.catch_up != 0 && impl_->sched->remove(a.catch_up)) impl_->jobs.erase(a.catch_up);
      a.catch_up = 0;
      tracker->report.entries.push_back({a.name, 0, 0, {}});
      const Scheduler::Id id =
          impl_->sched->submit({a.lane, static_cast<int>(i), Priority::live, t0});
      JobInfo j;
      j.kind = JobKind::warm;
      j.actor = static_cast<int>(i);
      j.warm = tracker;
      j.warm_slot = i;
      impl_->jobs[id] = std::move(j);
      ++tracker->remaining;
    }
  }
  impl_->pump();
  std::unique_lock lock(tracker->mu);
  tracker->cv.wait(lock, [&] { return tracker->remaining == 0; });
  tracker->report.wall_ns = now_ns() - t0;
  return tracker->report;
}

void Scene::say(std::string_view text, std::string speaker, bool interrupt_live) {
  if (interrupt_live) interrupt();
  {
    std::lock_guard lock(impl_->mu);
    LineRecord r;
    r.index = static_cast<int>(impl_->transcript.size());
    r.speaker = speaker.empty() ? impl_->cfg.player : speaker;
    r.character = impl_->find_character(r.speaker);
    if (r.character >= 0) r.speaker = impl_->cfg.characters[std::size_t(r.character)].name;
    r.text = std::string(text);
    r.raw = r.text;
    r.t_due_ns = now_ns();
    impl_->transcript.push_back(std::move(r));
    impl_->schedule_catch_ups();
  }
  impl_->want_pump();
}

int Scene::interrupt() {
  std::vector<std::shared_ptr<Line::State>> live;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& st : impl_->open_lines) {
      if (st->opts.priority == Priority::live) live.push_back(st);
    }
  }
  for (auto& st : live) Line(st).cancel();
  // What the cut-off lines said goes into the transcript before whatever comes next.
  if (t_in_callback == 0) {
    for (auto& st : live) Line(st).wait_for(2'000);
  }
  return static_cast<int>(live.size());
}

std::shared_ptr<Line> Scene::start_line(LineOptions options) {
  auto st = std::make_shared<Line::State>();
  st->scene = impl_;
  st->t_due = now_ns();
  st->opts = std::move(options);
  st->rec.t_due_ns = st->t_due;
  st->rec.budget_ms = st->opts.budget_ms >= 0 ? st->opts.budget_ms : impl_->cfg.budget_ms;
  st->deadline = st->t_due + st->rec.budget_ms * kMs;
  SplitterOptions so;
  so.mode = impl_->cfg.split;
  st->split = std::make_unique<SentenceSplitter>(so);
  auto line = std::make_shared<Line>(st);
  std::string error;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closing) {
      error = "the scene is closed";
    } else {
      int who = -1;
      if (!st->opts.speaker.empty()) {
        who = impl_->find_character(st->opts.speaker);
        if (who < 0) {
          std::vector<std::string> names;
          for (const auto& c : impl_->cfg.characters) names.push_back(c.name);
          error = fmt::format("no character is named '{}' (characters: {})", st->opts.speaker,
                              fmt::join(names, ", "));
        }
      } else {
        who = impl_->pick_speaker(impl_->cfg.turns);
      }
      if (error.empty()) {
        impl_->open_lines.insert(st);
        if (who >= 0) {
          impl_->submit_line(st, who);
        } else {  // the director decides first
          const Scheduler::Id id = impl_->sched->submit(
              {impl_->actors[std::size_t(impl_->director)].lane, impl_->director,
               st->opts.priority, st->deadline});
          JobInfo j;
          j.kind = JobKind::director;
          j.actor = impl_->director;
          j.line = st;
          impl_->jobs[id] = std::move(j);
          st->job = id;
        }
      }
    }
  }
  if (!error.empty()) {
    impl_->fail_line(st, ErrorKind::bad_request, error);
    return line;
  }
  impl_->pump();
  return line;
}

std::vector<LineRecord> Scene::transcript() const {
  std::lock_guard lock(impl_->mu);
  return impl_->transcript;
}

std::string Scene::next_speaker() const {
  std::lock_guard lock(impl_->mu);
  if (impl_->cfg.turns == TurnPolicy::director) return {};
  const int who = impl_->pick_speaker(impl_->cfg.turns);
  return who < 0 ? std::string() : impl_->cfg.characters[std::size_t(who)].name;
}

}  // namespace chimera::banter
