import Foundation

/// Helpers shared by the test targets: where the repository and the shared data are,
/// scratch folders, and running the independent Python reference scripts.
public enum TestSupport {
    /// The repository root (this file is at Sources/SluiceTestSupport/TestSupport.swift).
    public static let repoRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }()

    /// `../shared/data` beside the repository, or `SLUICE_SHARED_DATA`.
    public static var sharedData: String {
        ProcessInfo.processInfo.environment["SLUICE_SHARED_DATA"]
            ?? URL(fileURLWithPath: repoRoot).deletingLastPathComponent().appendingPathComponent("shared/data").path
    }

    public static func scratchDirectory(_ name: String = "t") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    public struct ProcessResult: Sendable {
        public var status: Int32
        /// True when the process ended by a signal (`status` is then the signal number).
        public var signaled: Bool = false
        public var stdout: Data
        public var stderr: String
        public var output: String { String(decoding: stdout, as: UTF8.self) }
    }

    /// Runs a program and collects its output (stdin from `input`).
    public static func run(_ executable: String, _ arguments: [String], input: Data? = nil, cwd: String? = nil,
                           environment: [String: String]? = nil) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        // Feed standard input from another thread: a child that answers while it reads
        // (a reference script) would otherwise block on a full pipe, and so would we.
        let writer = inp.fileHandleForWriting
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            if let input { writer.write(input) }
            try? writer.close()
            group.leave()
        }
        // Read both pipes fully before waiting, so a large output cannot block the child.
        let errBox = DataBox()
        group.enter()
        DispatchQueue.global().async {
            errBox.set(err.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return ProcessResult(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal, stdout: stdout,
                             stderr: String(decoding: errBox.get(), as: UTF8.self))
    }

    /// Starts a program, lets it run for `after`, sends it `signal`, and waits for it.
    public static func runAndSignal(_ executable: String, _ arguments: [String], cwd: String, environment: [String: String]? = nil,
                                    after: Duration, signal: Int32) async throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        if let environment { p.environment = environment }
        let errFile = try scratchDirectory("stderr") + "/err"
        _ = FileManager.default.createFile(atPath: errFile, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: errFile)
        try p.run()
        try await Task.sleep(for: after)
        if p.isRunning { kill(p.processIdentifier, signal) }
        while p.isRunning { try await Task.sleep(for: .milliseconds(5)) }
        let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        return ProcessResult(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal, stdout: Data(), stderr: err)
    }

    /// The Python used for reference checks: `SLUICE_PYTHON`, else `python3` on PATH.
    public static var python: String {
        if let p = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] { return p }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "/usr/bin/python3"
    }

    /// Runs a Python script with arguments; throws when Python is missing or the script fails,
    /// so that a missing reference never passes silently.
    public static func python(script: String, _ arguments: [String] = [], input: Data? = nil) throws -> Data {
        let r = try run(python, [script] + arguments, input: input)
        guard r.status == 0 else {
            throw ReferenceError(message: "python reference \(script) failed (\(r.status)): \(r.stderr)")
        }
        return r.stdout
    }

    public struct ReferenceError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// The built `sluice` executable beside the test bundle.
    public static var sluiceExecutable: String {
        let candidates = [Bundle.main.bundleURL.appendingPathComponent("sluice").path,
                          URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sluice").path,
                          repoRoot + "/.build/debug/sluice"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }
}

final class DataBox: @unchecked Sendable {
    // Guarded by the lock: written by one reader thread, read after the group's wait.
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data } }
}

/// A small deterministic random generator (SplitMix64) for test data and timings.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
