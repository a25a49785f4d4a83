import Foundation
import SluiceMaxMind
import Testing

/// Broken databases give a thrown `MaxMindError`, never a crash, a hang or a wrong answer.
@Suite struct BadDataTests {
    /// Probes that cover both halves of the tree at several depths, IPv4 and IPv6.
    static let probes = ["0.0.0.0", "1.1.1.1", "1.2.3.4", "81.2.69.160", "128.0.0.0", "255.255.255.255", "::",
                         "::1", "2001:218::", "8000::", "ffff::1", "::ffff:1.1.1.1"]

    enum Outcome: Equatable {
        case ok
        case failed(String)
    }

    /// Opens, verifies, then looks up, decodes and reads a path for every probe; the
    /// first MaxMindError is the outcome. Any other error fails the test.
    static func exercise(_ path: String) -> Outcome {
        do {
            let db = try MaxMindDatabase(path: path)
            try db.verify()
            for probe in probes where db.metadata.ipVersion == 6 || !probe.contains(":") || probe.hasPrefix("::ffff:") {
                guard let entry = try db.lookup(IPAddress(probe)!) else { continue }
                let record = try db.decode(entry)
                _ = try db.value(entry, at: ["country", "iso_code"])
                _ = record.jsonString
            }
            return .ok
        } catch let error as MaxMindError {
            #expect(error.path == path)
            #expect(error.description.contains(path))
            return .failed(error.description)
        } catch {
            Issue.record("\(path): not a MaxMindError: \(error)")
            return .failed("\(error)")
        }
    }

    /// Files of bad-data/ that are valid databases: upstream's own readers expect them to
    /// open and answer lookups (they once crashed readers that read past the metadata,
    /// or overflowed time conversions of build_epoch).
    static let validInBadData: Set<String> = [
        "libmaxminddb/libmaxminddb-empty-array-last-in-metadata.mmdb",
        "libmaxminddb/libmaxminddb-empty-map-last-in-metadata.mmdb",
        "libmaxminddb/libmaxminddb-uint64-max-epoch.mmdb",
    ]

