// Where a scene's actors run: see placement.hpp.
#include "banter/placement.hpp"

#include <chimera/model/synthetic_model.hpp>
#include <chimera/pool/pool.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

namespace chimera::banter::detail {

int ActorPlacement::place(const Placement& p, int num_ctx, const std::string& who) {
  Want w = !opts_.model_override.empty() || p.pool.empty() ? model_want(p, who) : pool_want(p, who);
  for (std::size_t i = 0; i < wants_.size(); ++i) {
    if (wants_[i].key == w.key) {
      ++wants_[i].actors;
      wants_[i].ctx = std::max(wants_[i].ctx, num_ctx);
      return static_cast<int>(i);
    }
  }
  w.actors = 1;
  w.ctx = num_ctx;
  wants_.push_back(w);
  return static_cast<int>(wants_.size()) - 1;
}

// Lanes are keyed by model file or pool name.
ActorPlacement::Want ActorPlacement::model_want(const Placement& p, const std::string& who) const {
  Want w;
  std::string model = !opts_.model_override.empty() ? opts_.model_override : p.model;
  const bool from_scene = opts_.model_override.empty() && !p.model.empty();
  if (model.empty()) model = opts_.default_model;
  if (model.empty() || model == "tiny") {
    bool created = false;
    std::string error;
    const auto path = model::cached_tiny_model(created, error);
    if (path.empty()) throw std::invalid_argument(fmt::format("{}: {}", who, error));
    model = path.string();
  } else if (from_scene && std::filesystem::path(model).is_relative() &&
             !cfg_.base_dir.empty()) {  // relative to the scene file
    model = (cfg_.base_dir / model).string();
  }
  std::error_code ec;
  const auto canon = std::filesystem::weakly_canonical(model, ec);
  w.inproc = true;
  w.path = ec ? model : canon.string();
  w.key = "model:" + w.path;
  return w;
}

ActorPlacement::Want ActorPlacement::pool_want(const Placement& p, const std::string& who) const {
  Want w;
  for (const auto* list : {&cfg_.pools, &opts_.pools}) {
    for (const auto& pc : *list) {
      if (pc.name == p.pool && w.pool == nullptr) w.pool = &pc;
    }
  }
  if (w.pool == nullptr) {
    std::vector<std::string> names;
    for (const auto& pc : cfg_.pools) names.push_back(pc.name);
    for (const auto& pc : opts_.pools) names.push_back(pc.name);
    throw std::invalid_argument(fmt::format(
        "{} runs on pool '{}', which neither the scene nor the engine defines "
        "(pools: {})",
        who, p.pool, names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
  }
  w.key = "pool:" + p.pool;
  return w;
}

void ActorPlacement::open_backends(Runtime& rt) {
  for (const auto& w : wants_) {
    Lane l = w.inproc ? open_model_lane(w, rt) : open_pool_lane(w, rt);
    if (cfg_.max_concurrent > 0) l.limit = cfg_.max_concurrent;
    l.backend = owned_.back().get();
    lanes_.push_back(std::move(l));
  }
  // Pools' fallbacks (`fallback = "other"`): a fallback no actor runs on directly is opened
  // too (and its own fallback, down the chain), then each pool is linked to its fallback.
  std::vector<pool::Pool*> pools;
  for (auto& b : owned_) {
    if (auto* p = dynamic_cast<pool::Pool*>(b.get())) pools.push_back(p);
  }
  for (std::size_t i = 0; i < pools.size(); ++i) {
    const std::string fallback = pools[i]->config().fallback;
    if (fallback.empty() || std::any_of(pools.begin(), pools.end(), [&](const pool::Pool* p) {
          return p->config().name == fallback;
        })) {
      continue;
    }
    const pool::PoolConfig* pc = nullptr;
    for (const auto* list : {&cfg_.pools, &opts_.pools}) {
      for (const auto& c : *list) {
        if (c.name == fallback && pc == nullptr) pc = &c;
      }
    }
    if (pc == nullptr) {
      throw std::invalid_argument(
          fmt::format("pool '{}': its fallback '{}' is neither a pool of the scene nor of the "
                      "engine",
                      pools[i]->config().name, fallback));
    }
    owned_.push_back(std::make_unique<pool::Pool>(*pc, rt));
    pools.push_back(static_cast<pool::Pool*>(owned_.back().get()));
  }
  pool::link_fallbacks(pools);  // throws naming a loop
}

Lane ActorPlacement::open_model_lane(const Want& w, Runtime& rt) {
  Lane l;
  EndpointConfig ec;
  ec.kind = BackendKind::llama;
  ec.url = w.path;
  ec.llama.parallel = w.actors + 1;  // every session stays resident, plus one spare
  ec.llama.ctx_per_seq = std::max(w.ctx, 64);
  ec.llama.threads = opts_.threads;
  ec.llama.gpu_layers = opts_.gpu_layers;
  ec.llama.flash_attention = opts_.flash_attention;
  owned_.push_back(make_backend(ec, rt));  // throws std::invalid_argument with the reason
  std::string error;
  l.text = ModelText::load(w.path, error);
  if (!l.text) throw std::invalid_argument(error);
  l.inproc = true;
  l.label = w.path;
  // What the template adds around one message, measured on this model's template.
  const std::vector<ChatMessage> base = {{"system", "s"}};
  const int n0 = l.text->count_tokens(l.text->format(base, true));
  const int nx = l.text->count_tokens("x") - 1;
  for (int k = 0; k < 2; ++k) {
    auto msgs = base;
    msgs.push_back({k == 0 ? "user" : "assistant", "x"});
    l.wrap[std::size_t(k)] =
        std::max(0, l.text->count_tokens(l.text->format(msgs, true)) - n0 - nx) + 2;
  }
  l.limit = ec.llama.parallel;
  return l;
}

Lane ActorPlacement::open_pool_lane(const Want& w, Runtime& rt) {
  Lane l;
  pool::PoolConfig pc = *w.pool;
  if (pc.hedge_after_ms == 0 && pc.endpoints.size() >= 2) {
    if (cfg_.hedge_after_ms < 0) pc.hedge_after_ms = std::max<int64_t>(1, cfg_.budget_ms / 2);
    if (cfg_.hedge_after_ms > 0) pc.hedge_after_ms = cfg_.hedge_after_ms;
  }
  int limit = 0;
  bool unlimited = false;
  for (const auto& e : pc.endpoints) {
    if (e.max_concurrency <= 0) unlimited = true;
    limit += e.max_concurrency;
  }
  owned_.push_back(std::make_unique<pool::Pool>(pc, rt));
  l.label = "pool:" + pc.name;
  l.limit = unlimited ? 0 : limit;
  return l;
}

void ActorPlacement::close() {
  for (auto& b : owned_) {  // none may hand a request to a pool destroyed before it
    if (auto* p = dynamic_cast<pool::Pool*>(b.get())) p->set_fallback(nullptr);
  }
  owned_.clear();  // here, on the owner's thread
  for (auto& l : lanes_) l.backend = nullptr;
}

std::vector<int> ActorPlacement::lane_limits() const {
  std::vector<int> limits;
  for (const auto& l : lanes_) limits.push_back(l.limit);
  return limits;
}

}  // namespace chimera::banter::detail
