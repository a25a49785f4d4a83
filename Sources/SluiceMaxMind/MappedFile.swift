#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory; unmapped when the object goes away.
///
/// It is `Sendable` without `@unchecked`: its only state is the mapping's address
/// (kept as an integer bit pattern) and length, both immutable. That is sound
/// because the mapping is `PROT_READ` and `MAP_PRIVATE`, never written through, and
/// lives exactly as long as this object (users hold a reference while reading).
/// What no reader can prevent: if another process truncates the file while it is
/// mapped, reads past the new end raise SIGBUS (replace database files atomically,
/// by renaming a new file over the old one, as MaxMind's updater does).
final class MappedFile: Sendable {
    /// The address of the first byte, as a bit pattern (0 for an empty file).
    private let address: UInt
    /// The file's size in bytes.
    let count: Int

    init(path: String) throws(MaxMindError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MaxMindError(path: path, kind: .cannotOpen(errno: errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw MaxMindError(path: path, kind: .cannotOpen(errno: errno)) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            let code = (info.st_mode & S_IFMT) == S_IFDIR ? EISDIR : ENODEV
            throw MaxMindError(path: path, kind: .cannotOpen(errno: code))
        }
        let size = Int(info.st_size)
        if size == 0 {
            // mmap cannot map nothing; an empty file simply has no metadata marker.
            address = 0
            count = 0
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), Int(bitPattern: p) != -1 else {
            throw MaxMindError(path: path, kind: .cannotOpen(errno: errno))
        }
        address = UInt(bitPattern: p)
        count = size
    }

    deinit {
        if count > 0, let p = UnsafeMutableRawPointer(bitPattern: address) {
            munmap(p, count)
        }
    }

    /// The start of the mapping. Valid while `self` is alive; the file must not be
    /// empty (`count > 0`) for this to be dereferenced.
    @inline(__always)
    var base: UnsafeRawPointer {
        UnsafeRawPointer(bitPattern: address == 0 ? 1 : address).unsafelyUnwrapped
    }
}
