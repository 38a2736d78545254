#include <chimera/core/system_error.hpp>

#include <fmt/format.h>

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace chimera {

std::string describe_errno(int err) {
  const char* name = err == EMFILE    ? "EMFILE"
                     : err == ENFILE  ? "ENFILE"
                     : err == ENOMEM  ? "ENOMEM"
                     : err == ENOBUFS ? "ENOBUFS"
                     : err == ENOSPC  ? "ENOSPC"
                                      : nullptr;
  std::string text = name != nullptr ? fmt::format("{} ({})", std::strerror(err), name)
                                     : fmt::format("{} (errno {})", std::strerror(err), err);
  if (err == EMFILE) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      text += fmt::format(
          ": this process may have {} files and sockets open at once "
          "(RLIMIT_NOFILE); raise it (`ulimit -n {}`) or run fewer agents",
          rl.rlim_cur, std::max<rlim_t>(rl.rlim_cur * 4, 4096));
    }
  } else if (err == ENFILE) {
    text +=
        ": the whole system has run out of file descriptors (fs.file-max); close other "
        "programs or run fewer agents";
  } else if (err == ENOMEM || err == ENOBUFS) {
    text += ": the system is out of memory; run fewer agents or free memory";
  } else if (err == ENOSPC) {
    text += ": the disk is full; free space or write elsewhere";
  }
  return text;
}

}  // namespace chimera
