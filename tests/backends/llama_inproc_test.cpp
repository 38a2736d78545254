// The in-process backend: llama.cpp in this process, continuous batching, sessions.
#include "backends/http_backend.hpp"
#include "backends/llama_backend.hpp"
#include "backends/llama_chat.hpp"
#include "backends/llama_engine.hpp"
#include "backends/text_stream.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>
#include <llama.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

namespace {

using namespace chimera;

Request completion(const std::string& prompt, int n) {
  Request r;
  r.kind = RequestKind::completion;
  r.prompt = prompt;
  r.options.num_predict = n;
  r.options.temperature = 0.0;  // greedy
  return r;
}

std::unique_ptr<Backend> inproc(int parallel, int ctx = 1024,
                                const std::filesystem::path& model = test::tiny_model()) {
  EndpointConfig cfg;
  cfg.kind = BackendKind::llama;
  cfg.url = model.string();
  cfg.llama.parallel = parallel;
  cfg.llama.ctx_per_seq = ctx;
  cfg.llama.threads = 2;
  Runtime& rt = Runtime::shared();
  return make_backend(cfg, rt);
}

// POSTs `body` to a llama-server's `path` and parses its answer into `out`; any other answer
// than a 200 is a test failure.
void post_json(backends::HttpBackend& raw, const char* path, const boost::json::object& body,
               boost::json::value& out) {
  std::string response;
  const auto r = raw.fetch_blocking(
      {boost::beast::http::verb::post, path, boost::json::serialize(body), "application/json", ""},
      response, 30'000);
  ASSERT_FALSE(r.error) << r.error.message;
  ASSERT_EQ(r.status, 200) << response;
  out = boost::json::parse(response);
}

// llama-server on `model` beside the engine, as the engine sets itself up on the CPU (one slot,
// flash attention off), and a client for it.
struct LlamaServerBeside {
  explicit LlamaServerBeside(const std::filesystem::path& model)
      : server(model, {.parallel = 1, .ctx = 1024, .extra = {"-fa", "off"}}) {
    EndpointConfig cfg;
    cfg.url = server.url();
    if (server.ok()) http = make_backend(cfg, rt);
  }
  backends::HttpBackend& raw() { return static_cast<backends::HttpBackend&>(*http); }

  test::LlamaServer server;
  Runtime rt{1};
  std::unique_ptr<Backend> http;
};

// A string field of a chat reply's message, empty when it is absent or not a string.
std::string message_text(const boost::json::value& reply, const char* key) {
  const auto& message = reply.at("choices").at(0).at("message").as_object();
  const auto* v = message.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// Bytes of text the last generated token added (its piece, through the model's vocabulary).
std::size_t last_piece(const Completion& c) {
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  llama_model* model = llama_model_load_from_file(test::tiny_model().c_str(), mp);
  char buf[256];
  const int n = llama_token_to_piece(llama_model_get_vocab(model), c.tokens.back(), buf, sizeof buf,
                                     0, false);
  llama_model_free(model);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

const std::vector<std::string> kPrompts = {
    "The tavern keeper said",     "Once upon a time in a small village",
    "Roll for initiative!",       "The dragon looked at the knight and",
    "Quarterly results show",     "def fibonacci(n):",
    "In the beginning there was", "Warning: the reactor core is",
};

// The reference: llama-server, same model file, same prompt, greedy, token ids returned.
// The same-tokens guarantee holds with batch-invariant CPU kernels only: a llama.cpp built with
// llamafile's kernels (CHIMERA_LLAMA_BATCH_INVARIANT=OFF) computes a row differently alone and
// beside others, by design.
constexpr const char* kNotBatchInvariant =
    "this llama.cpp build uses llamafile's matrix kernels for batches and ggml's dot product "
    "for a single row, which give a sequence different numbers alone and in a batch (built with "
    "CHIMERA_LLAMA_BATCH_INVARIANT=OFF, or an installed llama.cpp built with them)";

TEST(LlamaInProcess, SameTokensAsLlamaServer) {
  // Flash attention off on both sides: the engine keeps it off on the CPU (see LlamaConfig).
  LlamaServerBeside server(test::tiny_model());
  ASSERT_TRUE(server.server.ok()) << server.server.error();
  auto b = inproc(1);
  auto& raw = server.raw();
  for (const std::string& prompt : {kPrompts[0], kPrompts[3], kPrompts[5]}) {
    const Completion mine = b->generate(completion(prompt, 32));
    ASSERT_TRUE(mine.ok()) << mine.error.message;
    ASSERT_EQ(mine.tokens.size(), 32u);

    boost::json::object body{{"prompt", prompt}, {"n_predict", 32},       {"temperature", 0.0},
                             {"top_k", 1},       {"return_tokens", true}, {"cache_prompt", false},
                             {"stream", false}};
    boost::json::value parsed;
    ASSERT_NO_FATAL_FAILURE(post_json(raw, "/completion", body, parsed));
    std::vector<int32_t> theirs;
    for (const auto& t : parsed.at("tokens").as_array()) {
      theirs.push_back(static_cast<int32_t>(t.to_number<int64_t>()));
    }
    EXPECT_EQ(mine.tokens, theirs) << "prompt: " << prompt;
  }
}

// A chat request's prompt is what llama-server's Jinja route makes of the same messages, for
// plain conversations that the engine renders through the template alone (without llama.cpp's
// per-request template analysis): the same prompt tokens and, greedy, the same reply, content
// and reasoning parsed apart alike. The tiny model's default template, Llama 3.2's, a
// Hermes-style (Qwen 2.5) tool template, Qwen 3's (thinking on by default) and DeepSeek R1's
// (whose prompt opens the reasoning, so that the whole reply is reasoning).
TEST(LlamaInProcess, ChatPromptsAreLlamaServersForPlainConversations) {
  const std::vector<std::vector<Message>> conversations = {
      {{"user", "Tell me a story.", {}, {}, {}}},
      {{"system", "You are a bard.", {}, {}, {}},
       {"user", "Sing!", {}, {}, {}},
       {"assistant", "La la la.", {}, {}, {}},
       {"user", "Again, louder.", {}, {}, {}}},
  };
  for (const auto& model : {test::tiny_model(), test::tool_call_model(), test::tool_model(),
                            test::qwen2_model("Qwen-Qwen3-0.6B"),
                            test::qwen2_model("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")}) {
    LlamaServerBeside server(model);
    ASSERT_TRUE(server.server.ok()) << server.server.error();
    auto mine_backend = inproc(1, 1024, model);
    auto& raw = server.raw();
    for (const auto& messages : conversations) {
      Request r;
      r.messages = messages;
      r.options.num_predict = 8;
      r.options.temperature = 0.0;
      r.cache_prompt = false;
      const Completion mine = mine_backend->generate(r);
      ASSERT_TRUE(mine.ok()) << model << ": " << mine.error.message;

      boost::json::array msgs;
      for (const auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
      boost::json::object body{{"messages", msgs}, {"max_tokens", 8},       {"temperature", 0.0},
                               {"top_k", 1},       {"cache_prompt", false}, {"stream", false}};
      boost::json::value theirs;
      ASSERT_NO_FATAL_FAILURE(post_json(raw, "/v1/chat/completions", body, theirs));
      EXPECT_EQ(mine.figures.tokens_in.value_or(-1),
                theirs.at("usage").at("prompt_tokens").to_number<int64_t>())
          << model << ", " << messages.size() << " messages";
      EXPECT_EQ(
          mine.tokens.size(),
          static_cast<std::size_t>(theirs.at("usage").at("completion_tokens").to_number<int64_t>()))
          << model;
      EXPECT_EQ(mine.text, message_text(theirs, "content")) << model;
      EXPECT_EQ(mine.thinking, message_text(theirs, "reasoning_content")) << model;
    }
  }
}

// A seeded chat at a temperature draws what llama-server draws with the same seed and settings,
// through the chat template's sampler (a model whose replies are parsed: Qwen 3's template, which
// thinks by default). The engine's draw finds the top-k's candidates in one pass
// (ChatStream::sample), llama-server's sampler writes and sorts one per token of the vocabulary,
// and the chain after them is the same.
TEST(LlamaInProcess, SeededChatDrawsLlamaServersTokens) {
  const auto model = test::qwen2_model("Qwen-Qwen3-0.6B");
  LlamaServerBeside server(model);
  ASSERT_TRUE(server.server.ok()) << server.server.error();
  auto mine_backend = inproc(1, 1024, model);
  auto& raw = server.raw();
  std::vector<std::string> replies;
  for (const int64_t seed : {1, 42, 4242}) {
    Request r;
    r.kind = RequestKind::chat;
    r.messages = {{"user", kPrompts[0], {}, {}, {}}};  // one prompt: replies differ by seed
    r.options.num_predict = 48;
    r.options.temperature = 0.8;
    r.options.seed = seed;
    r.cache_prompt = false;
    const Completion mine = mine_backend->generate(r);
    ASSERT_TRUE(mine.ok()) << mine.error.message;

    boost::json::object body{
        {"messages", boost::json::array{{{"role", "user"}, {"content", r.messages[0].content}}}},
        {"max_tokens", 48},
        {"temperature", 0.8},
        {"seed", seed},
        {"cache_prompt", false},
        {"stream", false}};
    boost::json::value theirs;
    ASSERT_NO_FATAL_FAILURE(post_json(raw, "/v1/chat/completions", body, theirs));
    EXPECT_EQ(
        mine.tokens.size(),
        static_cast<std::size_t>(theirs.at("usage").at("completion_tokens").to_number<int64_t>()))
        << "seed " << seed;
    EXPECT_EQ(mine.text, message_text(theirs, "content")) << "seed " << seed;
    EXPECT_EQ(mine.thinking, message_text(theirs, "reasoning_content")) << "seed " << seed;
    replies.push_back(mine.thinking + mine.text);
  }
  // The draws are random: two seeds give two different replies to the same prompt.
  EXPECT_NE(replies[0], replies[1]);
  EXPECT_NE(replies[1], replies[2]);
}

// Which parsed chats draw from the top-k's candidates: those whose common sampler chain starts
// with samplers that return at once with their settings, then a top-k of 1 to 128; a setting
// that makes one of them act, a logit bias or a tool-call grammar keeps llama.cpp's own path.
// This mirrors llama.cpp's common_sampler_init, and fails when a new llama.cpp changes it.
TEST(ChatStreamDraws, FromTheTopKCandidatesOnlyWhereNothingComesBeforeTopK) {
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  const auto load = [](const std::filesystem::path& path) {
    return std::unique_ptr<llama_model, decltype(&llama_model_free)>(
        llama_model_load_from_file(path.c_str(), llama_model_default_params()), &llama_model_free);
  };
  const auto leading_top_k = [](const llama_model* model, const Request& r,
                                const std::vector<LogitBias>& bias) {
    backends::ChatTemplates templates(model);
    backends::ChatPrompt prompt;
    std::string error;
    if (!templates.apply(r, prompt, error) || !prompt.parse) return -1;
    auto stream = backends::ChatStream::make(model, prompt, r.options, bias, error);
    EXPECT_NE(stream, nullptr) << error;
    return stream ? stream->leading_top_k() : -1;
  };
  const auto qwen3 = load(test::qwen2_model("Qwen-Qwen3-0.6B"));  // it thinks: replies are parsed
  ASSERT_NE(qwen3, nullptr);
  Request r;
  r.kind = RequestKind::chat;
  r.messages = {{"user", "Hi", {}, {}, {}}};
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {}), 40);  // the default top-k
  r.options.top_k = 7;
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {}), 7);
  r.options.temperature = 0.0;  // greedy: the same chain, temperature 0
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {}), 7);
  r.options = {};
  r.options.top_k = 0;  // no top-k: every token stays a candidate
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {}), 0);
  r.options.top_k = 200;  // more than top_k_candidates takes
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {}), 0);
  r.options = {};
  r.options.repeat_penalty = 1.1;  // the penalties sampler acts
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {}), 0);
  r.options = {};
  EXPECT_EQ(leading_top_k(qwen3.get(), r, {{5, 2.0}}), 0);  // a logit bias comes first

  const auto tool_model = load(test::tool_model());  // a tool-call grammar
  ASSERT_NE(tool_model, nullptr);
  Request tools;
  tools.kind = RequestKind::chat;
  tools.messages = {{"user", "What is the weather in Paris?", {}, {}, {}}};
  tools.tools_json =
      R"([{"type":"function","function":{"name":"get_weather","description":"The weather",)"
      R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},)"
      R"("required":["city"]}}}])";
  EXPECT_EQ(leading_top_k(tool_model.get(), tools, {}), 0);
}

