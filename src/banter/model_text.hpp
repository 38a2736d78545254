// A model's text conventions, for prompts the scene writes itself (private header): the chat
// template (the model's own, or ChatML when it has none that llama.cpp knows) and its tokenizer,
// from a vocabulary-only load of the GGUF file (no weights are read).
#pragma once

#include <memory>
#include <string>
#include <vector>

struct llama_model;

namespace chimera::banter::detail {

struct ChatMessage {
  std::string role;
  std::string content;
};

class ModelText {
 public:
  // Shared per file. Returns nullptr with `error` set when the file cannot be read. Call it
  // after the in-process backend for the file has been made (that initialises llama.cpp and its
  // logging).
  static std::shared_ptr<ModelText> load(const std::string& gguf, std::string& error);
  ~ModelText();
  ModelText(const ModelText&) = delete;
  ModelText& operator=(const ModelText&) = delete;

  // The prompt text for these messages; with `generation_prompt`, ending where the assistant's
  // answer begins. Empty when the template cannot format them.
  std::string format(const std::vector<ChatMessage>& messages, bool generation_prompt) const;
  // Tokens of `text` as the in-process engine tokenizes a prompt (special tokens parsed, BOS).
  int count_tokens(const std::string& text) const;

  explicit ModelText(llama_model* model);

 private:
  std::string apply(const char* tmpl, const std::vector<ChatMessage>& messages, bool add) const;
  llama_model* model_;
  std::string template_;
};

}  // namespace chimera::banter::detail
