// Per-API-key limits (private header): which key a request carries, and whether it may start.
#pragma once

#include <chimera/serve/server.hpp>

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::serve {

class KeyLimits {
 public:
  explicit KeyLimits(std::vector<ApiKey> keys);
  bool enabled() const { return !keys_.empty(); }

  struct Verdict {
    int status = 0;  // 0: admitted (release(index) when the request ends); 401 or 429
    std::string message;
    int retry_after_s = 0;
    int index = -1;
  };
  // Checks the request's Authorization header value. Thread-safe.
  Verdict admit(std::string_view authorization);
  void release(int index);

 private:
  struct State {
    int in_flight = 0;
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
  };
  std::vector<ApiKey> keys_;
  std::mutex mu_;
  std::vector<State> state_;
};

}  // namespace chimera::serve
