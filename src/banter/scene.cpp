// The banter scene at run time (see scene.hpp): characters as sessions, turns, warm-up,
// background catch-up, deadline-aware scheduling, streaming for speech, interruption.
#include "banter/actor.hpp"
#include "banter/model_text.hpp"
#include "banter/placement.hpp"
#include "banter/prompt_window.hpp"
#include "banter/scene_scheduler.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/banter/scene.hpp>
#include <chimera/banter/speech.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
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

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

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
  return s_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return s_->finished; });
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

using detail::Actor;
using detail::ActorPlacement;
using detail::JobInfo;
using detail::JobKind;
using detail::Lane;
using detail::PromptWindow;
using detail::SceneScheduler;
using detail::WarmTracker;

struct Launch {
  Scheduler::Id id = 0;
  JobKind kind = JobKind::line;
  Backend* backend = nullptr;
  Request request;
  std::shared_ptr<Line::State> line;
};

}  // namespace

// The scene's state, in three parts with one owner each: where the actors run (placement), what
// their prompts hold (window), and the work queued and running for them (scheduler).
struct Scene::Impl : std::enable_shared_from_this<Impl> {
  SceneConfig cfg;
  SceneOptions opts;
  uint64_t uid = 0;
  ActorPlacement placement{cfg, opts};
  std::vector<Actor> actors;  // the characters, then the director (turns = director)
  int director = -1;

  mutable std::mutex mu;
  std::condition_variable idle_cv;
  std::vector<LineRecord> transcript;
  PromptWindow window{actors, placement, transcript};
  SceneScheduler scheduler;
  std::set<std::shared_ptr<Line::State>> open_lines;
  int in_flight = 0;
  bool closing = false;
  int rr_next = 0;
  int64_t assign_seq = 0;

  void setup();
  void shutdown();
  void want_pump() { scheduler.poke(); }
  void pump();
  void start(Launch& l);

  // Setup.
  Actor make_character(const CharacterConfig& c);
  Actor make_director();
  void check_prompts_fit();
  void add_opening_line();

  // Scene mutex held.
  int pick_speaker(TurnPolicy policy);
  int find_character(std::string_view name) const;
  void submit_line(const std::shared_ptr<Line::State>& st, int actor);
  void schedule_catch_ups();
  bool build(JobInfo& j, Request& r, bool& skip, std::string& error);

  // Callbacks.
  bool line_token(Scheduler::Id id, const std::shared_ptr<Line::State>& st, const TokenEvent& ev);
  void line_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st, Completion c);
  void director_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st, const Completion& c);
  void prefill_done(Scheduler::Id id, const Completion& c);
  void end_line(const std::shared_ptr<Line::State>& st, const LineRecord& rec);
  void fail_line(const std::shared_ptr<Line::State>& st, ErrorKind kind, std::string message);
};