TEST(LlamaInProcess, FiguresAndStreaming) {
  auto b = inproc(2);
  std::string streamed;
  std::vector<bool> more;
  const Completion c = b->generate(completion(kPrompts[1], 24), [&](const TokenEvent& t) {
    streamed += t.text;
    more.push_back(t.more);
    return true;
  });
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, streamed);
  // The 24th token is the last the request may have: its event says that the end follows.
  ASSERT_FALSE(more.empty());
  EXPECT_TRUE(more.back());
  EXPECT_EQ(std::count(more.begin(), more.end(), true), 1);
  EXPECT_TRUE(test::valid_utf8(c.text));
  const Figures& f = c.figures;
  EXPECT_EQ(f.tokens_out.value_or(0), 24);
  EXPECT_GT(f.tokens_in.value_or(0), 0);
  ASSERT_TRUE(f.ttft_client_ns && f.ttft_server_ms && f.e2e_ns);
  EXPECT_GT(*f.ttft_client_ns, 0);
  EXPECT_GT(*f.ttft_server_ms, 0.0);
  EXPECT_GE(*f.e2e_ns, *f.ttft_client_ns);
  EXPECT_TRUE(f.decode_tps_server && *f.decode_tps_server > 0);
  EXPECT_TRUE(f.decode_tps_client && *f.decode_tps_client > 0);
  EXPECT_EQ(c.finish, FinishReason::length);
}

