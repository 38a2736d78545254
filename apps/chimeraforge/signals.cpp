#include "signals.hpp"

#include <pthread.h>

#include <cerrno>
#include <ctime>

namespace chimera::cli {

namespace {
std::atomic<bool> g_stop_requested{false};
extern "C" void on_stop_signal(int) {
  g_stop_requested.store(true);
}
}  // namespace

StopFlag::StopFlag(std::initializer_list<int> signals) {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (const int sig : signals) {
    if (count_ == static_cast<int>(sizeof(saved_) / sizeof(saved_[0]))) break;
    Saved& s = saved_[count_];
    s.signal = sig;
    if (::sigaction(sig, &action, &s.action) == 0) ++count_;
  }
}

StopFlag::~StopFlag() {
  for (int i = count_ - 1; i >= 0; --i) ::sigaction(saved_[i].signal, &saved_[i].action, nullptr);
}

const std::atomic<bool>& StopFlag::flag() {
  return g_stop_requested;
}

StopSignals::StopSignals(std::initializer_list<int> signals) {
  sigemptyset(&set_);
  for (const int sig : signals) sigaddset(&set_, sig);
  ::pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

int StopSignals::wait(int ms) const {
  if (ms < 0) {
    int sig = 0;
    return ::sigwait(&set_, &sig) == 0 ? sig : 0;
  }
  timespec ts{};
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
  const int sig = ::sigtimedwait(&set_, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a signal";
  }
}

}  // namespace chimera::cli
