// DISK-tier file I/O: the ath_file_* functions of athanor.h.
//
// A handle names one open file, held by two descriptors: a buffered one (always) and an O_DIRECT one (when
// the file system accepts O_DIRECT; tmpfs, for one, does not). A transfer whose host address and file offset
// are both multiples of 4096 moves its 4096-multiple prefix through the O_DIRECT descriptor (bypassing the
// page cache) and the remainder through the buffered one; every other transfer is buffered. Linux keeps the
// two coherent (direct I/O writes back and invalidates cached pages of the range it touches).
//
// pread/pwrite are looped: short transfers continue where they stopped, EINTR is retried, and end of file
// while reading is an error naming the bytes missing. Every failure returns ATH_ERR_IO (ATH_ERR_INVALID for
// bad arguments) with the operation, the path, the offset and strerror(errno) in ath_last_error().
//
// Handles are small integers from a counter (never reused), looked up in a table; an operation holds a
// reference to its entry, so closing a handle while another thread transfers on it cannot make that
// transfer hit a recycled descriptor: the descriptors close when the last user lets go.
#include "io/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "athanor/athanor.h"
#include "common/status.h"

namespace {

constexpr size_t kAlign = static_cast<size_t>(ath::io::kDirectAlignment);
// Linux moves at most 0x7ffff000 bytes per read/write call; stay below it.
constexpr size_t kMaxChunk = size_t{1} << 30;

struct File {
  int fd = -1;
  int direct_fd = -1;
  std::atomic<bool> direct_ok{false};
  std::string path;
  ~File() {
    if (direct_fd >= 0) ::close(direct_fd);
    if (fd >= 0) ::close(fd);
  }
};

std::mutex g_mu;
std::unordered_map<int64_t, std::shared_ptr<File>> g_files;  // guarded by g_mu
int64_t g_next_handle = 1;                                    // guarded by g_mu

std::shared_ptr<File> lookup(int64_t handle) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_files.find(handle);
  return it == g_files.end() ? nullptr : it->second;
}

int open_retry(const char* path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// Moves `bytes` between `buf` and the file at `offset` through `fd`, looping over short transfers.
// On success returns 0 and sets *done = bytes. On failure returns errno (or -1 for end of file while
// reading, -2 for a write that made no progress) with *done = the bytes moved before the failure.
// With stop_unaligned (the O_DIRECT descriptor), a short transfer that leaves the position unaligned stops
// early with 0 and *done < bytes, so the caller finishes through the buffered descriptor.
int transfer(int fd, bool write, char* buf, size_t bytes, int64_t offset, bool stop_unaligned, size_t* done) {
  size_t pos = 0;
  while (pos < bytes) {
    size_t chunk = bytes - pos < kMaxChunk ? bytes - pos : kMaxChunk;
    ssize_t n = write ? ::pwrite(fd, buf + pos, chunk, static_cast<off_t>(offset + static_cast<int64_t>(pos)))
                      : ::pread(fd, buf + pos, chunk, static_cast<off_t>(offset + static_cast<int64_t>(pos)));
    if (n < 0) {
      if (errno == EINTR) continue;
      *done = pos;
      return errno;
    }
    if (n == 0) {
      *done = pos;
      return write ? -2 : -1;
    }
    pos += static_cast<size_t>(n);
    if (stop_unaligned && pos < bytes && (pos % kAlign) != 0) break;
  }
  *done = pos;
  return 0;
}

ath_status io_error(const char* op, const File& f, bool write, size_t bytes, int64_t offset, size_t done, int err) {
  if (err == -1) {
    return ath::fail(ATH_ERR_IO, "%s: unexpected end of file '%s' reading %zu bytes at offset %lld (got %zu)", op,
                     f.path.c_str(), bytes, static_cast<long long>(offset), done);
  }
  if (err == -2) {
    return ath::fail(ATH_ERR_IO, "%s: writing %zu bytes at offset %lld to '%s' made no progress after %zu bytes", op,
                     bytes, static_cast<long long>(offset), f.path.c_str(), done);
  }
  return ath::fail(ATH_ERR_IO, "%s: %s of %zu bytes at offset %lld %s '%s' failed after %zu bytes: %s (errno %d)", op,
                   write ? "pwrite" : "pread", bytes, static_cast<long long>(offset), write ? "to" : "from",
                   f.path.c_str(), done, std::strerror(err), err);
}

ath_status do_io(const char* op, int64_t handle, bool write, char* buf, size_t bytes, int64_t offset) {
  if (offset < 0) return ath::fail(ATH_ERR_INVALID, "%s: offset=%lld must be >= 0", op, static_cast<long long>(offset));
  if (bytes == 0) return ATH_OK;
  if (buf == nullptr) return ath::fail(ATH_ERR_INVALID, "%s: buffer is null for %zu bytes", op, bytes);
  if (bytes > static_cast<size_t>(INT64_MAX - offset)) {
    return ath::fail(ATH_ERR_INVALID, "%s: offset=%lld + bytes=%zu overflows", op, static_cast<long long>(offset), bytes);
  }
  std::shared_ptr<File> f = lookup(handle);
  if (!f) return ath::fail(ATH_ERR_INVALID, "%s: unknown or closed file handle %lld", op, static_cast<long long>(handle));

  size_t done = 0;
  uintptr_t addr = reinterpret_cast<uintptr_t>(buf);
  if (f->direct_ok.load(std::memory_order_relaxed) && addr % kAlign == 0 &&
      static_cast<uint64_t>(offset) % kAlign == 0 && bytes >= kAlign) {
    size_t direct_len = bytes & ~(kAlign - 1);
    int err = transfer(f->direct_fd, write, buf, direct_len, offset, true, &done);
    if (err == EINVAL && done == 0) {
      // The file system refused this direct transfer (e.g. a larger logical block size): stop trying.
      f->direct_ok.store(false, std::memory_order_relaxed);
    } else if (err != 0 && !(err == -1 && !write)) {
      return io_error(op, *f, write, bytes, offset, done, err);
    }
    // A short direct read at end of file falls through: the buffered read below reports the end of file.
  }
  size_t rest_done = 0;
  int err = transfer(f->fd, write, buf + done, bytes - done, offset + static_cast<int64_t>(done), false, &rest_done);
  if (err != 0) return io_error(op, *f, write, bytes, offset, done + rest_done, err);
  return ATH_OK;
}

}  // namespace