std::vector<Completion> run_concurrently(Backend& b, const std::vector<Request>& reqs) {
  std::vector<std::promise<Completion>> done(reqs.size());
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    handles.push_back(
        b.start(reqs[i], {}, [&done, i](Completion c) { done[i].set_value(std::move(c)); }));
  }
  std::vector<Completion> out;
  for (auto& d : done) out.push_back(d.get_future().get());
  return out;
}

TEST(LlamaInProcess, BatchingIsInvisible) {
  if (!backends::LlamaEngine::cpu_kernels_batch_invariant()) GTEST_SKIP() << kNotBatchInvariant;
  auto b = inproc(8);
  std::vector<Request> reqs;
  for (const auto& p : kPrompts) reqs.push_back(completion(p, 96));
  std::vector<Completion> sequential;
  for (const auto& r : reqs) sequential.push_back(b->generate(r));
  const auto together = run_concurrently(*b, reqs);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(sequential[i].ok() && together[i].ok());
    EXPECT_EQ(sequential[i].tokens, together[i].tokens) << "prompt " << i;
    EXPECT_EQ(sequential[i].text, together[i].text) << "prompt " << i;
  }
}

// The tokens of a step's sequences are drawn side by side on the compute threads
// (LlamaEngine::sample_all): a seeded draw at a temperature, through the sampler chain of a
// completion and through the chat template's sampler, picks the same tokens beside seven others
// as alone.
TEST(LlamaInProcess, SeededSamplingIsTheSameInABatch) {
  if (!backends::LlamaEngine::cpu_kernels_batch_invariant()) GTEST_SKIP() << kNotBatchInvariant;
  auto b = inproc(8);
  std::vector<Request> reqs;
  for (std::size_t i = 0; i < kPrompts.size(); ++i) {
    Request r = completion(kPrompts[i], 48);
    r.options.temperature = 0.8;
    r.options.seed = 1000 + static_cast<int64_t>(i);
    if (i % 2 == 1) {  // half of them chats
      r.kind = RequestKind::chat;
      r.messages = {{"user", r.prompt, {}, {}, {}}};
      r.prompt.clear();
    }
    reqs.push_back(std::move(r));
  }
  std::vector<Completion> alone;
  for (const auto& r : reqs) alone.push_back(b->generate(r));
  const auto together = run_concurrently(*b, reqs);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(alone[i].ok()) << alone[i].error.message;
    ASSERT_TRUE(together[i].ok()) << together[i].error.message;
    EXPECT_EQ(alone[i].tokens.size(), 48u) << "request " << i;
    EXPECT_EQ(alone[i].tokens, together[i].tokens) << "request " << i;
  }
  // The draws are random: two seeds give two different streams.
  EXPECT_NE(alone[0].tokens, alone[2].tokens);
}

