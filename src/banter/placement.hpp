// Where a scene's actors run (private header): lanes, one per model file or pool, each with the
// backend that serves it and how many requests it takes at once.
#pragma once

#include "banter/model_text.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/banter/scene.hpp>

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace chimera::banter::detail {

struct Lane {
  Backend* backend = nullptr;
  bool inproc = false;
  std::shared_ptr<ModelText> text;
  std::string label;
  int limit = 0;
  std::array<int, 2> wrap = {8, 8};  // tokens the template adds around a user / assistant message
};

// Places actors on lanes while the scene is set up, then makes the lanes' backends. Not locked:
// it changes only during setup and close, when no request runs.
class ActorPlacement {
 public:
  ActorPlacement(const SceneConfig& cfg, const SceneOptions& opts) : cfg_(cfg), opts_(opts) {}

  // The lane of an actor with this placement and num_ctx; actors on the same model file or pool
  // share one. Throws std::invalid_argument naming `who` (an unknown pool, no tiny model).
  int place(const Placement& p, int num_ctx, const std::string& who);
  // Makes each lane's backend (loads in-process models, starts pools). Throws
  // std::invalid_argument with the reason.
  void open_backends(Runtime& rt);
  // Destroys the backends; every request must have ended.
  void close();

  std::vector<int> lane_limits() const;
  const Lane& lane(int i) const { return lanes_[std::size_t(i)]; }

 private:
  // A lane asked for by the actors placed so far.
  struct Want {
    std::string key;
    bool inproc = false;
    std::string path;
    const pool::PoolConfig* pool = nullptr;
    int actors = 0;
    int ctx = 0;
  };
  Want model_want(const Placement& p, const std::string& who) const;
  Want pool_want(const Placement& p, const std::string& who) const;
  Lane open_model_lane(const Want& w, Runtime& rt);
  Lane open_pool_lane(const Want& w, Runtime& rt);

  const SceneConfig& cfg_;
  const SceneOptions& opts_;
  std::vector<Want> wants_;
  std::vector<std::unique_ptr<Backend>> owned_;  // destroyed by close(), after every request ended
  std::vector<Lane> lanes_;
};

}  // namespace chimera::banter::detail
