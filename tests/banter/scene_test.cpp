// Scenes against real inference: the tiny model in-process, and two real llama-servers.
#include "support/test_support.hpp"

#include <chimera/banter/scene.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>

namespace {

using namespace chimera;
using namespace chimera::banter;

constexpr int64_t kMs = 1'000'000;

// A scene of `n` characters on the tiny model. Budgets are generous: these tests check what
// the scene does, on a shared machine; the benchmark measures the 200 ms budget.
SceneConfig tiny_scene(int n, TurnPolicy turns = TurnPolicy::round_robin, int num_predict = 16,
                       int num_ctx = 256) {
  static const char* names[] = {"Brann", "Ilsa", "Orrin", "Vey"};
  SceneConfig c;
  c.title = "Gate duty";
  c.setting = "A city gate at dusk.";
  c.turns = turns;
  c.budget_ms = 5000;
  c.opening = "The gate bell rings.";
  for (int i = 0; i < n; ++i) {
    CharacterConfig ch;
    ch.name = names[i];
    ch.persona = fmt::format("Character number {}, with a short persona.", i);
    ch.placement.model = test::tiny_model().string();
    ch.options.num_ctx = num_ctx;
    ch.options.num_predict = num_predict;
    ch.options.temperature = 0.8;
    ch.options.seed = 11 + i;
    c.characters.push_back(ch);
  }
  return c;
}

SceneOptions one_thread() {
  SceneOptions o;
  o.threads = 1;
  return o;
}

int64_t new_tokens(const LineRecord& r) {
  return r.completion.figures.tokens_in.value_or(0) -
         r.completion.figures.prompt_tokens_cached.value_or(0);
}

std::string no_space(std::string s) {
  std::erase_if(s, [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; });
  return s;
}

TEST(Scene, WarmUpThenEveryLinePrefillsOnlyWhatIsNew) {
  Scene scene(tiny_scene(3), one_thread());
  const WarmUpReport w = scene.warm_up();
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w.entries.size(), 3u);
  for (const auto& e : w.entries) EXPECT_GT(e.tokens, 20) << e.who;

  const char* order[] = {"Brann", "Ilsa", "Orrin", "Brann", "Ilsa", "Orrin"};
  for (int i = 0; i < 6; ++i) {
    const LineRecord r = scene.line();
    ASSERT_TRUE(r.ok()) << r.completion.error.message;
    EXPECT_EQ(r.speaker, order[i]);
    EXPECT_EQ(r.index, i + 1);  // after the opening
    ASSERT_TRUE(r.budget_held.has_value());
    EXPECT_TRUE(*r.budget_held);
    ASSERT_TRUE(r.ttft_line_ns.has_value());
    EXPECT_GE(*r.ttft_line_ns, *r.completion.figures.ttft_client_ns);
    EXPECT_GT(r.completion.figures.prompt_tokens_cached.value_or(0), 20);
    // What is new: the lines since this character's last request (at most the previous line,
    // thanks to the background catch-up) and the turn's opening tokens.
    EXPECT_LE(new_tokens(r), 2 * (16 + 24)) << "line " << i;
    EXPECT_FALSE(r.raw.empty());
  }
  EXPECT_EQ(scene.transcript().size(), 7u);
}

TEST(Scene, WithoutSessionsEveryLineStartsCold) {
  SceneConfig c = tiny_scene(2);
  c.sessions = false;
  Scene scene(c, one_thread());
  EXPECT_TRUE(scene.warm_up().entries.empty());  // nothing to keep warm
  for (int i = 0; i < 3; ++i) {
    const LineRecord r = scene.line();
    ASSERT_TRUE(r.ok()) << r.completion.error.message;
    EXPECT_EQ(r.completion.figures.prompt_tokens_cached.value_or(-1), 0);
  }
}

