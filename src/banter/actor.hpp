// One actor of a scene (private header): a character or the director, with its prompt and the
// state of its session. Guarded by the scene mutex once the scene is set up.
#pragma once

#include <chimera/banter/schedule.hpp>
#include <chimera/core/request.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace chimera::banter::detail {

struct Actor {
  std::string name;
  bool director = false;
  int lane = 0;
  Options options;
  std::string system;
  std::string session;
  int sys_tokens = 0;            // its prompt without any line
  std::size_t window_start = 0;  // first transcript entry in its prompt
  std::size_t seen = 0;          // transcript entries its cache holds
  bool suspect = false;          // its cache must be rebuilt (a prefill was cut short)
  int64_t last_assigned = -1;    // for reply-to-last: when it was last given a line
  Scheduler::Id catch_up = 0;    // a queued catch-up, 0: none
};

}  // namespace chimera::banter::detail
