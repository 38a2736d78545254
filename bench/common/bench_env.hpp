// What every benchmark records about where and how it ran (METRICS.md: every stored result names
// the CPU and the exact command line).
#pragma once

#include <fstream>
#include <string>

namespace chimera::bench {

// The CPU's model name from /proc/cpuinfo, or "unknown".
inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// The command line as typed, arguments separated by single spaces.
inline std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) out += (i ? " " : "") + std::string(argv[i]);
  return out;
}

}  // namespace chimera::bench
