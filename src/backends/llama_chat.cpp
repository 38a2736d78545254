#include "backends/llama_chat.hpp"

#include "backends/llama_top_k.hpp"

#include <fmt/format.h>
#include <llama.h>

#ifdef CHIMERA_HAVE_LLAMA_COMMON
// llama.cpp's Jinja headers define helpers that this file does not call.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <chat.h>
#include <log.h>
#include <sampling.h>
#pragma GCC diagnostic pop
#endif

#include <array>
#include <mutex>
#include <random>
#include <vector>

namespace chimera::backends {

namespace {

#ifdef CHIMERA_HAVE_LLAMA_COMMON
// A call id for a call the model wrote without one (most templates' formats carry none), in
// OpenAI's shape, so that the result can name it.
std::string new_call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("call_{:016x}", rng());
}

common_chat_msg to_common(const Message& m) {
  common_chat_msg out;
  out.role = m.role;
  out.content = m.content;
  out.reasoning_content = m.thinking;
  out.tool_name = m.tool_name;
  out.tool_call_id = m.tool_call_id;
  for (const auto& tc : m.tool_calls) {
    out.tool_calls.push_back(
        {tc.name, tc.arguments_json.empty() ? "{}" : tc.arguments_json, tc.id});
  }
  return out;
}

common_chat_tool_choice tool_choice(const std::optional<std::string>& c) {
  if (c == "required") return COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  if (c == "none") return COMMON_CHAT_TOOL_CHOICE_NONE;
  return COMMON_CHAT_TOOL_CHOICE_AUTO;
}

common_chat_templates_inputs chat_inputs(const std::vector<Message>& messages, bool thinking) {
  common_chat_templates_inputs in;
  for (const auto& m : messages) in.messages.push_back(to_common(m));
  in.use_jinja = true;
  in.add_generation_prompt = true;
  in.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
  in.enable_thinking = thinking;
  return in;
}

// The template rendered alone (llama.cpp's "pure content" route). llama.cpp logs a warning on
// every such call; its common library's log level is process-wide, so it is lowered under a lock
// for the call only.
common_chat_params render_only(const common_chat_templates* templates,
                               common_chat_templates_inputs in) {
  static std::mutex mu;
  in.force_pure_content = true;
  std::lock_guard lock(mu);
  const int level = common_log_get_verbosity_thold();
  common_log_set_verbosity_thold(LOG_LEVEL_ERROR);
  struct Restore {
    int level;
    ~Restore() { common_log_set_verbosity_thold(level); }
  } restore{level};
  return common_chat_templates_apply(templates, in);
}

// A request the template renders alone gives the same prompt as the full route: plain messages
// (no tool calls, results or reasoning), and not a continuation of the assistant's last message.
bool plain_messages(const std::vector<Message>& messages) {
  if (messages.empty() || messages.back().role == "assistant") return false;
  for (const auto& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") return false;
    if (!m.tool_calls.empty() || !m.thinking.empty() || !m.tool_call_id.empty()) return false;
  }
  return true;
}
#endif

}  // namespace

#ifdef CHIMERA_HAVE_LLAMA_COMMON

struct ChatPrompt::Plan {
  common_chat_params params;
  common_chat_parser_params parser;
};

namespace {

// The parser for what the template's model writes, from what the template made of a request.
std::shared_ptr<ChatPrompt::Plan> make_plan(common_chat_params params, bool tools) {
  auto plan = std::make_shared<ChatPrompt::Plan>();
  plan->params = std::move(params);
  plan->parser = common_chat_parser_params(plan->params);
  plan->parser.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
  plan->parser.parse_tool_calls = tools;
  if (!plan->params.parser.empty()) plan->parser.parser.load(plan->params.parser);
  return plan;
}

}  // namespace

