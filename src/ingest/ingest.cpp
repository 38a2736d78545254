// The scan (a parallel directory walk) and the parallel parse, merged in path order so the
// result does not depend on the thread count.
#include "ingest/internal.hpp"

#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_set>

namespace chimera::ingest {

namespace fs = std::filesystem;

IngestResult::IngestResult() : storage_(std::make_unique<detail::Storage>()) {}
IngestResult::~IngestResult() = default;
IngestResult::IngestResult(IngestResult&&) noexcept = default;
IngestResult& IngestResult::operator=(IngestResult&&) noexcept = default;

detail::Storage& IngestResult::storage() {
  if (!storage_) storage_ = std::make_unique<detail::Storage>();
  return *storage_;
}

std::size_t IngestResult::file_count(FileType type) const {
  return static_cast<std::size_t>(
      std::count_if(files.begin(), files.end(), [&](const FileInfo& f) { return f.type == type; }));
}

std::uint64_t IngestResult::file_bytes(FileType type) const {
  std::uint64_t n = 0;
  for (const auto& f : files)
    if (f.type == type) n += f.bytes;
  return n;
}

namespace {

bool type_of_name(std::string_view name, FileType* type) {
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  auto ext = name.substr(dot + 1);
  if (ext.size() > 8) return false;
  char lower[9] = {};
  for (std::size_t i = 0; i < ext.size(); ++i)
    lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(ext[i])));
  std::string_view l(lower, ext.size());
  FileType t;
  if (l == "csv") {
    t = FileType::csv;
  } else if (l == "json") {
    t = FileType::json;
  } else if (l == "md" || l == "markdown") {
    t = FileType::markdown;
  } else if (l == "txt") {
    t = FileType::text;
  } else {
    return false;
  }
  if (type != nullptr) *type = t;
  return true;
}

}  // namespace

