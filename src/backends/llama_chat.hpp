// Chat through the model's own template, in-process (private header): llama.cpp's common chat
// code renders the messages and tools with the GGUF's Jinja template (`tokenizer.chat_template`),
// says how the model writes tool calls and reasoning (the grammar that holds the output to them,
// when asked), and parses the generated text back into content, reasoning and tool calls, as
// llama-server does with --jinja.
//
// A model without a template is prompted as ChatML (llama.cpp's default), and every chat
// completion says so in its warnings. Tools asked of a template that cannot show them, or of a
// build without llama.cpp's common library, are an error.
//
// Thread safety: ChatTemplates is read-only after construction; a ChatStream belongs to one
// request.
#pragma once

#include <chimera/core/request.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct llama_model;
struct llama_context;

namespace chimera::backends {

// What the template made of one request.
struct ChatPrompt {
  std::string prompt;
  std::vector<std::string> stops;  // stop strings the template's format adds
  bool parse = false;              // the output is parsed (tools or reasoning may appear in it)
  struct Plan;                     // the parser and the sampler's grammar (opaque)
  std::shared_ptr<const Plan> plan;
};

class ChatTemplates {
 public:
  explicit ChatTemplates(const llama_model* model);
  ~ChatTemplates();
  ChatTemplates(const ChatTemplates&) = delete;
  ChatTemplates& operator=(const ChatTemplates&) = delete;

  // The model carries a template of its own.
  bool own() const { return own_; }
  // The template shows tools to the model and its tool calls are parsed (a request may carry
  // tools).
  bool tool_calls() const;
  // The template can turn the model's reasoning on and off (a request's `think`).
  bool thinking() const;
  // "" or the warning every chat completion carries (no template: the stated default).
  const std::string& warning() const { return warning_; }
  // Renders the request's messages (and tools) into a prompt. False, with `error`, when the
  // template cannot take them (tools asked of a template without tool calls, bad tool JSON).
  bool apply(const Request& request, ChatPrompt& out, std::string& error) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool own_ = false;
  std::string warning_;
};

// One piece of parsed output, ready for the caller.
struct ChatDelta {
  std::string content;
  std::string thinking;
  int tool_call_index = -1;  // >= 0: a tool call grew
  std::string arguments_delta;
};

// Samples one request's tokens under the template's grammar (tool calls, when asked), and parses
// its text as it grows.
class ChatStream {
 public:
  // Returns nullptr, with `error`, when the grammar cannot be built. `sampling` gives the
  // request's options (temperature, top_k, ...), `bias` its logit biases (token ids checked).
  static std::unique_ptr<ChatStream> make(const llama_model* model, const ChatPrompt& prompt,
                                          const Options& sampling,
                                          const std::vector<LogitBias>& bias, std::string& error);
  ~ChatStream();
  ChatStream(const ChatStream&) = delete;
  ChatStream& operator=(const ChatStream&) = delete;

  // The k of the top-k whose candidates the draws take from top_k_candidates, or 0 where they
  // take llama.cpp's common sampler over the whole vocabulary.
  int leading_top_k() const;
  // Samples from the logits at `idx` of the last decode (`logits`, `n_vocab` of them, already
  // read from the context) and accepts the token.
  int32_t sample(llama_context* ctx, int idx, const float* logits, int n_vocab);
  // Adds generated text (`final`: the end of the output) and appends what it changed to `out`;
  // `calls` holds the tool calls as parsed so far (ids given here when the model wrote none).
  void push(std::string_view text, bool final, std::vector<ChatDelta>& out,
            std::vector<ToolCall>& calls);

 private:
  ChatStream();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chimera::backends