struct ChatTemplates::Impl {
  common_chat_templates_ptr templates;
  bool tool_calls = false;
  bool thinking = false;
  // llama.cpp's full route analyses the template on every call, rendering it several times to
  // learn how its model writes reasoning and tool calls: on a small model that takes longer than
  // the prompt's decode (docs/inproc.md, "The chat template"). For a request without tools the
  // analysis depends on the template only: it is made once here, per value of enable_thinking,
  // and such a request gets its prompt from rendering the template alone, with the template's
  // extra stop strings and, where the output is parsed for reasoning, the plan (parser) made
  // here. Used only after checking here that both routes give the same prompts, stops and plan
  // for two probe conversations.
  struct RenderOnly {
    bool ok = false;
    std::vector<std::string> stops;
    std::shared_ptr<const ChatPrompt::Plan> plan;  // set when the output is parsed (reasoning)
  };
  std::array<RenderOnly, 2> alone;  // [enable_thinking]

  static bool same_plan(const common_chat_params& a, const common_chat_params& b) {
    return a.format == b.format && a.parser == b.parser && a.grammar == b.grammar &&
           a.grammar_lazy == b.grammar_lazy && a.grammar_triggers.empty() &&
           b.grammar_triggers.empty() && a.generation_prompt == b.generation_prompt &&
           a.supports_thinking == b.supports_thinking &&
           a.thinking_start_tag == b.thinking_start_tag &&
           a.thinking_end_tags == b.thinking_end_tags && a.preserved_tokens == b.preserved_tokens;
  }