bool file_type_of(const fs::path& path, FileType* type) {
  return type_of_name(path.filename().string(), type);
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

unsigned thread_count(const IngestOptions& o) {
  unsigned n = o.threads != 0 ? o.threads : std::thread::hardware_concurrency();
  return std::max(1u, n);
}

// Runs fn(worker_index) on n threads (the caller's thread is one of them).
template <class Fn>
void run_on(unsigned n, Fn&& fn) {
  if (n <= 1) {
    fn(0u);
    return;
  }
  std::vector<std::thread> threads;
  threads.reserve(n - 1);
  for (unsigned i = 1; i < n; ++i) threads.emplace_back([&fn, i] { fn(i); });
  fn(0u);
  for (auto& t : threads) t.join();
}

struct Found {
  std::string path;
  std::string relative;
  // The canonical path: the folder's (an element of the scan's set of walked folders) and the
  // name, or, for a file reached through a link or given as a root, the whole path here.
  const std::string* dir_canonical = nullptr;
  std::string canonical;
  FileType type = FileType::text;
  std::uint64_t bytes = 0;
  int dir_fd = -1;            // its folder, open, or -1: opened by `path`
  std::uint32_t name_at = 0;  // where the name starts in `path`
};

// ---- scan ----------------------------------------------------------------------------------

class Scanner {
 public:
  Scanner(const IngestOptions& options, unsigned threads) : options_(options), threads_(threads) {}

  void add_root(const fs::path& root) {
    std::error_code ec;
    auto st = fs::status(root, ec);
    if (ec || !fs::exists(st)) {
      errors_.push_back(FileError{root.string(), 0,
                                  fmt::format("cannot read {}: {}; check the path", root.string(),
                                              ec ? ec.message() : "no such file or directory"),
                                  true});
      return;
    }
    if (fs::is_directory(st)) {
      auto canonical = fs::canonical(root, ec);
      if (ec) canonical = fs::absolute(root);
      auto [it, fresh] = visited_.insert(canonical.string());
      if (!fresh) return;  // the same folder twice
      Dir d;
      d.path = root;
      d.canonical = &*it;
      queue_.push_back(std::move(d));
      return;
    }
    FileType type;
    if (!fs::is_regular_file(st) || !file_type_of(root, &type)) {
      errors_.push_back(FileError{
          root.string(), 0, "not a folder or a .csv, .json, .md, .markdown or .txt file", true});
      return;
    }
    Found f;
    f.path = root.string();
    f.relative = root.filename().string();
    f.canonical = fs::canonical(root, ec).string();
    if (ec) f.canonical = f.path;
    f.type = type;
    f.bytes = fs::file_size(root, ec);
    files_.push_back(std::move(f));
    linked_files_ = true;
  }

  ~Scanner() {
    for (int fd : kept_fds_) ::close(fd);
  }
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  // Walks everything queued. Real folders first, all of them, in parallel; then the folders
  // reached only through links, in sorted order, so that which path a linked folder is
  // listed under never depends on thread timing.
  void walk() {
    while (!queue_.empty()) {
      busy_ = 0;
      run_on(std::min<unsigned>(threads_,
                                static_cast<unsigned>(std::max<std::size_t>(1, queue_.size() * 4))),
             [this](unsigned) { worker(); });
      std::sort(links_.begin(), links_.end(),
                [](const Dir& a, const Dir& b) { return fs::path(a.path) < fs::path(b.path); });
      for (auto& d : links_) {
        auto [it, fresh] = visited_.insert(std::move(d.canonical_text));
        if (fresh) {
          d.canonical = &*it;
          queue_.push_back(std::move(d));
        } else {
          ++stats_.symlink_cycles;
        }
      }
      links_.clear();
    }
  }

  // Whether two paths found may be one file: only through a link to a file or a file given as
  // a root (each real folder is listed once, so its files are distinct).
  bool may_have_duplicates() const { return linked_files_; }

  std::vector<Found>& files() { return files_; }
  std::vector<FileError>& errors() { return errors_; }
  ScanStats& stats() { return stats_; }

 private:
  struct Dir {
    std::string path;
    const std::string* canonical = nullptr;  // in visited_, once queued
    std::string canonical_text;              // before that
    std::string relative;                    // below the root, with a trailing '/' unless empty
    int parent_fd = -1;                      // the parent folder, kept open, or -1
    std::uint32_t name_at = 0;               // where the name starts in `path`
  };

  void worker() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return !queue_.empty() || busy_ == 0; });
      if (queue_.empty()) {
        cv_.notify_all();
        return;
      }
      Dir dir = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      lk.unlock();

      std::vector<Found> files;
      std::vector<FileError> errors;
      std::vector<Dir> subdirs, links;
      std::size_t skipped = 0;
      list(dir, files, errors, subdirs, links, skipped);

      lk.lock();
      ++stats_.directories;
      stats_.skipped_files += skipped;
      for (auto& f : files) {
        if (!f.canonical.empty()) linked_files_ = true;
        files_.push_back(std::move(f));
      }
      for (auto& e : errors) errors_.push_back(std::move(e));
      for (auto& l : links) links_.push_back(std::move(l));
      for (auto& d : subdirs) {
        auto [it, fresh] = visited_.insert(std::move(d.canonical_text));
        if (fresh) {
          d.canonical = &*it;
          queue_.push_back(std::move(d));
        } else {
          ++stats_.symlink_cycles;
        }
      }
      --busy_;
      cv_.notify_all();
    }
  }

  // Opens a folder: relative to its parent's descriptor when that is kept open (one path
  // component to look up rather than the whole path), else by its path.
  static int open_dir(const Dir& dir) {
    const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    if (dir.parent_fd >= 0) return ::openat(dir.parent_fd, dir.path.c_str() + dir.name_at, flags);
    return ::open(dir.path.c_str(), flags);
  }

  // Keeps a listed folder's descriptor for opening its files and subfolders relative to it,
  // within a budget of a quarter of the process's descriptor limit (at most 4096); beyond it,
  // files and subfolders are opened by their paths.
  bool keep_fd(int fd) {
    std::lock_guard lk(fd_mu_);
    if (kept_fds_.size() >= fd_budget_) return false;
    kept_fds_.push_back(fd);
    return true;
  }

  static std::size_t fd_budget() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur == RLIM_INFINITY) return 4096;
    return std::min<std::size_t>(4096, static_cast<std::size_t>(rl.rlim_cur) / 4);
  }

  // POSIX rather than std::filesystem: getdents64's d_type and fstatat relative to the open
  // folder save a path walk and a stat per entry (the walk was a third of the time on 10k
  // files); getdents64 on the folder's own descriptor rather than opendir/readdir, which would
  // add a stat, an allocation and, to keep the descriptor, a dup per folder.
  void list(const Dir& dir, std::vector<Found>& files, std::vector<FileError>& errors,
            std::vector<Dir>& subdirs, std::vector<Dir>& links, std::size_t& skipped) {
    const int dfd = open_dir(dir);
    if (dfd < 0) {
      errors.push_back(FileError{
          dir.path, 0, fmt::format("cannot list folder: {}", std::strerror(errno)), true});
      return;
    }
    const std::string& base = dir.path;
    const std::string& canonical_base = *dir.canonical;
    auto join = [](const std::string& a, std::string_view name) {
      std::string out;
      out.reserve(a.size() + 1 + name.size());
      out = a;
      if (!out.empty() && out.back() != '/') out += '/';
      out += name;
      return out;
    };
    const std::size_t base_len = base.empty() || base.back() == '/' ? base.size() : base.size() + 1;
    std::vector<Found> here;
    // One listing buffer per thread, made on first use: a thread_local array would be 32 KiB of
    // static TLS that every thread of every program linking the engine zeroes at its start.
    constexpr std::size_t kListBytes = 32768;
    static thread_local std::unique_ptr<std::uint64_t[]> list_buffer;
    if (!list_buffer) list_buffer = std::make_unique_for_overwrite<std::uint64_t[]>(kListBytes / 8);
    char* buf = reinterpret_cast<char*>(list_buffer.get());
    for (;;) {
      const ssize_t n = ::getdents64(dfd, buf, kListBytes);
      if (n < 0) {
        if (errno == EINTR) continue;
        errors.push_back(
            FileError{base, 0, fmt::format("cannot list folder: {}", std::strerror(errno)), true});
        break;
      }
      if (n == 0) break;
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const dirent64*>(buf + at);
        at += e->d_reclen;
        std::string_view name(e->d_name);
        if (name == "." || name == "..") continue;
        unsigned char type = e->d_type;
        bool is_link = type == DT_LNK;
        struct stat st {};
        bool have_stat = false;
        if (type == DT_UNKNOWN) {
          if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
          have_stat = true;
          is_link = S_ISLNK(st.st_mode);
          type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (is_link) {
          if (!options_.follow_symlinks) {
            ++skipped;
            continue;
          }
          if (::fstatat(dfd, e->d_name, &st, 0) != 0) {
            errors.push_back(FileError{join(base, name), 0,
                                       "broken symbolic link: its target does not exist", true});
            continue;
          }
          have_stat = true;
          type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (type == DT_DIR) {
          Dir sub;
          sub.path = join(base, name);
          sub.name_at = static_cast<std::uint32_t>(base_len);
          sub.relative = dir.relative + std::string(name) + "/";
          if (is_link) {
            std::error_code ec;
            auto canonical = fs::canonical(sub.path, ec);
            if (ec) {
              errors.push_back(FileError{
                  sub.path, 0, fmt::format("cannot resolve link: {}", ec.message()), true});
              continue;
            }
            sub.canonical_text = canonical.string();
            links.push_back(std::move(sub));
          } else {
            sub.canonical_text = join(canonical_base, name);
            subdirs.push_back(std::move(sub));
          }
          continue;
        }
        FileType ftype;
        if (type != DT_REG || !type_of_name(name, &ftype)) {
          ++skipped;
          continue;
        }
        if (!have_stat && ::fstatat(dfd, e->d_name, &st, 0) != 0) st.st_size = 0;
        Found f;
        f.path = join(base, name);
        f.name_at = static_cast<std::uint32_t>(base_len);
        f.relative = dir.relative + std::string(name);
        f.type = ftype;
        f.bytes = static_cast<std::uint64_t>(st.st_size);
        if (is_link) {
          std::error_code ec;
          f.canonical = fs::canonical(f.path, ec).string();
          if (ec) f.canonical = f.path;
        } else {
          f.dir_canonical = &canonical_base;
        }
        here.push_back(std::move(f));
      }
    }
    const bool kept = (!here.empty() || !subdirs.empty()) && keep_fd(dfd);
    if (!kept) ::close(dfd);
    for (auto& f : here) {
      f.dir_fd = kept ? dfd : -1;
      files.push_back(std::move(f));
    }
    for (auto& d : subdirs) d.parent_fd = kept ? dfd : -1;
  }

  const IngestOptions& options_;
  unsigned threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Dir> queue_;
  std::vector<Dir> links_;
  std::size_t busy_ = 0;
  std::unordered_set<std::string> visited_;  // canonical paths of the folders walked
  bool linked_files_ = false;
  std::mutex fd_mu_;
  std::vector<int> kept_fds_;
  const std::size_t fd_budget_ = fd_budget();
  std::vector<Found> files_;
  std::vector<FileError> errors_;
  ScanStats stats_;
};

