// serve's /metrics (private header): Prometheus counters, gauges and histograms kept with
// prometheus-cpp and written in its text exposition format.
#pragma once

#include <chimera/core/request.hpp>
#include <chimera/serve/server.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::serve {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One HTTP request answered: its path as routed ("/v1/chat/completions", or "other") and
  // status code.
  void http_request(std::string_view path, int status);
  // One generation request ended (any outcome), on pool `pool`.
  void generation(const std::string& pool, const Completion& c, bool client_gone);
  void stream_began();
  void stream_ended();
  // The exposition text, with the pools' endpoints as they stand now.
  std::string text(const std::vector<Route>& routes) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chimera::serve
