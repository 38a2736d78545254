// The in-process backend (private header): a Backend over a shared LlamaEngine.
#pragma once

#include "backends/llama_engine.hpp"

#include <chimera/backends/backend.hpp>

namespace chimera::backends {

class LlamaBackend final : public Backend {
 public:
  explicit LlamaBackend(const EndpointConfig& config)
      : engine_(LlamaEngine::shared(config.url, config.llama)), name_(config.url) {}

  BackendKind kind() const override { return BackendKind::llama; }
  const std::string& endpoint() const override { return name_; }
  std::shared_ptr<RequestHandle> start(Request request, TokenCallback on_token,
                                       DoneCallback on_done) override {
    return engine_->submit(std::move(request), std::move(on_token), std::move(on_done));
  }
  EndpointInfo check() override {
    EndpointInfo info;
    info.url = name_;
    info.healthy = true;
    info.kind = BackendKind::llama;
    info.server = "in-process llama.cpp";
    info.version = "0.4.0 (80fb11a)";
    info.models = {engine_->model_path()};
    info.detail = engine_->describe();
    return info;
  }
  void drop_session(const std::string& session) override { engine_->drop_session(session); }
  std::optional<EngineLoad> engine_load() const override { return engine_->load(); }
  std::optional<ModelFacts> model_facts() const override { return engine_->facts(); }

  LlamaEngine& engine() { return *engine_; }

 private:
  std::shared_ptr<LlamaEngine> engine_;
  std::string name_;
};

}  // namespace chimera::backends
