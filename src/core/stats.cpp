#include <chimera/core/stats.hpp>

#include <cmath>
#include <numeric>

namespace chimera {

MeanSd mean_sd(const std::vector<double>& values) {
  MeanSd out;
  if (values.empty()) return out;
  const double n = static_cast<double>(values.size());
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  out.mean = mean;
  if (values.size() > 1) {
    double squares = 0;
    for (double v : values) squares += (v - mean) * (v - mean);
    out.sd = std::sqrt(squares / (n - 1));
  }
  return out;
}

}  // namespace chimera
