#include <stdint.h>
#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#endif

// Starts writing a byte range of a file's dirty pages to its disk and returns without
// waiting (Linux's sync_file_range with SYNC_FILE_RANGE_WRITE: a GNU extension, which
// the Swift Glibc module does not declare). A hint: nothing is durable until fsync.
// Elsewhere it does nothing. Returns 0, or -1 with errno set.
#if defined(__linux__)
extern int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags);
static inline int sluice_start_writeback(int fd, int64_t offset, int64_t nbytes) {
    return sync_file_range(fd, offset, nbytes, 2 /* SYNC_FILE_RANGE_WRITE */);
}

// Waits until a byte range of a file is on its disk (sync_file_range with WAIT_BEFORE,
// WRITE and WAIT_AFTER: the range's pages clean, no metadata flushed), then asks the
// kernel to drop those pages from its cache (POSIX_FADV_DONTNEED, which drops clean pages
// only). Written output then leaves the page cache as it goes, and new writes reuse the
// pages just freed instead of taking fresh ones. Returns 0, or -1 with errno set.
static inline int sluice_drop_written(int fd, int64_t offset, int64_t nbytes) {
    if (sync_file_range(fd, offset, nbytes, 1 | 2 | 4) != 0) return -1;
    int error = posix_fadvise(fd, (off_t)offset, (off_t)nbytes, POSIX_FADV_DONTNEED);
    if (error != 0) { errno = error; return -1; }
    return 0;
}
#else
static inline int sluice_start_writeback(int fd, int64_t offset, int64_t nbytes) {
    (void)fd; (void)offset; (void)nbytes;
    return 0;
}
static inline int sluice_drop_written(int fd, int64_t offset, int64_t nbytes) {
    (void)fd; (void)offset; (void)nbytes;
    return 0;
}
#endif
