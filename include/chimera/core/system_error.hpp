// System errors in words for a user (errno values), naming resource exhaustion as such.
#pragma once

#include <string>

namespace chimera {

// The errno of a failed system call: what it means, its name, and for resource limits the limit
// in force and what to do, e.g. "Too many open files (EMFILE): this process may have 256 files
// and sockets open at once (RLIMIT_NOFILE); raise it (`ulimit -n 4096`) or run fewer agents".
// ENFILE, ENOMEM, ENOBUFS and ENOSPC get their own advice; any other errno its strerror text
// and number.
std::string describe_errno(int err);

}  // namespace chimera
