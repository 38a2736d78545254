// Mean and standard deviation of repeated measurements: one definition for the figures, the
// experiment analysis and the reports.
#pragma once

#include <optional>
#include <vector>

namespace chimera {

// Mean and sample standard deviation (n - 1) of repeated measurements; sd is empty with fewer
// than two values, mean with none.
struct MeanSd {
  std::optional<double> mean;
  std::optional<double> sd;
};
MeanSd mean_sd(const std::vector<double>& values);

}  // namespace chimera
