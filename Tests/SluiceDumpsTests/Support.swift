import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SluiceDumps
import SluiceTestSupport

/// Scratch files, processes and the Python reference, for these tests only.
enum Support {
    static func scratchDirectory(_ name: String) throws -> String { try TestSupport.scratchDirectory("dumps-" + name) }

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Runs a program to its end with posix_spawn and waitpid (Foundation's Process can miss
    /// the exit of a child that leaves a daemon behind, as `pg_ctl start` does); stdout and
    /// stderr go to files so large outputs cannot block it.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], allowFailure: Bool = false) throws -> (status: Int32, stdout: Data, stderr: String) {
        let dir = try scratchDirectory("proc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, dir + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw Failure(description: "cannot run \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let out = try Data(contentsOf: URL(fileURLWithPath: dir + "/out"))
        let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        if code != 0, !allowFailure {
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) failed (\(code)): \(err)")
        }
        return (code, out, err)
    }

    /// The Python of the reference scripts (`SLUICE_PYTHON`, else `python3` on PATH).
    static func python() throws -> String {
        let p = TestSupport.python
        guard FileManager.default.isExecutableFile(atPath: p) else {
            throw Failure(description: "python3 not found: set SLUICE_PYTHON or put python3 on PATH (needed for the CSV reference)")
        }
        return p
    }

    static var testsFolder: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().path }

    /// Reads every item of a reader into rows and errors.
    static func collect(_ reader: PgDumpReader) throws -> (rows: [PgDumpRow], errors: [DumpRowError]) {
        var rows: [PgDumpRow] = [], errors: [DumpRowError] = []
        try reader.rows { item in
            switch item {
            case .success(let r): rows.append(r)
            case .failure(let e): errors.append(e)
            }
        }
        return (rows, errors)
    }

    static func collect(_ reader: CSVFileReader) throws -> (rows: [CSVRow], errors: [DumpRowError]) {
        var rows: [CSVRow] = [], errors: [DumpRowError] = []
        try reader.rows { item in
            switch item {
            case .success(let r): rows.append(r)
            case .failure(let e): errors.append(e)
            }
        }
        return (rows, errors)
    }
}
