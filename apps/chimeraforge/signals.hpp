// Ctrl-C (SIGINT) and SIGTERM for the CLI's commands, in the two forms the commands need:
//
//   StopFlag       while one is alive, the signals set a flag that the command polls (stop
//                  starting requests, cancel a stream) instead of ending the process; the
//                  previous handlers come back when it goes. The flag stays set afterwards, so
//                  the command can still tell that it was interrupted.
//   StopSignals    blocks the signals in this thread and in every thread started after it (they
//                  inherit the mask), so that only wait() receives them: for commands that run
//                  servers and stop them in order.
#pragma once

#include <signal.h>

#include <atomic>
#include <initializer_list>

namespace chimera::cli {

class StopFlag {
 public:
  explicit StopFlag(std::initializer_list<int> signals = {SIGINT});
  ~StopFlag();
  StopFlag(const StopFlag&) = delete;
  StopFlag& operator=(const StopFlag&) = delete;

  // Whether one of the signals arrived (since the process started).
  static bool raised() { return flag().load(); }
  // The flag itself, for code that polls a `const std::atomic<bool>*`.
  static const std::atomic<bool>& flag();

 private:
  struct Saved {
    int signal;
    struct sigaction action;
  };
  Saved saved_[4];
  int count_ = 0;
};

class StopSignals {
 public:
  explicit StopSignals(std::initializer_list<int> signals = {SIGINT, SIGTERM});
  // The signal that arrived, or 0 when none did within `ms` milliseconds (ms < 0: no limit).
  int wait(int ms = -1) const;

 private:
  sigset_t set_{};
};

// "SIGINT", "SIGTERM", "SIGHUP", else "a signal".
const char* signal_name(int sig);

}  // namespace chimera::cli