TEST(LlamaInProcess, MoreRequestsThanSequencesQueue) {
  auto b = inproc(2);
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(completion(kPrompts[static_cast<std::size_t>(i)], 8));
  for (const auto& c : run_concurrently(*b, reqs)) {
    EXPECT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.figures.tokens_out.value_or(0), 8);
  }
}

TEST(LlamaInProcess, SecondTurnOfASessionPrefillsOnlyTheNewTokens) {
  auto b = inproc(2);
  Request t1 = completion("The innkeeper greets the party.", 12);
  t1.session = "innkeeper";
  const Completion c1 = b->generate(t1);
  ASSERT_TRUE(c1.ok()) << c1.error.message;
  EXPECT_EQ(c1.figures.prompt_tokens_cached.value_or(-1), 0);

  Request t2 = completion(t1.prompt + c1.text + " The bard replies.", 8);
  t2.session = "innkeeper";
  const Completion c2 = b->generate(t2);
  ASSERT_TRUE(c2.ok()) << c2.error.message;
  // Everything the first turn put in the cache is reused: its prompt and the tokens it
  // generated, but the last one (sampled, never decoded).
  EXPECT_EQ(c2.figures.prompt_tokens_cached.value_or(-1),
            *c1.figures.tokens_in + *c1.figures.tokens_out - 1);
  EXPECT_LT(*c2.figures.tokens_in - *c2.figures.prompt_tokens_cached, 12);

  // Reuse changes speed, not results. Ask the session to continue from exactly what its cache
  // holds (the prompt and every generated token but the last, which was sampled and never
  // decoded): greedy decoding must then reproduce the rest of an uncached run token for token.
  const Completion ref = b->generate(completion(t1.prompt, 20));
  ASSERT_EQ(std::vector<int32_t>(ref.tokens.begin(), ref.tokens.begin() + 12), c1.tokens);
  Request again = t1;
  again.options.num_predict = 8;
  const Completion c1b = b->generate(again);  // the same first turn, to restore the session
  ASSERT_EQ(c1b.tokens, std::vector<int32_t>(c1.tokens.begin(), c1.tokens.begin() + 8));
  Request cont = completion(t1.prompt + c1b.text.substr(0, c1b.text.size() - last_piece(c1b)), 8);
  cont.session = "innkeeper";
  const Completion c_cont = b->generate(cont);
  ASSERT_TRUE(c_cont.ok()) << c_cont.error.message;
  EXPECT_EQ(c_cont.figures.prompt_tokens_cached.value_or(-1),
            *c1b.figures.tokens_in + *c1b.figures.tokens_out - 2);
  EXPECT_EQ(c_cont.tokens, std::vector<int32_t>(ref.tokens.begin() + 7, ref.tokens.begin() + 15));

  // A dropped session starts cold.
  b->drop_session("innkeeper");
  const Completion c3 = b->generate(t2);
  ASSERT_TRUE(c3.ok()) << c3.error.message;
  EXPECT_EQ(c3.figures.prompt_tokens_cached.value_or(-1), 0);
}