// ---- parse ---------------------------------------------------------------------------------

void parse_content(std::string_view content, FileType type, detail::ParseJob& job) {
  if (content.size() >= 3 && content.substr(0, 3) == "\xEF\xBB\xBF") content.remove_prefix(3);
  std::size_t max_line = type == FileType::json ? 0 : job.options->max_line_bytes;
  if (auto problem = detail::check_text(content, max_line)) {
    job.error(problem->line, std::move(problem->reason), true);
    return;
  }
  try {
    switch (type) {
      case FileType::csv:
        detail::parse_csv(content, job);
        break;
      case FileType::json:
        detail::parse_json(content, job);
        break;
      case FileType::markdown:
        detail::parse_markdown(content, job);
        break;
      case FileType::text:
        detail::parse_text(content, job);
        break;
    }
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    job.error(0, fmt::format("internal error while parsing: {}", e.what()), true);
  }
  if (job.out->fatal) {
    job.records->resize(job.out->first_record);
    job.out->error_values.clear();
  }
  job.out->record_count = job.records->size() - job.out->first_record;
}

// Asks for transparent huge pages for a vector about to be filled: page faults are dear on
// virtual machines (for the merged records, 160 -> 20 ms on the generated corpus).
void advise_huge_pages(const void* data, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes < (8u << 20)) return;
  auto begin = reinterpret_cast<std::uintptr_t>(data);
  auto end = begin + bytes;
  begin = (begin + 4095) & ~std::uintptr_t{4095};
  if (end > begin)
    ::madvise(reinterpret_cast<void*>(begin), end - begin,  // NOLINT(performance-no-int-to-ptr)
              MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// Per parsing thread: its arena and its records (every file it parsed, one after another).
struct WorkerStore {
  std::unique_ptr<detail::Arena> arena = std::make_unique<detail::Arena>();
  std::vector<Record> records;
  detail::JsonScratchPtr json;  // keys classified here hold views into `arena`
};

void merge(IngestResult& result, std::vector<detail::FileOutput>& outputs,
           std::vector<WorkerStore>& workers) {
  std::vector<std::size_t> offsets(outputs.size() + 1, 0);
  std::size_t nerr = 0;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    offsets[i + 1] = offsets[i] + outputs[i].record_count;
    nerr += outputs[i].error_values.size();
  }
  // Each file's records appended in path order. A resize first would write every record
  // twice (value-initialised, then copied), and fault the fresh pages in before the copy.
  result.records.reserve(offsets.back());
  advise_huge_pages(result.records.data(), offsets.back() * sizeof(Record));
  for (const auto& o : outputs) {
    if (o.record_count == 0) continue;
    const auto& recs = workers[o.worker].records;
    auto first = recs.begin() + static_cast<std::ptrdiff_t>(o.first_record);
    result.records.insert(result.records.end(), first,
                          first + static_cast<std::ptrdiff_t>(o.record_count));
  }
  for (auto& w : workers) {
    std::vector<Record>().swap(w.records);
    result.storage().arenas.push_back(std::move(w.arena));
  }
  result.error_values.reserve(nerr);
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    auto& o = outputs[i];
    auto& info = result.files[i];
    info.records = offsets[i + 1] - offsets[i];
    info.error_values = o.error_values.size();
    info.rows = o.rows;
    for (const auto& e : o.errors) {
      if (e.fatal && info.error.empty()) {
        info.parsed = false;
        info.error = e.line > 0 && e.reason.find("line") == std::string::npos
                         ? fmt::format("line {}: {}", e.line, e.reason)
                         : e.reason;
      }
    }
    result.error_values.insert(result.error_values.end(), o.error_values.begin(),
                               o.error_values.end());
    for (auto& e : o.errors) result.errors.push_back(std::move(e));
  }
}

}  // namespace

