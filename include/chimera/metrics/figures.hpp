// Per-request figures as people and programs read them (METRICS.md names, one definition).
//
// figures_line() is the one-line summary the CLI prints after a stream; completion_json() is
// the machine-readable form: the METRICS.md figure names as keys, times in milliseconds, and
// for each figure its source ("measured", "server" or "derived") under "sources".
#pragma once

#include <chimera/core/request.hpp>
#include <chimera/core/stats.hpp>

#include <optional>
#include <string>
#include <vector>

namespace chimera::metrics {

// Nearest-rank percentile (p in [0, 100]): the smallest value with at least p% of the values at
// or below it, so p50 of four values is the second, never a mean of two. 0 when empty. Copies
// and sorts. The same definition as bench/compare/compare.py's percentile(); the known answers
// both must give are in tests/metrics/known_answers.json.
double percentile(std::vector<double> values, double p);

// Mean and sample standard deviation (n - 1) of repeated measurements (chimera/core/stats.hpp).
using chimera::mean_sd;
using chimera::MeanSd;

std::string figures_line(const Completion& c);

// One JSON object: text, thinking, tool_calls, finish_reason, model, endpoint, backend, error,
// and the figures. `backend` is the backend's name ("ollama", "openai", ...).
std::string completion_json(const Completion& c, const std::string& backend);

}  // namespace chimera::metrics