TEST(LlamaInProcess, ChatSessionReusesTheConversation) {
  auto b = inproc(2);
  Request t1;
  t1.session = "bard";
  t1.options.num_predict = 8;
  t1.options.temperature = 0.0;
  t1.messages = {{"system", "You are a bard.", {}, {}, {}}, {"user", "Sing!", {}, {}, {}}};
  const Completion c1 = b->generate(t1);
  ASSERT_TRUE(c1.ok()) << c1.error.message;
  Request t2 = t1;
  t2.messages.push_back({"assistant", c1.text, {}, {}, {}});
  t2.messages.push_back({"user", "Again!", {}, {}, {}});
  const Completion c2 = b->generate(t2);
  ASSERT_TRUE(c2.ok()) << c2.error.message;
  EXPECT_GE(c2.figures.prompt_tokens_cached.value_or(0), *c1.figures.tokens_in);
}

TEST(LlamaInProcess, IdleSessionsAreEvictedLeastRecentlyUsed) {
  auto b = inproc(2);
  auto turn = [&](const std::string& session) {
    Request r = completion("Session " + session + " says hello.", 4);
    r.session = session;
    return b->generate(r);
  };
  ASSERT_TRUE(turn("a").ok());
  ASSERT_TRUE(turn("b").ok());
  EXPECT_GT(turn("a").figures.prompt_tokens_cached.value_or(0), 0);  // a is still cached
  ASSERT_TRUE(turn("c").ok());                                       // evicts b (LRU)
  EXPECT_GT(turn("a").figures.prompt_tokens_cached.value_or(0), 0);
  EXPECT_EQ(turn("b").figures.prompt_tokens_cached.value_or(-1), 0);
}