IngestResult ingest(const std::vector<fs::path>& roots, const IngestOptions& options) {
  const auto t0 = Clock::now();
  IngestResult result;
  const unsigned threads = thread_count(options);
  result.timings.threads = threads;

  Scanner scanner(options, threads);
  for (const auto& root : roots) scanner.add_root(root);
  scanner.walk();
  auto& found = scanner.files();
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.path < b.path; });
  if (scanner.may_have_duplicates()) {
    for (auto& f : found) {
      if (!f.canonical.empty()) continue;
      f.canonical = *f.dir_canonical;
      if (!f.canonical.empty() && f.canonical.back() != '/') f.canonical += '/';
      f.canonical += f.path.c_str() + f.name_at;
    }
    std::unordered_set<std::string_view> seen;
    seen.reserve(found.size());
    std::vector<char> duplicate(found.size(), 0);
    for (std::size_t i = 0; i < found.size(); ++i) {
      if (!seen.insert(found[i].canonical).second) {
        duplicate[i] = 1;
        ++scanner.stats().duplicate_files;
      }
    }
    if (scanner.stats().duplicate_files > 0) {
      std::size_t kept = 0;
      for (std::size_t i = 0; i < found.size(); ++i)
        if (duplicate[i] == 0) {
          if (kept != i) found[kept] = std::move(found[i]);
          ++kept;
        }
      found.resize(kept);
    }
  }
  result.scan = scanner.stats();
  result.errors = std::move(scanner.errors());
  std::sort(result.errors.begin(), result.errors.end(),
            [](const FileError& a, const FileError& b) { return a.path < b.path; });
  result.files.reserve(found.size());
  for (auto& f : found) {
    FileInfo info;
    info.path = std::move(f.path);  // read from result.files from here on
    info.relative_path = std::move(f.relative);
    info.type = f.type;
    info.bytes = f.bytes;
    result.total_bytes += f.bytes;
    result.files.push_back(std::move(info));
  }
  result.timings.scan_ms = ms_since(t0);

  // Progress is reported under one lock so that callbacks never overlap.
  std::mutex progress_mu;
  std::atomic<bool> cancel{false};
  Progress progress;
  progress.files_total = found.size();
  progress.bytes_total = result.total_bytes;
  auto report = [&](std::string_view path, std::uint64_t bytes, Progress::Stage stage) {
    if (!options.on_progress) return;
    std::lock_guard lk(progress_mu);
    if (stage == Progress::Stage::parsing) {
      ++progress.files_done;
      progress.bytes_done += bytes;
    }
    progress.stage = stage;
    progress.path = path;
    bool go_on = false;
    try {
      go_on = options.on_progress(progress);
    } catch (...) {
      go_on = false;
    }
    if (!go_on) cancel = true;
  };
  if (options.on_progress) {
    // The scan's result: every file found, none parsed yet.
    Progress scanned = progress;
    scanned.stage = Progress::Stage::scanning;
    scanned.files_done = found.size();
    bool go_on = false;
    try {
      go_on = options.on_progress(scanned);
    } catch (...) {
      go_on = false;
    }
    if (!go_on) cancel = true;
  }

  const auto t1 = Clock::now();
  std::vector<detail::FileOutput> outputs(found.size());
  std::vector<std::size_t> order(found.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Largest first, so that one big file does not finish last on its own. This also puts
  // files of one shape next to each other (the same file in every run's folder), which keeps
  // the per-thread name and string caches warm: parsing folder by folder instead, each folder
  // opened once to save the kernel's path walks, cost more CPU than it saved.
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return found[a].bytes > found[b].bytes; });
  std::atomic<std::size_t> next{0};
  std::vector<char> started(found.size(), 0);
  const unsigned parse_threads =
      std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(found.size())));
  std::vector<WorkerStore> workers(parse_threads);
  run_on(parse_threads, [&](unsigned w) {
    auto& store = workers[w];
    // About one record per 90 bytes in benchmark results; untouched capacity costs nothing.
    store.records.reserve(static_cast<std::size_t>(result.total_bytes / 64 / parse_threads) + 256);
    advise_huge_pages(store.records.data(), store.records.capacity() * sizeof(Record));
    detail::FileReader reader(options.io_uring);
    std::array<detail::FileRequest, detail::FileReader::kBatch> requests;
    for (;;) {
      if (cancel) return;
      // A batch of files in order (largest first), read together, then parsed one by one.
      const std::size_t batch = reader.batch_size();
      const std::size_t k = next.fetch_add(batch);
      if (k >= order.size()) return;
      const std::size_t count = std::min(batch, order.size() - k);
      for (std::size_t j = 0; j < count; ++j) {
        const auto& f = found[order[k + j]];
        const auto& path = result.files[order[k + j]].path;
        requests[j] = {f.dir_fd, path.c_str() + f.name_at, path.c_str(), f.bytes};
      }
      reader.read(requests.data(), count, options.max_file_bytes);
      for (std::size_t j = 0; j < count; ++j) {
        if (cancel) return;
        const std::size_t i = order[k + j];
        started[i] = 1;
        auto& out = outputs[i];
        const auto& path = result.files[i].path;
        out.worker = w;
        out.first_record = store.records.size();
        detail::ParseJob job;
        job.strings = store.arena.get();
        job.records = &store.records;
        job.json = &store.json;
        job.source_file = store.arena->store(path);
        job.file = static_cast<std::uint32_t>(i);
        job.options = &options;
        job.out = &out;
        if (!reader.ok(j)) {
          job.error(0, std::move(reader.reason(j)), true);
        } else {
          parse_content(reader.content(j), found[i].type, job);
        }
        report(path, found[i].bytes, Progress::Stage::parsing);
      }
    }
  });
  result.timings.parse_ms = ms_since(t1);
  result.cancelled = cancel.load();

  const auto t2 = Clock::now();
  for (std::size_t i = 0; i < result.files.size(); ++i) result.files[i].parsed = started[i] != 0;
  merge(result, outputs, workers);
  result.timings.merge_ms = ms_since(t2);
  result.timings.total_ms = ms_since(t0);
  if (options.on_progress) {
    Progress done = progress;
    done.stage = Progress::Stage::done;
    done.path = {};
    try {
      options.on_progress(done);
    } catch (...) {
    }
  }
  return result;
}

IngestResult ingest_buffer(std::string_view content, FileType type, std::string_view name,
                           const IngestOptions& options) {
  const auto t0 = Clock::now();
  IngestResult result;
  result.timings.threads = 1;
  FileInfo info;
  info.path = std::string(name);
  info.relative_path = fs::path(std::string(name)).filename().string();
  info.type = type;
  info.bytes = content.size();
  info.parsed = true;
  result.total_bytes = content.size();
  result.files.push_back(std::move(info));
  std::vector<detail::FileOutput> outputs(1);
  std::vector<WorkerStore> workers(1);
  detail::ParseJob job;
  job.strings = workers[0].arena.get();
  job.records = &workers[0].records;
  job.json = &workers[0].json;
  job.source_file = workers[0].arena->store(name);
  job.file = 0;
  job.options = &options;
  job.out = &outputs[0];
  const auto t1 = Clock::now();
  parse_content(content, type, job);
  result.timings.parse_ms = ms_since(t1);
  merge(result, outputs, workers);
  result.timings.total_ms = ms_since(t0);
  return result;
}

}  // namespace chimera::ingest