namespace ath::io {

int is_direct(int64_t handle) {
  std::shared_ptr<File> f = lookup(handle);
  if (!f) return -1;
  return f->direct_ok.load(std::memory_order_relaxed) ? 1 : 0;
}

}  // namespace ath::io

extern "C" {

ath_status ath_file_open(const char* path, int create, int64_t* fd_out) {
  ATH_GUARD_BEGIN
  ATH_CHECK_ARG(fd_out != nullptr, "ath_file_open", "fd_out is null");
  *fd_out = -1;
  ATH_CHECK_ARG(path != nullptr && path[0] != '\0', "ath_file_open", "path is null or empty");
  auto f = std::make_shared<File>();
  f->path = path;
  f->fd = open_retry(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
  if (f->fd < 0) {
    int err = errno;
    return ath::fail(ATH_ERR_IO, "ath_file_open: cannot open '%s'%s: %s (errno %d)", path,
                     create ? " for creation" : "", std::strerror(err), err);
  }
  struct stat st;
  if (::fstat(f->fd, &st) == 0 && !S_ISREG(st.st_mode)) {
    return ath::fail(ATH_ERR_IO, "ath_file_open: '%s' is not a regular file", path);
  }
  // O_DIRECT is optional: file systems without it (tmpfs) fail the open with EINVAL; we then stay buffered.
  f->direct_fd = open_retry(path, O_RDWR | O_CLOEXEC | O_DIRECT, 0);
  f->direct_ok.store(f->direct_fd >= 0, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(g_mu);
  int64_t handle = g_next_handle++;
  g_files.emplace(handle, std::move(f));
  *fd_out = handle;
  return ATH_OK;
  ATH_GUARD_END("ath_file_open")
}

ath_status ath_file_close(int64_t fd) {
  ATH_GUARD_BEGIN
  std::shared_ptr<File> f;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_files.find(fd);
    if (it == g_files.end()) {
      return ath::fail(ATH_ERR_INVALID, "ath_file_close: unknown or already closed file handle %lld",
                       static_cast<long long>(fd));
    }
    f = std::move(it->second);
    g_files.erase(it);
  }
  if (f.use_count() == 1) {  // no transfer in flight: close here and report errors
    int direct = f->direct_fd, buffered = f->fd;
    f->direct_fd = -1;
    f->fd = -1;
    if (direct >= 0) ::close(direct);
    if (::close(buffered) != 0 && errno != EINTR) {
      int err = errno;
      return ath::fail(ATH_ERR_IO, "ath_file_close: closing '%s' failed: %s (errno %d)", f->path.c_str(),
                       std::strerror(err), err);
    }
  }
  return ATH_OK;
  ATH_GUARD_END("ath_file_close")
}

ath_status ath_file_write(int64_t fd, const void* src, size_t bytes, int64_t offset) {
  ATH_GUARD_BEGIN
  return do_io("ath_file_write", fd, true, static_cast<char*>(const_cast<void*>(src)), bytes, offset);
  ATH_GUARD_END("ath_file_write")
}

ath_status ath_file_read(int64_t fd, void* dst, size_t bytes, int64_t offset) {
  ATH_GUARD_BEGIN
  return do_io("ath_file_read", fd, false, static_cast<char*>(dst), bytes, offset);
  ATH_GUARD_END("ath_file_read")
}

ath_status ath_file_sync(int64_t fd) {
  ATH_GUARD_BEGIN
  std::shared_ptr<File> f = lookup(fd);
  if (!f) return ath::fail(ATH_ERR_INVALID, "ath_file_sync: unknown or closed file handle %lld", static_cast<long long>(fd));
  int rc;
  do {
    rc = ::fsync(f->fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    return ath::fail(ATH_ERR_IO, "ath_file_sync: fsync of '%s' failed: %s (errno %d)", f->path.c_str(),
                     std::strerror(err), err);
  }
  return ATH_OK;
  ATH_GUARD_END("ath_file_sync")
}

ath_status ath_file_truncate(int64_t fd, int64_t bytes) {
  ATH_GUARD_BEGIN
  ATH_CHECK_ARG(bytes >= 0, "ath_file_truncate", "bytes=%lld must be >= 0", static_cast<long long>(bytes));
  std::shared_ptr<File> f = lookup(fd);
  if (!f) {
    return ath::fail(ATH_ERR_INVALID, "ath_file_truncate: unknown or closed file handle %lld", static_cast<long long>(fd));
  }
  int rc;
  do {
    rc = ::ftruncate(f->fd, static_cast<off_t>(bytes));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    return ath::fail(ATH_ERR_IO, "ath_file_truncate: resizing '%s' to %lld bytes failed: %s (errno %d)",
                     f->path.c_str(), static_cast<long long>(bytes), std::strerror(err), err);
  }
  return ATH_OK;
  ATH_GUARD_END("ath_file_truncate")
}

}  // extern "C"