TEST(Scene, TextAndSentencesArriveAsTheLineStreams) {
  Scene scene(tiny_scene(2, TurnPolicy::round_robin, 48, 384), one_thread());
  scene.warm_up();
  for (int i = 0; i < 3; ++i) {
    std::string text, sentences;
    std::string started;
    int n = 0;
    LineOptions o;
    o.on_start = [&](std::string_view s) { started = s; };
    o.on_text = [&](std::string_view t) {
      EXPECT_FALSE(started.empty());  // on_start comes first
      text += t;
      return true;
    };
    o.on_sentence = [&](const Sentence& s) {
      EXPECT_EQ(s.index, n++);
      EXPECT_FALSE(s.text.empty());
      sentences += s.text;
      return true;
    };
    const LineRecord r = scene.line(o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(started, r.speaker);
    EXPECT_EQ(text, r.text);
    EXPECT_EQ(no_space(sentences), no_space(r.text));
    EXPECT_EQ(n, r.sentences);
    if (r.sentences > 0) EXPECT_TRUE(r.first_sentence_ns.has_value());
  }
}

TEST(Scene, InterruptionCutsALineAtOnceAndTheNextOneStarts) {
  Scene scene(tiny_scene(2, TurnPolicy::round_robin, 400, 512), one_thread());
  scene.warm_up();
  std::promise<void> streaming;
  std::atomic<bool> signalled{false};
  LineOptions o;
  o.on_text = [&](std::string_view) {
    if (!signalled.exchange(true)) streaming.set_value();
    return true;
  };
  auto line = scene.start_line(o);
  streaming.get_future().wait();
  const int64_t t0 = now_ns();
  scene.say("Quiet, both of you!");  // the player speaks over the line
  const int64_t took = now_ns() - t0;
  ASSERT_TRUE(line->done());  // say() waited for the cut-off line to end
  const LineRecord cut = line->wait();
  EXPECT_TRUE(cut.interrupted);
  EXPECT_LT(cut.completion.figures.tokens_out.value_or(400), 400);
  EXPECT_LT(took, 500 * kMs);
  const auto t = scene.transcript();
  ASSERT_EQ(t.size(), 3u);  // opening, the cut-off line, the player
  EXPECT_TRUE(t[1].interrupted);
  EXPECT_EQ(t[2].speaker, "Player");

  const LineRecord next = scene.line();
  ASSERT_TRUE(next.ok()) << next.completion.error.message;
  EXPECT_TRUE(next.budget_held.value_or(false));
  EXPECT_EQ(next.speaker, "Ilsa");
}

TEST(Scene, CancelBeforeTheFirstTokenLeavesTheSessionUsable) {
  Scene scene(tiny_scene(2), one_thread());
  scene.warm_up();
  for (int i = 0; i < 3; ++i) {
    LineOptions o;
    o.speaker = "Brann";
    auto line = scene.start_line(o);
    line->cancel();
    const LineRecord r = line->wait();
    EXPECT_TRUE(r.interrupted);
    EXPECT_TRUE(r.completion.error.kind == ErrorKind::cancelled);
  }
  LineOptions o;
  o.speaker = "Brann";
  const LineRecord r = scene.line(o);
  ASSERT_TRUE(r.ok()) << r.completion.error.message;
  EXPECT_FALSE(r.raw.empty());
  // Only lines that said something are in the transcript.
  const auto t = scene.transcript();
  for (const auto& e : t) EXPECT_FALSE(e.text.empty() && e.raw.empty());
  // The next line of a character whose cache was rebuilt still reuses it.
  o.speaker = "Brann";
  const LineRecord again = scene.line(o);
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again.completion.figures.prompt_tokens_cached.value_or(0), 0);
}

