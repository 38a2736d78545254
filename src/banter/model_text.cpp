#include "banter/model_text.hpp"

#include <llama.h>

#include <map>
#include <mutex>

namespace chimera::banter::detail {

std::shared_ptr<ModelText> ModelText::load(const std::string& gguf, std::string& error) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<ModelText>> cache;
  std::lock_guard lock(mu);
  if (auto t = cache[gguf].lock()) return t;
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  llama_model* model = llama_model_load_from_file(gguf.c_str(), mp);
  if (model == nullptr) {
    error = "cannot read the vocabulary and chat template of '" + gguf + "'";
    return nullptr;
  }
  auto t = std::make_shared<ModelText>(model);
  cache[gguf] = t;
  return t;
}

ModelText::ModelText(llama_model* model) : model_(model) {
  if (const char* t = llama_model_chat_template(model_, nullptr)) template_ = t;
}

ModelText::~ModelText() {
  llama_model_free(model_);
}

std::string ModelText::apply(const char* tmpl, const std::vector<ChatMessage>& messages,
                             bool add) const {
  std::vector<llama_chat_message> msgs;
  msgs.reserve(messages.size());
  for (const auto& m : messages) msgs.push_back({m.role.c_str(), m.content.c_str()});
  std::string buf(4096, '\0');
  int n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add, buf.data(),
                                    static_cast<int32_t>(buf.size()));
  if (n > static_cast<int>(buf.size())) {
    buf.resize(static_cast<std::size_t>(n));
    n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add, buf.data(), n);
  }
  if (n < 0) return {};
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

std::string ModelText::format(const std::vector<ChatMessage>& messages,
                              bool generation_prompt) const {
  // As the in-process engine formats a chat: the model's template, else ChatML.
  std::string out;
  if (!template_.empty()) out = apply(template_.c_str(), messages, generation_prompt);
  if (out.empty()) out = apply("chatml", messages, generation_prompt);
  return out;
}

int ModelText::count_tokens(const std::string& text) const {
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  const int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), nullptr, 0,
                               /*add_special=*/true, /*parse_special=*/true);
  return n < 0 ? -n : n;
}

}  // namespace chimera::banter::detail
