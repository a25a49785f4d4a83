import Foundation

/// Loopback servers the tests start: the BigQuery emulator and Python stand-ins.
public enum Servers {
    /// A free TCP port on 127.0.0.1 (bound, then released).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupport.ReferenceError(message: "socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw TestSupport.ReferenceError(message: "bind failed") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The Python of the emulator's virtualenv: `SLUICE_BQ_PYTHON`, else `.venv-bq` in the
    /// repository (built by scripts/setup). Missing, the tests that need it fail.
    public static func bigQueryPython() throws -> String {
        let candidate = ProcessInfo.processInfo.environment["SLUICE_BQ_PYTHON"] ?? TestSupport.repoRoot + "/.venv-bq/bin/python"
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw TestSupport.ReferenceError(message: "no BigQuery emulator: \(candidate) is missing (run scripts/setup, or set SLUICE_BQ_PYTHON)")
        }
        return candidate
    }

    /// Waits until something answers HTTP at `url` (any status).
    public static func waitForHTTP(_ url: String, timeout: Duration = .seconds(60), process: Process? = nil) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let process, !process.isRunning {
                throw TestSupport.ReferenceError(message: "the server at \(url) exited (\(process.terminationStatus)) before answering")
            }
            let r = try? TestSupport.run("/usr/bin/env", ["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url])
            if let r, r.status == 0, r.output != "000" { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSupport.ReferenceError(message: "nothing answered at \(url) within \(timeout)")
    }
}

/// The BigQuery emulator (PyPI `bqemulator`, through scripts/bq_emulator.py) on a loopback
/// port, with its DuckDB file in `dataDir` so that it can be stopped and started again
/// without losing the tables (an outage).
public final class BigQueryEmulator: @unchecked Sendable {
    // Mutable state (`process`) is only touched from the test's own task, one call at a time;
    // the lock makes that explicit for the compiler's sake.
    private let lock = NSLock()
    public let port: Int
    public let dataDir: String
    public let project: String
    private var process: Process?
    private let logFile: String

    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public init(project: String = "sluice-test") throws {
        self.port = try Servers.freePort()
        self.dataDir = try TestSupport.scratchDirectory("bq-emulator")
        self.project = project
        self.logFile = dataDir + ".log"
    }

    /// Starts the emulator and waits until it answers. An emulator that is still running
    /// but has not answered within `answerWithin` is killed and started again (at most
    /// `attempts` starts; a start that fails for good leaves no process behind): under the whole suite's load, about one start in a few dozen
    /// printed its start-up lines and then never answered (its log ends there), while a
    /// start normally answers in 4–6 s (15–20 under load).
    public func start(answerWithin: Duration = .seconds(45), attempts: Int = 3) async throws {
        let url = "\(endpoint)/bigquery/v2/projects/\(project)/datasets"
        for attempt in 1...attempts {
            let p = try launch()
            do {
                try await Servers.waitForHTTP(url, timeout: answerWithin, process: p)
                return
            } catch {
                let running = p.isRunning
                kill() // no emulator outlives a failed start
                guard running, attempt < attempts else { throw error }
                appendToLog("bq_emulator test harness: no answer within \(answerWithin) (start \(attempt) of \(attempts)); starting again\n")
            }
        }
    }

    private func launch() throws -> Process {
        let python = try Servers.bigQueryPython()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [TestSupport.repoRoot + "/scripts/bq_emulator.py", "--rest-host", "127.0.0.1", "--rest-port", String(port),
                       "--grpc-port", "0", "--data-dir", dataDir + "/db", "--project", project, "--log-level", "warning"]
        if !FileManager.default.fileExists(atPath: logFile) { _ = FileManager.default.createFile(atPath: logFile, contents: nil) }
        let log = FileHandle(forWritingAtPath: logFile)
        log?.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        lock.withLock { process = p }
        return p
    }

    private func appendToLog(_ line: String) {
        guard let log = FileHandle(forWritingAtPath: logFile) else { return }
        log.seekToEndOfFile()
        log.write(Data(line.utf8))
        try? log.close()
    }

    /// Stops the emulator (SIGTERM, then SIGKILL after 10 s) and waits for it.
    public func stop() async {
        guard let p = lock.withLock({ process }) else { return }
        if p.isRunning { Foundation.kill(p.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(10)
        while p.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if p.isRunning { Foundation.kill(p.processIdentifier, SIGKILL) }
        while p.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        lock.withLock { process = nil }
    }

    /// Kills the emulator at once (for `defer`: no emulator outlives its test).
    public func kill() {
        guard let p = lock.withLock({ process }) else { return }
        if p.isRunning { Foundation.kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        lock.withLock { process = nil }
    }

    public var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// Every row of a table, read by the independent Python reader (tabledata.list).
    public func rows(dataset: String, table: String) throws -> [[String: String?]] {
        let python = try Servers.bigQueryPython()
        let out = try TestSupport.run(python, [TestSupport.repoRoot + "/Tests/SluiceBigQueryTests/bq_read.py", endpoint, project, dataset, table])
        guard out.status == 0 else { throw TestSupport.ReferenceError(message: "bq_read.py failed: \(out.stderr)") }
        return try out.output.split(separator: "\n").map { line in
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return [:] }
            return o.mapValues { v in v is NSNull ? nil : "\(v)" }
        }
    }
}