TEST(Scene, SoonestDeadlineGoesFirstAndBackgroundLast) {
  SceneConfig c = tiny_scene(3, TurnPolicy::round_robin, 32, 256);
  c.max_concurrent = 1;
  Scene scene(c, one_thread());
  scene.warm_up();
  LineOptions first;
  first.speaker = "Brann";
  auto l0 = scene.start_line(first);
  LineOptions bg;
  bg.speaker = "Ilsa";
  bg.priority = Priority::background;
  bg.budget_ms = 10;  // the soonest deadline of all, but background
  auto lbg = scene.start_line(bg);
  LineOptions late;
  late.speaker = "Orrin";
  late.budget_ms = 5000;
  auto llate = scene.start_line(late);
  LineOptions soon;
  soon.speaker = "Brann";
  soon.budget_ms = 1000;
  auto lsoon = scene.start_line(soon);
  const auto r0 = l0->wait(), rbg = lbg->wait(), rlate = llate->wait(), rsoon = lsoon->wait();
  for (const auto* r : {&r0, &rbg, &rlate, &rsoon})
    ASSERT_TRUE(r->ok()) << r->completion.error.message;
  EXPECT_LT(r0.t_dispatch_ns, rsoon.t_dispatch_ns);
  EXPECT_LT(rsoon.t_dispatch_ns, rlate.t_dispatch_ns);
  EXPECT_LT(rlate.t_dispatch_ns, rbg.t_dispatch_ns);
  EXPECT_GT(rlate.scheduled_ns, 0);
}

TEST(Scene, ReplyToLastAnswersWhoeverIsNamed) {
  Scene scene(tiny_scene(3, TurnPolicy::reply_to_last), one_thread());
  scene.say("Hey orrin, what is in the cart?");
  EXPECT_EQ(scene.next_speaker(), "Orrin");
  const LineRecord r = scene.line();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.speaker, "Orrin");
  // Named nobody (random text): the one silent longest, never the last speaker.
  const LineRecord r2 = scene.line();
  EXPECT_NE(r2.speaker, "Orrin");
}

TEST(Scene, TheDirectorPicksACharacter) {
  Scene scene(tiny_scene(3, TurnPolicy::director), one_thread());
  ASSERT_TRUE(scene.warm_up().ok());
  for (int i = 0; i < 3; ++i) {
    const LineRecord r = scene.line();
    ASSERT_TRUE(r.ok()) << r.completion.error.message;
    EXPECT_GE(r.character, 0);
    EXPECT_GT(r.director_ns, 0);
    EXPECT_GE(*r.ttft_line_ns, r.director_ns);
  }
}

TEST(Scene, ALongSceneMovesEachWindowAndStaysInItsContext) {
  Scene scene(tiny_scene(2, TurnPolicy::round_robin, 24, 192), one_thread());
  scene.warm_up();
  for (int i = 0; i < 14; ++i) {
    const LineRecord r = scene.line();
    ASSERT_TRUE(r.ok()) << "line " << i << ": " << r.completion.error.message;
    EXPECT_LE(
        r.completion.figures.tokens_in.value_or(0) + r.completion.figures.tokens_out.value_or(0),
        192);
    // Never cut short by the context: a line ends at num_predict or at its end of text.
    EXPECT_TRUE(r.completion.figures.tokens_out.value_or(0) == 24 ||
                r.completion.finish == FinishReason::stop)
        << "line " << i << ": " << r.completion.figures.tokens_out.value_or(0) << " tokens";
  }
}

TEST(Scene, MistakesAreReported) {
  SceneConfig c = tiny_scene(1);
  c.characters[0].placement = {"", "nowhere"};
  EXPECT_THROW(Scene(c, one_thread()), std::invalid_argument);
  SceneConfig big = tiny_scene(1);
  big.characters[0].persona = std::string(3000, 'x');
  try {
    Scene s(big, one_thread());
    FAIL() << "a persona longer than num_ctx was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("num_ctx"), std::string::npos) << e.what();
  }
  Scene scene(tiny_scene(1), one_thread());
  LineOptions o;
  o.speaker = "Nobody";
  const LineRecord r = scene.line(o);
  EXPECT_EQ(r.completion.error.kind, ErrorKind::bad_request);
  EXPECT_NE(r.completion.error.message.find("Nobody"), std::string::npos);
}

