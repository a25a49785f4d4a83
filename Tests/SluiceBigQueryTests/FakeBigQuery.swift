import Foundation
import SluiceTestSupport

/// fake_bigquery.py on a loopback port: BigQuery's documented answers for per-row errors,
/// failing and oversized requests, and the token endpoint.
final class FakeBigQuery {
    let process: Process
    let port: Int
    let logFile: String
    var endpoint: String { "http://127.0.0.1:\(port)" }

    init(dir: String, arguments: [String] = []) throws {
        let portFile = dir + "/fake.port"
        logFile = dir + "/fake.log"
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.python)
        p.arguments = [TestSupport.repoRoot + "/Tests/SluiceBigQueryTests/fake_bigquery.py", "--port-file", portFile, "--log", logFile] + arguments
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(20)
        var port = 0
        while port == 0, Date() < deadline, p.isRunning {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(text) { port = n } else { usleep(20_000) }
        }
        guard port > 0 else {
            p.terminate()
            throw FakeServerError()
        }
        self.port = port
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The requests the server saw, in order.
    func log() throws -> [[String: Any]] {
        let text = try String(contentsOfFile: logFile, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:] }
    }

    /// insertAll requests in the order they arrived (`n`: the log has them in the order
    /// they were answered, which differs when the streamer has several in flight).
    var inserts: [[String: Any]] {
        ((try? log()) ?? []).filter { ($0["path"] as? String)?.hasSuffix("/insertAll") == true }
            .sorted { ($0["n"] as? Int ?? 0) < ($1["n"] as? Int ?? 0) }
    }

    /// insertIds the server stored, with repeats (each should appear once).
    var stored: [String] { inserts.flatMap { $0["stored"] as? [String] ?? [] } }
}

struct FakeServerError: Error, CustomStringConvertible {
    var description: String { "fake_bigquery.py did not start" }
}