// Without a session, a request reads again only what the idle sequences do not already hold
// (the longest common prefix, as llama-server's slots do), and answers exactly as it did cold;
// cache_prompt false starts it cold.
TEST(LlamaInProcess, ARepeatedPromptReusesTheCellsALastRequestLeft) {
  auto b = inproc(2);
  const Completion cold = b->generate(completion(kPrompts[4], 16));
  ASSERT_TRUE(cold.ok()) << cold.error.message;
  EXPECT_EQ(cold.figures.prompt_tokens_cached.value_or(-1), 0);
  const int64_t prompt = cold.figures.tokens_in.value_or(0);
  ASSERT_GT(prompt, 1);
  const Completion other = b->generate(completion(kPrompts[6], 16));  // on the other sequence
  ASSERT_TRUE(other.ok()) << other.error.message;
  const Completion warm = b->generate(completion(kPrompts[4], 16));
  ASSERT_TRUE(warm.ok()) << warm.error.message;
  EXPECT_EQ(warm.figures.prompt_tokens_cached.value_or(-1), prompt - 1);
  EXPECT_EQ(warm.tokens, cold.tokens);
  Request fresh = completion(kPrompts[4], 16);
  fresh.cache_prompt = false;
  const Completion again = b->generate(fresh);
  ASSERT_TRUE(again.ok()) << again.error.message;
  EXPECT_EQ(again.figures.prompt_tokens_cached.value_or(-1), 0);
  EXPECT_EQ(again.tokens, cold.tokens);
}

TEST(LlamaInProcess, CancellingOneOfFourLeavesTheOthersUnchanged) {
  auto b = inproc(4);
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i)
    reqs.push_back(completion(kPrompts[static_cast<std::size_t>(i)], 200));
  std::vector<Completion> alone;
  for (const auto& r : reqs) alone.push_back(b->generate(r));

  std::vector<std::promise<Completion>> done(4);
  std::atomic<int> victim_tokens{0};
  std::atomic<bool> cancelled{false};
  std::atomic<int> after_cancel{0};
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (std::size_t i = 0; i < 4; ++i) {
    TokenCallback cb;
    if (i == 1) {
      cb = [&](const TokenEvent&) {
        if (cancelled.load()) after_cancel.fetch_add(1);
        victim_tokens.fetch_add(1);
        return true;
      };
    }
    handles.push_back(
        b->start(reqs[i], cb, [&done, i](Completion c) { done[i].set_value(std::move(c)); }));
  }
  while (victim_tokens.load() < 5) std::this_thread::sleep_for(std::chrono::microseconds(200));
  handles[1]->cancel();
  cancelled.store(true);
  std::vector<Completion> out;
  for (auto& d : done) out.push_back(d.get_future().get());
  EXPECT_EQ(out[1].error.kind, ErrorKind::cancelled);
  EXPECT_LT(out[1].tokens.size(), 200u);
  EXPECT_EQ(after_cancel.load(), 0);
  for (std::size_t i : {0u, 2u, 3u}) {
    ASSERT_TRUE(out[i].ok()) << out[i].error.message;
    EXPECT_EQ(out[i].tokens, alone[i].tokens) << "request " << i;
  }
}

