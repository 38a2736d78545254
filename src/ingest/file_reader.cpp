// Reading the files to parse. One file costs an open, a read and a close; on 11,100 small files
// these system calls were a fifth of an ingest's time on a virtual machine, where each entry into
// the kernel is dear. With io_uring (liburing, when built with it and the kernel allows it) one
// system call opens, reads and closes a whole batch: 53 against 101 ms for the 11,100 files of
// the generated corpus on one thread. Any file the batch does not read whole, for whatever
// reason, is read again the plain way, which gives the error its usual wording.
#include "ingest/internal.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#ifdef CHIMERA_HAVE_LIBURING
#include <liburing.h>
#endif

namespace chimera::ingest::detail {

bool read_file(int dir_fd, const char* name, const char* path, std::uint64_t expected,
               std::uint64_t max_bytes, std::vector<char>& buf, std::size_t* size,
               std::string* reason) {
  int fd = dir_fd >= 0 ? ::openat(dir_fd, name, O_RDONLY | O_CLOEXEC)
                       : ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *reason = fmt::format("cannot open: {}", std::strerror(errno));
    return false;
  }
  if (expected > max_bytes) {
    *reason =
        fmt::format("file is {} bytes, over the {}-byte limit (IngestOptions::max_file_bytes)",
                    expected, max_bytes);
    ::close(fd);
    return false;
  }
  std::size_t cap = static_cast<std::size_t>(expected) + 1;
  if (buf.size() < cap) buf.resize(cap);
  std::size_t n = 0;
  for (;;) {
    if (n == buf.size()) {
      if (n >= max_bytes) {
        *reason = fmt::format("file grew over the {}-byte limit (IngestOptions::max_file_bytes)",
                              max_bytes);
        ::close(fd);
        return false;
      }
      buf.resize(buf.size() * 2);
    }
    ssize_t r = ::read(fd, buf.data() + n, buf.size() - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      *reason = fmt::format("cannot read: {}", std::strerror(errno));
      ::close(fd);
      return false;
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
    if (n == expected && expected > 0) break;  // the size the scan saw: no read just for EOF
  }
  ::close(fd);
  *size = n;
  return true;
}

namespace {
// Files up to this size go through the batch; larger ones are read the plain way (their read
// dwarfs the system calls saved, and the slot's buffer stays small).
constexpr std::uint64_t kBatchFileBytes = std::uint64_t{1} << 20;
// A slot's buffer above this is given back after its file.
constexpr std::size_t kKeepBufferBytes = std::size_t{4} << 20;
}  // namespace

#ifdef CHIMERA_HAVE_LIBURING
struct FileReader::Ring {
  io_uring ring{};
};
#else
struct FileReader::Ring {};
#endif

FileReader::FileReader(bool use_io_uring) {
#ifdef CHIMERA_HAVE_LIBURING
  if (use_io_uring) {
    auto r = std::make_unique<Ring>();
    // Three entries per file (open, read, close); the files live in a table of kBatch slots.
    if (io_uring_queue_init(3 * kBatch, &r->ring, 0) == 0) {
      std::array<int, kBatch> empty{};
      empty.fill(-1);
      if (io_uring_register_files(&r->ring, empty.data(), kBatch) == 0) {
        ring_ = std::move(r);
      } else {
        io_uring_queue_exit(&r->ring);
      }
    }
  }
#else
  (void)use_io_uring;
#endif
}

FileReader::~FileReader() {
  drop_ring();
}

void FileReader::drop_ring() {
#ifdef CHIMERA_HAVE_LIBURING
  if (ring_) io_uring_queue_exit(&ring_->ring);
#endif
  ring_.reset();
}

std::size_t FileReader::batch_size() const {
  return ring_ ? kBatch : 1;
}

void FileReader::read(const FileRequest* requests, std::size_t count, std::uint64_t max_bytes) {
  count = std::min(count, kBatch);
  for (std::size_t i = 0; i < count; ++i) {
    auto& s = slots_[i];
    if (s.buf.capacity() > kKeepBufferBytes) std::vector<char>().swap(s.buf);
    s.read = false;
    s.ok = false;
    s.size = 0;
    s.reason.clear();
  }
  read_batch(requests, count, max_bytes);
  for (std::size_t i = 0; i < count; ++i) {
    auto& s = slots_[i];
    if (s.read) continue;
    const auto& r = requests[i];
    s.ok = read_file(r.dir_fd, r.name, r.path, r.expected, max_bytes, s.buf, &s.size, &s.reason);
  }
}

void FileReader::read_batch(const FileRequest* requests, std::size_t count,
                            std::uint64_t max_bytes) {
#ifdef CHIMERA_HAVE_LIBURING
  if (!ring_) return;
  io_uring* ring = &ring_->ring;
  std::array<int, kBatch> open_res{};
  std::array<int, kBatch> read_res{};
  unsigned submitted = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& r = requests[i];
    open_res[i] = 1;  // not submitted
    if (r.expected == 0 || r.expected > kBatchFileBytes || r.expected > max_bytes) continue;
    auto& s = slots_[i];
    if (s.buf.size() < r.expected + 1) s.buf.resize(r.expected + 1);
    const auto slot = static_cast<unsigned>(i);
    // open -> read -> close, linked: a failed open cancels the rest; the read is hard-linked so
    // that the close runs even after a short or failed read, and the slot is free again.
    io_uring_sqe* open = io_uring_get_sqe(ring);
    io_uring_sqe* rd = io_uring_get_sqe(ring);
    io_uring_sqe* close = io_uring_get_sqe(ring);
    if (open == nullptr || rd == nullptr || close == nullptr) break;  // never with 3 per slot
    io_uring_prep_openat_direct(open, r.dir_fd >= 0 ? r.dir_fd : AT_FDCWD,
                                r.dir_fd >= 0 ? r.name : r.path, O_RDONLY, 0, slot);
    open->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(open, i * 3);
    // One byte more than the scan saw: a file that has grown since reads longer, and is then
    // read again the plain way, to its end, as read_file() reads it.
    io_uring_prep_read(rd, static_cast<int>(slot), s.buf.data(),
                       static_cast<unsigned>(r.expected + 1), 0);
    rd->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(rd, i * 3 + 1);
    io_uring_prep_close_direct(close, slot);
    io_uring_sqe_set_data64(close, i * 3 + 2);
    open_res[i] = 0;
    submitted += 3;
  }
  if (submitted == 0) return;
  unsigned seen = 0;
  int rc = io_uring_submit_and_wait(ring, submitted);
  // Interrupted waits are waited again: the kernel may still write into the slots' buffers
  // until every completion is in.
  while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
    rc = io_uring_submit_and_wait(ring, submitted);
  while (rc >= 0 && seen < submitted) {
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned n = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      const auto data = io_uring_cqe_get_data64(cqe);
      const std::size_t i = data / 3;
      if (data % 3 == 0) open_res[i] = cqe->res;
      if (data % 3 == 1) read_res[i] = cqe->res;
      ++n;
    }
    io_uring_cq_advance(ring, n);
    seen += n;
    if (seen < submitted) {
      do {
        rc = io_uring_wait_cqe_nr(ring, &cqe, 1);
      } while (rc == -EINTR || rc == -EAGAIN);
    }
  }
  if (rc < 0) {  // the ring failed as a whole: plain reads for this batch and from now on
    drop_ring();
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    if (open_res[i] == -EINVAL || open_res[i] == -EOPNOTSUPP || open_res[i] == -EBADF) {
      drop_ring();  // a kernel without direct opens: plain reads from now on
      return;
    }
    if (open_res[i] == 0 && read_res[i] >= 0 &&
        static_cast<std::uint64_t>(read_res[i]) == requests[i].expected) {
      slots_[i].read = true;
      slots_[i].ok = true;
      slots_[i].size = static_cast<std::size_t>(read_res[i]);
    }
  }
#else
  (void)requests;
  (void)count;
  (void)max_bytes;
#endif
}

}  // namespace chimera::ingest::detail