    @Test("bad-data files fail with a MaxMindError", arguments: Fixtures.badDatabases)
    func badData(name: String) throws {
        let path = Fixtures.maxmind + "/bad-data/" + name
        let outcome = Self.exercise(path)
        if Self.validInBadData.contains(name) {
            #expect(outcome == .ok, "\(name): \(outcome)")
            let db = try MaxMindDatabase(path: path)
            let entry = try #require(try db.lookup(addr("1.2.3.4")))
            #expect(try db.decode(entry) == .map([.init(key: "ip", value: .string("test"))]))
            if name.contains("uint64-max-epoch") { #expect(db.metadata.buildEpoch == .max) }
        } else {
            #expect(outcome != .ok, "\(name) was accepted")
        }
    }

    @Test func badDataListIsComplete() {
        #expect(Fixtures.badDatabases.count >= 21)
    }

    /// The broken databases of test-data/: which step fails, and that the failure is
    /// where the reference reader fails too (good addresses still answer).
    @Test func brokenTestDatabases() throws {
        #expect(throws: MaxMindError.self) { try MaxMindDatabase(path: Fixtures.testData + "/GeoIP2-City-Test-Invalid-Node-Count.mmdb") }
        for name in ["GeoIP2-City-Test-Broken-Double-Format.mmdb", "MaxMind-DB-test-broken-pointers-24.mmdb",
                     "MaxMind-DB-test-broken-search-tree-24.mmdb"] {
            let path = Fixtures.testData + "/" + name
            #expect(Self.exercise(path) != .ok, "\(name)")
            let db = try MaxMindDatabase(path: path)
            let ips = try ReferenceReaderTests.addresses(for: name)
            let reference = try Fixtures.referenceLookups(path, ips)
            var referenceErrors = 0
            for (ip, want) in zip(ips, reference) {
                // Where the reference fails (it decodes as it looks up), decode must fail.
                if let problem = ReferenceReaderTests.compare(db, ip, want) { Issue.record("\(name) \(problem)") }
                if want["error"] != nil { referenceErrors += 1 }
            }
            #expect(referenceErrors > 0 || name.contains("search-tree"), "\(name): the sample misses the broken records")
        }
    }

    @Test func missingAndNonDatabaseFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mmdb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, Data?)] = [
            ("missing.mmdb", nil), ("empty.mmdb", Data()), ("text.mmdb", Data("hello, world\n".utf8)),
            ("marker-only.mmdb", Data([0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8))),
        ]
        for (name, contents) in cases {
            let path = dir + "/" + name
            if let contents { try contents.write(to: URL(fileURLWithPath: path)) }
            #expect(throws: MaxMindError.self, "\(name)") { try MaxMindDatabase(path: path) }
        }
        do {
            _ = try MaxMindDatabase(path: dir)
            Issue.record("a directory opened")
        } catch let error as MaxMindError {
            #expect(error.description.contains("is a directory"))
        }
    }

    /// Thousands of corrupted copies of real databases (bytes overwritten, files cut
    /// short): each opens and answers, or throws a MaxMindError; none crashes or hangs.
    @Test(arguments: ["MaxMind-DB-test-decoder.mmdb", "GeoIP2-City-Test.mmdb", "MaxMind-DB-test-ipv4-28.mmdb",
                      "MaxMind-DB-test-metadata-pointers.mmdb"])
    func corruptedCopies(name: String) throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.testData + "/" + name)))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mmdb-fuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + name
        var rng = XorShift(seed: UInt64(name.utf8.count) * 7919)
        var failures = 0
        let rounds = 400
        for round in 0..<rounds {
            var bytes = original
            if round % 10 == 9 {
                bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            } else {
                // Mostly near the tree's start, the data and the metadata.
                for _ in 0...(rng.next() % 4) {
                    let i = Int(rng.next() % UInt64(bytes.count))
                    bytes[i] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            if case .failed = Self.exercise(path) { failures += 1 }
        }
        #expect(failures > 0, "\(name): no corruption was noticed in \(rounds) copies")
    }
}

/// Deeply nested data is rejected before it can exhaust a small thread stack (512 KiB,
/// the size of secondary threads on Apple platforms), and one database serves many
/// concurrent tasks.
@Suite struct ResourceTests {
    final class Result: @unchecked Sendable {
        // Written by the thread before it signals the semaphore; read after the wait.
        var outcomes: [String] = []
    }

    @Test func deepNestingOnASmallStack() throws {
        let result = Result()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            for name in ["libmaxminddb-deep-nesting.mmdb", "libmaxminddb-deep-array-nesting.mmdb"] {
                let path = Fixtures.maxmind + "/bad-data/libmaxminddb/" + name
                result.outcomes.append("\(BadDataTests.exercise(path))")
            }
            done.signal()
        }
        thread.stackSize = 512 * 1024
        thread.start()
        done.wait()
        #expect(result.outcomes.count == 2)
        #expect(result.outcomes.allSatisfy { $0.contains("nest deeper than 512") }, "\(result.outcomes)")
    }

    @Test func concurrentLookups() async throws {
        let db = try MaxMindDatabase(path: Fixtures.testData + "/GeoIP2-City-Test.mmdb")
        let ips = try ReferenceReaderTests.addresses(for: "GeoIP2-City-Test.mmdb").compactMap(IPAddress.init)
        let serial = try ips.map { ip in try db.lookup(ip).map { try db.value($0, at: ["country", "iso_code"]) } }
        let answers = try await withThrowingTaskGroup(of: [MMDBValue??].self) { group in
            for _ in 0..<8 {
                group.addTask { try ips.map { ip in try db.lookup(ip).map { try db.value($0, at: ["country", "iso_code"]) } } }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.count == 8 && answers.allSatisfy { $0 == serial })
    }
}