TEST(LlamaInProcess, JsonSchemaConstrainsTheOutput) {
  auto b = inproc(1);
  Request r = completion("Answer in JSON:", 64);
  r.options.temperature = 0.8;
  r.options.seed = 7;
  r.format_json = R"({"type":"object","properties":{"ok":{"type":"boolean"}},)"
                  R"("required":["ok"],"additionalProperties":false})";
  const Completion c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  boost::system::error_code ec;
  const auto v = boost::json::parse(c.text, ec);
  ASSERT_FALSE(ec) << c.text;
  EXPECT_TRUE(v.as_object().at("ok").is_bool()) << c.text;

  r.format_json = "{not json";
  const Completion bad = b->generate(r);
  EXPECT_EQ(bad.error.kind, ErrorKind::bad_request);
  EXPECT_NE(bad.error.message.find("JSON schema"), std::string::npos) << bad.error.message;
}

TEST(LlamaInProcess, StopStringsEndTheStream) {
  auto b = inproc(1);
  const Completion full = b->generate(completion(kPrompts[2], 40));
  ASSERT_TRUE(full.ok());
  ASSERT_GT(full.text.size(), 12u);
  // Stop on a piece of the greedy output: the text ends right before it.
  const std::string stop = full.text.substr(full.text.size() / 2, 4);
  Request r = completion(kPrompts[2], 40);
  r.options.stop = {stop};
  const Completion c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.text, full.text.substr(0, full.text.find(stop)));
}

TEST(LlamaInProcess, ClearErrors) {
  EndpointConfig cfg;
  cfg.kind = BackendKind::llama;
  cfg.url = "/nonexistent/model.gguf";
  try {
    make_backend(cfg, Runtime::shared());
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
  auto b = inproc(1, 64);
  const Completion c = b->generate(completion(std::string(2000, 'x') + " long prompt", 4));
  EXPECT_EQ(c.error.kind, ErrorKind::bad_request);
  EXPECT_NE(c.error.message.find("context per sequence"), std::string::npos) << c.error.message;
  Request empty;
  EXPECT_EQ(b->generate(empty).error.kind, ErrorKind::bad_request);
}

// Token pieces are bytes; a character may be split over several tokens. Drive the detokenizer
// of a real vocabulary (SPM with byte fallback) directly: characters outside the vocabulary
// become one byte token per UTF-8 byte.
TEST(Utf8Streaming, ByteFallbackTokensStreamOnlyWholeCharacters) {
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  const std::string vocab_file = std::string(CHIMERA_VOCAB_DIR) + "/ggml-vocab-llama-spm.gguf";
  llama_model* model = llama_model_load_from_file(vocab_file.c_str(), mp);
  ASSERT_NE(model, nullptr);
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const std::string text = "Dragons 🦙 and 𝄞 music, ꙮ!";
  std::vector<llama_token> toks(256);
  const int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), toks.data(),
                               256, false, false);
  ASSERT_GT(n, 0);
  toks.resize(static_cast<std::size_t>(n));
  backends::Utf8Assembler a;
  std::string out;
  int split_pieces = 0;
  for (llama_token t : toks) {
    char buf[64];
    const int m = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, false);
    ASSERT_GE(m, 0);
    const std::string_view piece(buf, static_cast<std::size_t>(m));
    if (!test::valid_utf8(piece)) ++split_pieces;
    const std::string chunk = a.push(piece);
    EXPECT_TRUE(test::valid_utf8(chunk));
    out += chunk;
  }
  a.finish();
  llama_model_free(model);
  EXPECT_GT(split_pieces, 4);  // the case is real: pieces that are not whole characters
  // llama's SPM detokenizer turns the leading word-boundary marker into a space.
  EXPECT_EQ(out.substr(out.size() - text.size()), text);
  EXPECT_EQ(a.dropped_bytes(), 0);
}