  void check_render_only() {
    const std::vector<std::vector<Message>> probes = {
        {{"user", "Hello"}},
        {{"system", "You are terse."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Why?"}},
    };
    for (const bool thinking : {false, true}) {
      RenderOnly r;
      r.ok = true;
      common_chat_params first;
      for (std::size_t i = 0; i < probes.size() && r.ok; ++i) {
        try {
          const auto in = chat_inputs(probes[i], thinking);
          auto full = common_chat_templates_apply(templates.get(), in);
          const auto only = render_only(templates.get(), in);
          const bool parse = full.supports_thinking && thinking;
          if (i == 0) {
            r.stops = full.additional_stops;
            first = full;
          }
          r.ok = full.prompt == only.prompt && full.additional_stops == r.stops;
          if (parse) {
            r.ok =
                r.ok && only.generation_prompt == full.generation_prompt && same_plan(full, first);
          }
          if (r.ok && parse && i == 0) {
            full.prompt.clear();  // each request's own
            r.plan = make_plan(std::move(full), /*tools=*/false);
          }
        } catch (const std::exception&) {
          r.ok = false;
        }
      }
      if (!r.ok) r = RenderOnly{};
      alone[thinking ? 1 : 0] = std::move(r);
    }
  }
};

ChatTemplates::ChatTemplates(const llama_model* model) : impl_(std::make_unique<Impl>()) {
  own_ = llama_model_chat_template(model, nullptr) != nullptr ||
         llama_model_chat_template(model, "tool_use") != nullptr;
  if (!own_) {
    warning_ =
        "the model carries no chat template (tokenizer.chat_template); its prompts are "
        "formatted as ChatML, llama.cpp's default";
  }
  impl_->templates = common_chat_templates_init(model, "");
  const auto caps = common_chat_templates_get_caps(impl_->templates.get());
  const auto cap = [&caps](const char* k) {
    const auto it = caps.find(k);
    return it != caps.end() && it->second;
  };
  impl_->tool_calls = own_ && cap("supports_tool_calls") && cap("supports_tools");
  impl_->thinking = common_chat_templates_support_enable_thinking(impl_->templates.get());
  impl_->check_render_only();
}

ChatTemplates::~ChatTemplates() = default;

bool ChatTemplates::tool_calls() const {
  return impl_->tool_calls;
}

bool ChatTemplates::thinking() const {
  return impl_->thinking;
}

bool ChatTemplates::apply(const Request& r, ChatPrompt& out, std::string& error) const {
  const bool thinking = r.think.value_or(impl_->thinking);
  common_chat_templates_inputs in = chat_inputs(r.messages, thinking);
  const bool tools = r.tools_json && r.tool_choice != "none";
  if (const auto& alone = impl_->alone[thinking ? 1 : 0];
      alone.ok && !tools && plain_messages(r.messages)) {
    common_chat_params params;
    try {
      params = render_only(impl_->templates.get(), in);
    } catch (const std::exception& e) {
      error = fmt::format("the chat template could not be applied to these messages: {}", e.what());
      return false;
    }
    // A parsed output needs the plan's generation prompt; another one takes the full route.
    if (!alone.plan || params.generation_prompt == alone.plan->params.generation_prompt) {
      out.prompt = std::move(params.prompt);
      out.stops = alone.stops;
      out.parse = alone.plan != nullptr;
      out.plan = alone.plan;
      return true;
    }
  }
  if (tools) {
    if (!impl_->tool_calls) {
      error = own_ ? "the model's chat template cannot show tools or tool calls"
                   : "the model carries no chat template, so it cannot be given tools (a GGUF "
                     "with a tool-calling template in tokenizer.chat_template can)";
      return false;
    }
    if (r.format_json) {
      error = "format and tools cannot be used together in-process";
      return false;
    }
    try {
      in.tools = common_chat_tools_parse_oaicompat(common_json::parse(*r.tools_json));
    } catch (const std::exception& e) {
      error = fmt::format("tools are not usable tool definitions: {}", e.what());
      return false;
    }
    in.tool_choice = tool_choice(r.tool_choice);
    in.parallel_tool_calls = true;
  }
  std::shared_ptr<ChatPrompt::Plan> plan;
  try {
    plan = make_plan(common_chat_templates_apply(impl_->templates.get(), in), tools);
  } catch (const std::exception& e) {
    error = fmt::format("the chat template could not be applied to these messages: {}", e.what());
    return false;
  }
  out.prompt = plan->params.prompt;
  out.stops = plan->params.additional_stops;
  out.parse = tools || (plan->params.supports_thinking && in.enable_thinking);
  out.plan = std::move(plan);
  return true;
}

namespace {

// Whether common_sampler_init's chain for `sp` begins with samplers that leave every candidate as
// it is, then a top-k of k from 1 to 128: the k, or 0. Those samplers are the default order's
// first three, each with the settings that make it return at once (llama-sampler.cpp): the
// penalties with nothing to penalize, DRY with a multiplier of 0, top-n-sigma at or below 0.
// A logit bias (the request's, or the vocabulary's suppressed tokens) comes first and changes
// them, as a grammar or a reasoning budget outside the chain would.
int chain_leading_top_k(const common_params_sampling& sp, const llama_vocab* vocab) {
  int32_t n_suppress = 0;
  llama_vocab_get_suppress_tokens(vocab, &n_suppress);
  if (!sp.logit_bias.empty() || n_suppress > 0 || !common_grammar_value(sp.grammar).empty() ||
      !sp.reasoning_budget_start.empty() || sp.reasoning_control || sp.backend_sampling ||
      sp.mirostat != 0 || sp.top_k < 1 || sp.top_k > 128) {
    return 0;
  }
  for (const auto type : sp.samplers) {
    switch (type) {
      case COMMON_SAMPLER_TYPE_TOP_K:
        return sp.top_k;
      case COMMON_SAMPLER_TYPE_PENALTIES:
        if (sp.penalty_last_n != 0 &&
            (sp.penalty_repeat != 1.0f || sp.penalty_freq != 0.0f || sp.penalty_present != 0.0f)) {
          return 0;
        }
        break;
      case COMMON_SAMPLER_TYPE_DRY:
        if (sp.dry_multiplier != 0.0f && sp.dry_base >= 1.0f && sp.dry_penalty_last_n != 0) {
          return 0;
        }
        break;
      case COMMON_SAMPLER_TYPE_TOP_N_SIGMA:
        if (!(sp.top_n_sigma <= 0.0f)) return 0;  // a NaN sigma runs, as llama.cpp tests it
        break;
      default:
        return 0;
    }
  }
  return 0;
}

}  // namespace

struct ChatStream::Impl {
  std::shared_ptr<const ChatPrompt::Plan> plan;
  common_sampler* sampler = nullptr;
  // The k of the chain's top-k when every sampler before it leaves the candidates as they are
  // (and nothing outside the chain, no grammar, no reasoning budget, acts on them): a draw may
  // then give the chain top_k_candidates' k instead of the whole vocabulary. Else 0.
  int leading_top_k = 0;
  std::vector<llama_token_data> candidates;
  std::string text;
  common_chat_msg parsed;
  std::vector<std::string> ids;
  ~Impl() {
    if (sampler) common_sampler_free(sampler);
  }
};

ChatStream::ChatStream() : impl_(std::make_unique<Impl>()) {}
ChatStream::~ChatStream() = default;

std::unique_ptr<ChatStream> ChatStream::make(const llama_model* model, const ChatPrompt& prompt,
                                             const Options& o, const std::vector<LogitBias>& bias,
                                             std::string& error) {
  std::unique_ptr<ChatStream> s(new ChatStream());
  s->impl_->plan = prompt.plan;
  const common_chat_params& p = prompt.plan->params;
  common_params_sampling sp;
  sp.temp = static_cast<float>(o.temperature.value_or(0.8));
  sp.top_k = o.top_k.value_or(40);
  sp.top_p = static_cast<float>(o.top_p.value_or(0.95));
  sp.min_p = static_cast<float>(o.min_p.value_or(0.05));
  sp.penalty_repeat = static_cast<float>(o.repeat_penalty.value_or(1.0));
  if (o.seed) sp.seed = static_cast<uint32_t>(*o.seed);
  sp.no_perf = true;
  for (const auto& b : bias) sp.logit_bias.push_back({b.token, static_cast<float>(b.bias)});
  if (!p.grammar.empty()) {
    sp.grammar = common_grammar(COMMON_GRAMMAR_TYPE_TOOL_CALLS, p.grammar);
    sp.grammar_lazy = p.grammar_lazy;
    sp.grammar_triggers = p.grammar_triggers;
  }
  sp.generation_prompt = p.generation_prompt;
  const llama_vocab* vocab = llama_model_get_vocab(model);
  for (const auto& t : p.preserved_tokens) {
    const auto ids = common_tokenize(vocab, t, false, true);
    if (ids.size() == 1) sp.preserved_tokens.insert(ids[0]);
  }
  try {
    s->impl_->sampler = common_sampler_init(model, sp);
  } catch (const std::exception& e) {
    error = fmt::format("the tool-call grammar of the chat template was rejected: {}", e.what());
    return nullptr;
  }
  if (s->impl_->sampler == nullptr) {
    error = "the tool-call grammar of the chat template was rejected by llama.cpp";
    return nullptr;
  }
  s->impl_->leading_top_k = chain_leading_top_k(sp, vocab);
  return s;
}

int ChatStream::leading_top_k() const {
  return impl_->leading_top_k;
}

// common_sampler_sample's CPU path is every token a candidate, the chain applied. Where the chain
// starts with a top-k (leading_top_k), its k candidates come from top_k_candidates already
// sorted, which its top-k sampler keeps as they are: the same array reaches the rest of the
// chain, so the same token is drawn (TopKCandidates.* and
// LlamaInProcess.SeededChatDrawsLlamaServersTokens), without writing and sorting an entry per token
// of the vocabulary.
int32_t ChatStream::sample(llama_context* ctx, int idx, const float* logits, int n_vocab) {
  Impl& s = *impl_;
  llama_token t = LLAMA_TOKEN_NULL;
  if (s.leading_top_k > 0 && logits != nullptr &&
      top_k_candidates(logits, n_vocab, s.leading_top_k, s.candidates)) {
    llama_token_data_array a{s.candidates.data(), s.candidates.size(), -1, true};
    t = chain_choice(common_sampler_get(s.sampler), a);
  } else {
    t = common_sampler_sample(s.sampler, ctx, idx);
  }
  common_sampler_accept(s.sampler, t, true);
  return t;
}

void ChatStream::push(std::string_view text, bool final, std::vector<ChatDelta>& out,
                      std::vector<ToolCall>& calls) {
  Impl& s = *impl_;
  s.text.append(text);
  common_chat_msg next;
  std::vector<common_chat_msg_diff> diffs;
  try {
    next = common_chat_parse(s.text, !final, s.plan->parser);
    next.set_tool_call_ids(s.ids, new_call_id);
    diffs = common_chat_msg_diff::compute_diffs(s.parsed, next);
  } catch (const std::exception&) {
    // A partial parse that a later token contradicts: wait for more text. At the end, what
    // cannot be parsed is content, as written.
    if (!final) return;
    next = s.parsed;
    next.content = s.text;
    diffs = {};
    ChatDelta d;
    d.content = s.text.substr(std::min(s.text.size(), s.parsed.content.size()));
    out.push_back(std::move(d));
  }
  for (const auto& d : diffs) {
    ChatDelta cd;
    cd.content = d.content_delta;
    cd.thinking = d.reasoning_content_delta;
    if (d.tool_call_index != std::string::npos) {
      const std::size_t i = d.tool_call_index;
      if (calls.size() <= i) calls.resize(i + 1);
      calls[i].name = next.tool_calls[i].name;
      calls[i].id = next.tool_calls[i].id;
      calls[i].arguments_json += d.tool_call_delta.arguments;
      cd.tool_call_index = static_cast<int>(i);
      cd.arguments_delta = d.tool_call_delta.arguments;
    }
    out.push_back(std::move(cd));
  }
  if (final) {  // the whole parse is the truth
    calls.resize(next.tool_calls.size());
    for (std::size_t i = 0; i < next.tool_calls.size(); ++i) {
      calls[i] = {next.tool_calls[i].id, next.tool_calls[i].name, next.tool_calls[i].arguments};
    }
  }
  s.parsed = std::move(next);
}

#else  // no common library: ChatML through llama.h, no tools

struct ChatPrompt::Plan {};
struct ChatTemplates::Impl {
  std::string tmpl;
};

ChatTemplates::ChatTemplates(const llama_model* model) : impl_(std::make_unique<Impl>()) {
  if (const char* t = llama_model_chat_template(model, nullptr)) impl_->tmpl = t;
  own_ = !impl_->tmpl.empty();
  warning_ = own_ ? "this build has no llama.cpp common library: the model's chat template is "
                    "applied only when llama.cpp knows it by its markers, otherwise ChatML"
                  : "the model carries no chat template (tokenizer.chat_template); its prompts "
                    "are formatted as ChatML, llama.cpp's default";
}

ChatTemplates::~ChatTemplates() = default;

bool ChatTemplates::tool_calls() const {
  return false;
}

bool ChatTemplates::thinking() const {
  return false;
}

bool ChatTemplates::apply(const Request& r, ChatPrompt& out, std::string& error) const {
  if (r.tools_json && r.tool_choice != "none") {
    error = "tools need llama.cpp's common library, which this build lacks";
    return false;
  }
  std::vector<llama_chat_message> msgs;
  for (const auto& m : r.messages) msgs.push_back({m.role.c_str(), m.content.c_str()});
  auto render = [&](const char* tmpl) -> std::string {
    std::string buf(4096, '\0');
    int n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(),
                                      static_cast<int32_t>(buf.size()));
    if (n > static_cast<int>(buf.size())) {
      buf.resize(static_cast<std::size_t>(n));
      n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(), n);
    }
    if (n < 0) return {};
    buf.resize(static_cast<std::size_t>(n));
    return buf;
  };
  if (own_) out.prompt = render(impl_->tmpl.c_str());
  if (out.prompt.empty()) out.prompt = render("chatml");
  if (out.prompt.empty()) error = "the chat template could not be applied to these messages";
  return error.empty();
}

struct ChatStream::Impl {};
ChatStream::ChatStream() : impl_(std::make_unique<Impl>()) {}
ChatStream::~ChatStream() = default;
std::unique_ptr<ChatStream> ChatStream::make(const llama_model*, const ChatPrompt&, const Options&,
                                             const std::vector<LogitBias>&, std::string& error) {
  error = "parsing tool calls needs llama.cpp's common library, which this build lacks";
  return nullptr;
}
int32_t ChatStream::sample(llama_context*, int) {
  return -1;
}
void ChatStream::push(std::string_view, bool, std::vector<ChatDelta>&, std::vector<ToolCall>&) {}

#endif

}  // namespace chimera::backends
