// Where, when and from what a benchmark record was made, so that every published figure can be
// traced to the code, machine and model that produced it (bench/README.md, "Provenance").
//
// Construct one Provenance at the start of main(); it reads, at run time, the source tree's git
// commit, whether the tree is dirty and a hash of its diff, the machine, the load average, the
// time. stamp() returns the JSON object every record carries under "provenance", with the load
// average and time at the moment the record is written ("after"). bench/common/provenance.py
// writes the same object for the Python harnesses; scripts/figures.py reads it.
//
//   const chimera::bench::Provenance provenance(argc, argv);
//   provenance.set_model(model_path);     // optional: hashes the file (SHA-256)
//   record["provenance"] = provenance.stamp();
//
// Not thread-safe; call from the thread that writes records. Nothing here throws: a fact that
// cannot be read is recorded as "unknown" (or null) and says so.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#ifndef CHIMERA_SOURCE_DIR
#error "CHIMERA_SOURCE_DIR must name the source tree (bench/CMakeLists.txt defines it)"
#endif
#ifndef CHIMERA_CXX_FLAGS
#define CHIMERA_CXX_FLAGS "unknown"
#endif
#ifndef CHIMERA_BUILD_TYPE
#define CHIMERA_BUILD_TYPE "unknown"
#endif
#ifndef CHIMERA_LLAMA_COMMIT
#define CHIMERA_LLAMA_COMMIT "unknown"
#endif
#if defined(__clang__)
#define CHIMERA_COMPILER_NAME "clang " __clang_version__
#elif defined(__GNUC__)
#define CHIMERA_COMPILER_NAME "gcc " __VERSION__
#else
#define CHIMERA_COMPILER_NAME "unknown"
#endif

namespace chimera::bench {

namespace provenance_detail {

// Quotes `s` for /bin/sh inside single quotes.
inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The standard output of a shell command (stderr discarded), trailing newlines removed;
// nullopt when the command cannot be run or exits non-zero.
inline std::optional<std::string> shell_output(const std::string& command) {
  std::FILE* pipe = ::popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  if (::pclose(pipe) != 0) return std::nullopt;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// The first 64 hex digits printed by `sha256sum` over the command's output.
inline std::optional<std::string> sha256_of(const std::string& producer) {
  auto out = shell_output(producer + " | sha256sum");
  if (!out || out->size() < 64) return std::nullopt;
  return out->substr(0, 64);
}

inline std::string proc_value(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return {};
}

inline boost::json::value load_average() {
  std::ifstream in("/proc/loadavg");
  double one = 0, five = 0, fifteen = 0;
  if (!(in >> one >> five >> fifteen)) return nullptr;
  return boost::json::array{one, five, fifteen};
}

inline std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf.data();
}

}  // namespace provenance_detail

// The CPU's model name from /proc/cpuinfo, or "unknown".
inline std::string cpu_model() {
  const std::string name = provenance_detail::proc_value("/proc/cpuinfo", "model name");
  return name.empty() ? "unknown" : name;
}

// The widest vector extension the CPU reports ("avx512f", "avx2", "sse4_2"; "unknown" where
// /proc/cpuinfo lists none of them, as on other architectures). Two machines with one model name
// may differ in it (a virtual machine moved to another host), and ggml's kernels with it.
inline std::string cpu_vector() {
  const std::string flags = " " + provenance_detail::proc_value("/proc/cpuinfo", "flags") + " ";
  for (const char* f : {"avx512f", "avx2", "sse4_2"}) {
    if (flags.find(" " + std::string(f) + " ") != std::string::npos) return f;
  }
  return "unknown";
}

// The command line as typed, arguments separated by single spaces.
inline std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) out += (i ? " " : "") + std::string(argv[i]);
  return out;
}

class Provenance {
 public:
  // `source_dir`: the git tree the benchmark was built from (a test points it elsewhere).
  Provenance(int argc, char** argv, const std::string& source_dir = CHIMERA_SOURCE_DIR)
      : command_(command_line(argc, argv)) {
    using namespace provenance_detail;
    started_ = utc_now();
    load_before_ = load_average();
    const std::string git = "git -C " + shell_quote(source_dir);
    commit_ = shell_output(git + " rev-parse HEAD").value_or("unknown");
    // Dirty: any tracked file differs from HEAD, or an untracked, non-ignored file exists
    // (a new source file under a CONFIGURE_DEPENDS glob is built too).
    if (auto status = shell_output(git + " status --porcelain")) {
      dirty_ = !status->empty();
      if (dirty_) {
        for (std::size_t pos = 0; pos < status->size();) {
          const auto end = status->find('\n', pos);
          if (status->compare(pos, 2, "??") == 0) ++untracked_;
          pos = end == std::string::npos ? status->size() : end + 1;
        }
        diff_sha256_ = sha256_of(git + " diff HEAD --binary");
      }
    }
  }

  // The model file the figures come from: its path, size and SHA-256 (whole file).
  void set_model(const std::string& path) {
    model_path_ = path;
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    model_bytes_ = ec ? -1 : static_cast<std::int64_t>(size);
    model_sha256_ = provenance_detail::sha256_of("cat " + provenance_detail::shell_quote(path));
  }

  // The inference server the figures come from, as its command line or version string.
  void set_server(std::string server) { server_ = std::move(server); }

  const std::string& commit() const { return commit_; }
  bool dirty() const { return dirty_; }

  // The object to store under "provenance" in a record written now.
  boost::json::object stamp() const {
    using namespace provenance_detail;
    boost::json::object git{{"commit", commit_}, {"dirty", dirty_}};
    if (dirty_) {
      git["diff_sha256"] = diff_sha256_ ? boost::json::value(*diff_sha256_) : nullptr;
      git["untracked_files"] = untracked_;
    }
    const std::string mem_kb = proc_value("/proc/meminfo", "MemTotal");
    boost::json::object machine{
        {"cpu", cpu_model()},
        {"vector", cpu_vector()},
        {"cores", std::thread::hardware_concurrency()},
        {"memory_bytes", mem_kb.empty() ? boost::json::value(nullptr)
                                        : boost::json::value(std::stoll(mem_kb) * 1024)}};
    boost::json::object build{{"compiler", CHIMERA_COMPILER_NAME},
                              {"build_type", CHIMERA_BUILD_TYPE},
                              {"flags", CHIMERA_CXX_FLAGS},
                              {"llama_cpp_commit", CHIMERA_LLAMA_COMMIT}};
    boost::json::object out{{"schema", 1},
                            {"git", std::move(git)},
                            {"command", command_},
                            {"machine", std::move(machine)},
                            {"loadavg_before", load_before_},
                            {"loadavg_after", load_average()},
                            {"build", std::move(build)},
                            {"started", started_},
                            {"written", utc_now()}};
    if (!model_path_.empty()) {
      out["model"] = boost::json::object{
          {"path", model_path_},
          {"bytes", model_bytes_},
          {"hash", model_sha256_ ? boost::json::value(*model_sha256_) : nullptr},
          {"hash_algorithm", "sha256 (whole file)"}};
    }
    if (!server_.empty()) out["server"] = server_;
    return out;
  }

 private:
  std::string command_;
  std::string started_;
  boost::json::value load_before_;
  std::string commit_;
  bool dirty_ = false;
  std::int64_t untracked_ = 0;
  std::optional<std::string> diff_sha256_;
  std::string model_path_;
  std::int64_t model_bytes_ = -1;
  std::optional<std::string> model_sha256_;
  std::string server_;
};

}  // namespace chimera::bench