TEST(Utf8Streaming, IncompleteAndInvalidBytesAreDroppedAndCounted) {
  backends::Utf8Assembler a;
  EXPECT_EQ(a.push("a\xE4"), "a");  // first byte of 世 waits
  EXPECT_EQ(a.push("\xB8"), "");
  EXPECT_EQ(a.push("\x96z"), "\xE4\xB8\x96z");
  EXPECT_EQ(a.dropped_bytes(), 0);
  EXPECT_EQ(a.push("\x80ok"), "ok");      // a stray continuation byte
  EXPECT_EQ(a.push("\xC3(x"), "(x");      // a lead byte whose next byte is not a continuation
  EXPECT_EQ(a.push("\xFF"), "");          // never valid
  EXPECT_EQ(a.push("\xED\xA0\x80"), "");  // a UTF-16 surrogate: invalid in UTF-8
  EXPECT_EQ(a.dropped_bytes(), 6);
  EXPECT_EQ(a.push("\xF0\x9F"), "");  // the stream ends inside a character
  a.finish();
  EXPECT_EQ(a.dropped_bytes(), 8);
}

TEST(StopMatcher, HoldsBackPossibleStartsAndCutsAtTheStop) {
  backends::StopMatcher m({"</end>", "STOP"});
  EXPECT_EQ(m.push("hello <"), "hello ");
  EXPECT_EQ(m.push("/e"), "");
  EXPECT_EQ(m.push("x"), "</ex");  // not a stop after all
  EXPECT_EQ(m.push(" ST"), " ");
  EXPECT_EQ(m.push("OP and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.flush(), "");
  backends::StopMatcher none({});
  EXPECT_EQ(none.push("abc"), "abc");
  backends::StopMatcher tail({"xyz"});
  EXPECT_EQ(tail.push("abcx"), "abc");
  EXPECT_EQ(tail.flush(), "x");
}

}  // namespace

namespace {

// GPU layers and threads are load settings: a request may restate the loaded values, and one
// asking for others is refused with the reason, never run with them dropped. An
// OpenAI-compatible server refuses them too, before anything is sent (port 9 answers nothing).
TEST(LoadSettingsPerRequest, RefusedWhereTheyCannotBeApplied) {
  auto b = inproc(1, 256);
  Request same = completion("Hello", 2);
  same.options.num_gpu = 0;  // what inproc() loaded with (the default)
  same.options.num_thread = 2;
  const Completion ok = b->generate(same);
  EXPECT_TRUE(ok.ok()) << ok.error.message;

  Request gpu = completion("Hello", 2);
  gpu.options.num_gpu = 80;
  const Completion g = b->generate(gpu);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error.kind, ErrorKind::bad_request);
  EXPECT_NE(g.error.message.find("num_gpu is 80, but the model was loaded with 0 GPU layers"),
            std::string::npos)
      << g.error.message;

  Request thr = completion("Hello", 2);
  thr.options.num_thread = 7;
  const Completion t = b->generate(thr);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error.message.find("num_thread is 7, but the model was loaded with 2 threads"),
            std::string::npos)
      << t.error.message;

  Runtime rt(1);
  EndpointConfig cfg;
  cfg.kind = BackendKind::openai;
  cfg.url = "http://127.0.0.1:9";
  auto http = make_backend(cfg, rt);
  const Completion o = http->generate(gpu);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error.kind, ErrorKind::bad_request);
  EXPECT_NE(o.error.message.find("num_gpu is 80, but an OpenAI-compatible server takes GPU "
                                 "layers only as its own flag"),
            std::string::npos)
      << o.error.message;
}

}  // namespace