// A character alone on a server speaks line after line: its own lines are assistant messages,
// and a list that ends with two of them is refused by llama-server, so each request must end
// with something that asks for the next line.
TEST(Scene, CharacterAloneOnAServerSpeaksLineAfterLine) {
  const auto model = test::tiny_model();
  test::LlamaServer server(model, {.parallel = 1, .ctx = 1024, .extra = {"-t", "1"}});
  ASSERT_TRUE(server.ok()) << server.error();
  SceneConfig c = tiny_scene(1, TurnPolicy::round_robin, 16, 512);
  pool::PoolConfig pc;
  pc.name = "server";
  pool::PoolEndpoint e;
  e.config.url = server.url();
  e.config.kind = BackendKind::openai;
  pc.endpoints.push_back(e);
  c.pools.push_back(pc);
  c.characters[0].placement = {"", "server"};
  Scene scene(c);
  for (int i = 0; i < 4; ++i) {
    const LineRecord r = scene.line();
    ASSERT_TRUE(r.ok()) << "line " << i << ": " << r.completion.error.message << "\n"
                        << server.log_tail();
    EXPECT_EQ(r.speaker, "Brann");
    EXPECT_GT(r.completion.figures.tokens_out.value_or(0), 0) << "line " << i;
  }
}

TEST(Scene, TwoLlamaServersWithSessionAffinity) {
  const auto model = test::tiny_model();
  // One thread each: two servers with two spinning threads each would fight over two cores.
  test::LlamaServer a(model, {.parallel = 2, .ctx = 1024, .extra = {"-t", "1"}});
  test::LlamaServer b(model, {.parallel = 2, .ctx = 1024, .extra = {"-t", "1"}});
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  SceneConfig c = tiny_scene(4, TurnPolicy::round_robin, 32, 384);
  pool::PoolConfig pc;
  pc.name = "servers";
  pc.routing = pool::Routing::session_affinity;
  for (const auto* s : {&a, &b}) {
    pool::PoolEndpoint e;
    e.config.url = s->url();
    e.config.kind = BackendKind::openai;
    e.max_concurrency = 2;
    pc.endpoints.push_back(e);
  }
  c.pools.push_back(pc);
  for (auto& ch : c.characters) ch.placement = {"", "servers"};
  Scene scene(c);
  const auto w = scene.warm_up();
  ASSERT_TRUE(w.ok()) << (w.entries.empty() ? "" : w.entries.front().error);
  std::map<std::string, std::string> endpoint_of;
  for (int i = 0; i < 8; ++i) {
    const LineRecord r = scene.line();
    ASSERT_TRUE(r.ok()) << r.completion.error.message;
    EXPECT_TRUE(r.budget_held.value_or(false));
    EXPECT_GT(r.completion.figures.prompt_tokens_cached.value_or(0), 0)
        << "line " << i << " " << r.speaker << " on " << r.completion.endpoint << " slot "
        << r.completion.server.slot_id.value_or(-1) << ", prompt tokens "
        << r.completion.figures.tokens_in.value_or(-1) << "\nA:\n"
        << a.log_tail() << "\nB:\n"
        << b.log_tail();
    auto [it, fresh] = endpoint_of.emplace(r.speaker, r.completion.endpoint);
    if (!fresh) EXPECT_EQ(it->second, r.completion.endpoint) << r.speaker << " moved";
  }
  EXPECT_EQ(endpoint_of.size(), 4u);

  // The player interrupts a line streaming from a server: the connection is closed at once.
  // The first token's callback holds the stream until the player has started speaking, so the
  // line cannot end first.
  std::promise<void> streaming;
  std::atomic<bool> signalled{false}, saying{false};
  LineOptions o;
  o.on_text = [&](std::string_view) {
    if (!signalled.exchange(true)) {
      streaming.set_value();
      for (int i = 0; i < 2000 && !saying.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    return true;
  };
  auto line = scene.start_line(o);
  streaming.get_future().wait();
  saying.store(true);
  scene.say("Enough!");
  const LineRecord cut = line->wait();
  EXPECT_TRUE(cut.interrupted);
  const LineRecord next = scene.line();
  ASSERT_TRUE(next.ok()) << next.completion.error.message;
  EXPECT_TRUE(next.budget_held.value_or(false));
}

}  // namespace
