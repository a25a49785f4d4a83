#include <stdint.h>

// Starts writing a byte range of a file's dirty pages to its disk and returns without
// waiting (Linux's sync_file_range with SYNC_FILE_RANGE_WRITE: a GNU extension, which
// the Swift Glibc module does not declare). A hint: nothing is durable until fsync.
// Elsewhere it does nothing. Returns 0, or -1 with errno set.
#if defined(__linux__)
extern int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags);
static inline int sluice_start_writeback(int fd, int64_t offset, int64_t nbytes) {
    return sync_file_range(fd, offset, nbytes, 2 /* SYNC_FILE_RANGE_WRITE */);
}
#else
static inline int sluice_start_writeback(int fd, int64_t offset, int64_t nbytes) {
    (void)fd; (void)offset; (void)nbytes;
    return 0;
}
#endif
