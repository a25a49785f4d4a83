import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL server on 127.0.0.1 for the tests: a fresh data directory in a
/// temp folder, owned by the `postgres` OS user when the tests run as root (initdb refuses
/// root), the unix socket in the same folder. `stop()` ends it (immediate mode) and removes
/// the folder. Binaries: `SLUICE_PG_BIN` or /usr/lib/postgresql/15/bin.
final class PostgresServer {
    let bin: String
    let dir: String
    let port: Int
    private var running = false

    static var binDirectory: String {
        ProcessInfo.processInfo.environment["SLUICE_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
    }

    init() throws {
        bin = Self.binDirectory
        guard FileManager.default.isExecutableFile(atPath: bin + "/initdb") else {
            throw Support.Failure(description: "PostgreSQL not found at \(bin) (install postgresql-15 or set SLUICE_PG_BIN)")
        }
        dir = try Support.scratchDirectory("pg")
        port = try Self.freePort()
        if geteuid() == 0 { _ = try Support.run("/bin/chown", ["-R", "postgres:postgres", dir]) }
        try asServerUser(bin + "/initdb", ["-D", dir + "/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        try asServerUser(bin + "/pg_ctl", ["-D", dir + "/data", "-l", dir + "/server.log", "-w", "-t", "60", "start",
                                           "-o", "-p \(port) -k \(dir) -c listen_addresses=127.0.0.1 -c fsync=off -c TimeZone=UTC"])
        running = true
    }

    /// Runs a server binary, as `postgres` when we are root.
    @discardableResult
    private func asServerUser(_ program: String, _ args: [String], allowFailure: Bool = false) throws -> Int32 {
        if geteuid() == 0 {
            return try Support.run("/usr/sbin/runuser", ["-u", "postgres", "--", program] + args, allowFailure: allowFailure).status
        }
        return try Support.run(program, args, allowFailure: allowFailure).status
    }

    func stop() {
        guard running else { return }
        running = false
        _ = try? asServerUser(bin + "/pg_ctl", ["-D", dir + "/data", "-m", "immediate", "-w", "stop"], allowFailure: true)
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }

    private var connection: [String] { ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres"] }

    /// Runs SQL with psql (stops at the first error) and returns its unaligned, tuples-only output.
    @discardableResult
    func psql(_ sql: String) throws -> Data {
        let file = dir + "/q-\(UUID().uuidString).sql"
        try Data(sql.utf8).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        return try Support.run(bin + "/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", file] + connection).stdout
    }

    /// pg_dump in plain format with extra options, into a file.
    func dump(_ options: [String], to path: String) throws {
        try Support.run(bin + "/pg_dump", connection + ["-f", path] + options)
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Support.Failure(description: "socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw Support.Failure(description: "cannot find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
