// The open-file limit for commands that hold many sockets at once (multi's agents, serve's
// streams): one copy of the raise, each command saying what the limit means for it.
#pragma once

#include <sys/resource.h>

namespace chimera::cli {

// Lifts the soft limit on open files to the hard one. Returns the limit in force afterwards
// (0 when unknown).
inline rlim_t raise_open_files() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur;
}

}  // namespace chimera::cli