void cancel_queued_line(Scene::Impl& s, const std::shared_ptr<Line::State>& st) {
  bool removed = false;
  {
    std::lock_guard lock(s.mu);
    if (st->job != 0 && s.scheduler.cancel(st->job)) {
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
  // Each actor is placed on a lane (a model file or a pool) as it is made.
  for (const auto& c : cfg.characters) actors.push_back(make_character(c));
  if (cfg.turns == TurnPolicy::director) {
    actors.push_back(make_director());
    director = static_cast<int>(actors.size()) - 1;
  }
  placement.open_backends(rt);
  scheduler.open(placement.lane_limits(), opts.background_grace_ms * kMs);
  check_prompts_fit();
  add_opening_line();
  scheduler.start_service([this] { pump(); });
}

Actor Scene::Impl::make_character(const CharacterConfig& c) {
  Actor a;
  a.name = c.name;
  a.options = c.options;
  if (!a.options.num_ctx) a.options.num_ctx = kDefaultNumCtx;
  if (!a.options.num_predict) a.options.num_predict = kDefaultNumPredict;
  a.lane = placement.place(c.placement, *a.options.num_ctx, "character '" + c.name + "'");
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
  return a;
}

Actor Scene::Impl::make_director() {
  Actor d;
  d.name = "director";
  d.director = true;
  d.options = cfg.director.options;
  if (!d.options.num_ctx) d.options.num_ctx = kDefaultNumCtx;
  if (!d.options.num_predict) d.options.num_predict = 16;
  if (!d.options.temperature) d.options.temperature = 0.0;
  d.lane = placement.place(cfg.director.placement, *d.options.num_ctx, "the director");
  d.session = fmt::format("banter-{}-director", uid);
  std::string cast;
  for (const auto& c : cfg.characters) {
    cast += fmt::format("\n- {}: {}", c.name, c.persona.empty() ? "a character" : c.persona);
  }
  d.system = fmt::format(
      "{}\nThe scene: {}. {}\nThe characters:{}\nAfter each line, answer "
      "with the name of the character who speaks next.",
      cfg.director.prompt, cfg.title, cfg.setting, cast);
  return d;
}

// Every persona must leave room for at least a line.
void Scene::Impl::check_prompts_fit() {
  for (auto& a : actors) {
    const int need = window.count_tokens(a, 0, 0);
    a.sys_tokens = need;
    const int room = *a.options.num_ctx - *a.options.num_predict - 8;
    if (need > room) {
      throw std::invalid_argument(fmt::format(
          "{}'s prompt (persona, style, scene) takes {} tokens, but num_ctx {} minus num_predict "
          "{} leaves {}: shorten it or raise num_ctx",
          a.name, need, *a.options.num_ctx, *a.options.num_predict, room));
    }
  }
}

void Scene::Impl::add_opening_line() {
  if (cfg.opening.empty()) return;
  LineRecord r;
  r.index = 0;
  r.speaker = cfg.narrator;
  r.text = cfg.opening;
  r.raw = cfg.opening;
  r.t_due_ns = now_ns();
  transcript.push_back(std::move(r));
}

void Scene::Impl::shutdown() {
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::vector<std::shared_ptr<Line::State>> queued;
  {
    std::lock_guard lock(mu);
    closing = true;
    for (auto& j : scheduler.cancel_all(handles)) {
      if (j.line) queued.push_back(j.line);
      if (j.warm) {
        std::lock_guard wl(j.warm->mu);
        j.warm->report.entries[j.warm_slot].error = "the scene closed";
        if (--j.warm->remaining == 0) j.warm->cv.notify_all();
      }
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
  scheduler.stop_service();
  placement.close();  // here, on the owner's thread
}

int Scene::Impl::find_character(std::string_view name) const {
  for (std::size_t i = 0; i < cfg.characters.size(); ++i) {
    if (cfg.characters[i].name == name) return static_cast<int>(i);
  }
  for (std::size_t i = 0; i < cfg.characters.size(); ++i) {
    const auto& n = cfg.characters[i].name;
    if (n.size() == name.size() && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
          return lower(a) == lower(b);
        })) {
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
  if (a.catch_up != 0) scheduler.cancel(a.catch_up);  // the line covers it
  a.catch_up = 0;
  JobInfo j;
  j.kind = JobKind::line;
  j.actor = actor;
  j.line = st;
  const Scheduler::Id id =
      scheduler.submit({a.lane, actor, st->opts.priority, st->deadline}, std::move(j));
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
    if (scheduler.has_queued_line(static_cast<int>(i))) continue;
    JobInfo j;
    j.kind = JobKind::catch_up;
    j.actor = static_cast<int>(i);
    a.catch_up = scheduler.submit(
        {a.lane, static_cast<int>(i), Priority::background, base + rank[i] * kMs}, std::move(j));
  }
}

bool Scene::Impl::build(JobInfo& j, Request& r, bool& skip, std::string& error) {
  Actor& a = actors[std::size_t(j.actor)];
  const Lane& l = placement.lane(a.lane);
  const bool prefill = j.kind == JobKind::catch_up || j.kind == JobKind::warm;
  const std::size_t upto = transcript.size();
  if (j.kind == JobKind::catch_up) {
    a.catch_up = 0;
    const std::size_t before = a.window_start;
    if (!window.fit(a, true, upto, error)) return false;
    if (!a.suspect && upto <= a.seen && before == a.window_start) {
      skip = true;  // nothing new since its last request
      return true;
    }
  } else if (!window.fit(a, prefill, upto, error)) {
    return false;
  }
  j.upto = upto;
  const auto msgs = window.messages(a, a.window_start, upto);
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
    boost::json::array names;
    for (const auto& c : cfg.characters) names.emplace_back(c.name);
    r.format_json =
        boost::json::serialize(boost::json::object{{"type", "string"}, {"enum", std::move(names)}});
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
      const auto ready = scheduler.take_ready(now);
      if (ready.empty()) {
        if (auto w = scheduler.next_wake(now)) scheduler.wake_at(*w);
        return;
      }
      for (const auto id : ready) {
        JobInfo& j = scheduler.job(id);
        Launch l;
        l.id = id;
        l.kind = j.kind;
        l.line = j.line;
        bool skip = false;
        std::string error;
        if (!build(j, l.request, skip, error) || skip) {
          if (!skip && j.line) {
            open_lines.erase(j.line);
            failed.emplace_back(j.line, error);
          }
          if (!skip && j.warm) {
            std::lock_guard wl(j.warm->mu);
            j.warm->report.entries[j.warm_slot].error = error;
            if (--j.warm->remaining == 0) j.warm->cv.notify_all();
          }
          scheduler.finish(id, now);
          continue;
        }
        j.t_start = now;
        l.backend = placement.lane(actors[std::size_t(j.actor)].lane).backend;
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
      on_done = [self, id, st](const Completion& c) { self->director_done(id, st, c); };
      break;
    case JobKind::catch_up:
    case JobKind::warm:
      on_done = [self, id](const Completion& c) { self->prefill_done(id, c); };
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
    if (JobInfo* j = scheduler.find(id)) j->handle = handle;
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
      scheduler.first_token(id);
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

void Scene::Impl::end_line(const std::shared_ptr<Line::State>& st, const LineRecord& rec) {
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
  rec.completion.finish =
      kind == ErrorKind::cancelled ? FinishReason::cancelled : FinishReason::error;
  rec.interrupted = kind == ErrorKind::cancelled;
  if (now - st->t_due > rec.budget_ms * kMs) rec.budget_held = false;
  end_line(st, rec);
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
    if (!parts.thinking.empty() && st->opts.on_thinking && go)
      go = st->opts.on_thinking(parts.thinking);
    if (!spoken.empty() && st->opts.on_text && go) go = st->opts.on_text(spoken);
    for (const auto& s : sentences) {
      if (!st->t_first_sentence) st->t_first_sentence = now_ns();
      if (st->opts.on_sentence && go)
        go = st->opts.on_sentence(Sentence{s, st->sentence_index, now_ns()});
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
    if (const JobInfo* j = scheduler.find(id)) upto = j->upto;
    scheduler.finish(id, now);
    open_lines.erase(st);
    Actor& a = actors[std::size_t(rec.character)];
    const bool has_text = !rec.raw.empty() || !rec.text.empty();
    if (has_text && (cc.ok() || cancelled)) {
      rec.index = static_cast<int>(transcript.size());
      transcript.push_back(rec);
      // Its cache holds its prompt and this line; lines said meanwhile are still new to it.
      a.seen = upto == transcript.size() - 1 ? transcript.size() : upto;
      a.suspect = false;
    } else if (cfg.sessions && placement.lane(a.lane).inproc && !st->first_token) {
      // Cut off while reading its prompt: the engine's session may hold part of that prompt
      // under the whole prompt's text. Start that session afresh.
      drop = true;
      drop_session = a.session;
      drop_backend = placement.lane(a.lane).backend;
      a.seen = 0;
      a.suspect = true;
    }
    schedule_catch_ups();
    --in_flight;
    if (drop && drop_backend != nullptr) drop_backend->drop_session(drop_session);
  }
  idle_cv.notify_all();
  end_line(st, rec);
  want_pump();
}

void Scene::Impl::director_done(Scheduler::Id id, const std::shared_ptr<Line::State>& st,
                                const Completion& c) {
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
    scheduler.finish(id, now);
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

void Scene::Impl::prefill_done(Scheduler::Id id, const Completion& c) {
  std::shared_ptr<WarmTracker> warm;
  std::size_t slot = 0;
  std::string drop_session;
  Backend* drop_backend = nullptr;
  {
    std::lock_guard lock(mu);
    if (const JobInfo* j = scheduler.find(id)) {
      Actor& a = actors[std::size_t(j->actor)];
      if (c.ok()) {
        a.seen = std::max(a.seen, j->upto);
        a.suspect = false;
      } else if (cfg.sessions && placement.lane(a.lane).inproc) {
        drop_session = a.session;
        drop_backend = placement.lane(a.lane).backend;
        a.seen = 0;
        a.suspect = !closing;
      }
      warm = j->warm;
      slot = j->warm_slot;
    }
    scheduler.finish(id, now_ns());
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

Scene::~Scene() {
  impl_->shutdown();
}

const SceneConfig& Scene::config() const {
  return impl_->cfg;
}

WarmUpReport Scene::warm_up() {
  auto tracker = std::make_shared<WarmTracker>();
  const int64_t t0 = now_ns();
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->closing || !impl_->cfg.sessions) return {};
    for (std::size_t i = 0; i < impl_->actors.size(); ++i) {
      Actor& a = impl_->actors[i];
      if (a.catch_up != 0) impl_->scheduler.cancel(a.catch_up);
      a.catch_up = 0;
      tracker->report.entries.push_back({a.name, 0, 0, {}});
      JobInfo j;
      j.kind = JobKind::warm;
      j.actor = static_cast<int>(i);
      j.warm = tracker;
      j.warm_slot = i;
      impl_->scheduler.submit({a.lane, static_cast<int>(i), Priority::live, t0}, std::move(j));
      ++tracker->remaining;
    }
  }
  impl_->pump();
  std::unique_lock lock(tracker->mu);
  tracker->cv.wait(lock, [&] { return tracker->remaining == 0; });
  tracker->report.wall_ns = now_ns() - t0;
  return tracker->report;
}

void Scene::say(std::string_view text, const std::string& speaker, bool interrupt_live) {
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
          JobInfo j;
          j.kind = JobKind::director;
          j.actor = impl_->director;
          j.line = st;
          st->job = impl_->scheduler.submit({impl_->actors[std::size_t(impl_->director)].lane,
                                             impl_->director, st->opts.priority, st->deadline},
                                            std::move(j));
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
