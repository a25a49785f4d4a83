import Foundation
import SluiceCore
@testable import SluiceEnrich
import SluiceSQLite
import SluiceTestSupport
import Testing

@Suite struct RateLimitTests {
    struct Event { var id: Int; var fp: String; var t: Int64 }

    /// A day of events: a few fingerprints, one of them bursting, in time order with some
    /// ties and a few late (out-of-order) events.
    static func events() -> [Event] {
        var rng = SplitMix64(seed: 42)
        var out: [Event] = []
        var t: Int64 = Timestamp.parse("2026-11-18T00:00:00Z")!
        for id in 0..<900 {
            let burst = (300..<400).contains(id)
            t += Int64(rng.next() % (burst ? 60 : 240)) * 1_000_000 // up to 1 or 4 minutes apart; 0 gives ties
            let fp = burst || id % 7 == 0 ? "burst" : "fp\(rng.next() % 5)"
            var time = t
            if id % 97 == 0 { time -= 2 * 3_600_000_000 } // late by two hours
            out.append(Event(id: id, fp: fp, t: time))
        }
        return out
    }

    /// The definition, written plainly: a record counts itself and the records before it
    /// in input order with the same key whose times are in (t - window, t].
    static func oracle(_ events: [Event], window: Int64) -> [Int] {
        events.indices.map { i in
            events[...i].filter { $0.fp == events[i].fp && $0.t > events[i].t - window && $0.t <= events[i].t }.count
        }
    }

    static func records(_ events: ArraySlice<Event>) -> RecordBatch {
        RecordBatch(records: events.map {
            Record(fields: Fields(["fp": .string($0.fp), "ts": .string(Timestamp.format($0.t))]),
                   position: SourcePosition(file: "f", line: $0.id + 1), key: "k\($0.id)")
        })
    }

    static func run(_ events: [Event], chunks: [Int], state: SQLiteStateStore, stage: RateLimit) throws -> [Int] {
        var counts: [Int] = []
        var start = 0
        for size in chunks + [events.count] {
            let end = min(events.count, start + size)
            guard start < end else { break }
            var batch = records(events[start..<end])
            let context = RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                     logger: .init(label: "t"), state: state)
            try stage.apply(&batch, context: context)
            counts += batch.records.map { Int(truncatingIfNeeded: { if case .int(let n)? = $0.fields["rate_count"] { return n }; return -1 }($0)) }
            start = end
        }
        return counts
    }

    static let stage = RateLimit(key: FieldPath("fp")!, time: FieldPath("ts")!, window: 3_600_000_000, limit: 30,
                                 countField: "rate_count", tagField: "rate_limited", retention: 2 * 86_400_000_000)

    @Test(arguments: [[900], [1, 2, 3, 500], [50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50], [7, 13, 400, 1]])
    func sameCountsWhateverTheRunBoundaries(chunks: [Int]) throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let events = Self.events()
        let counts = try Self.run(events, chunks: chunks, state: state, stage: Self.stage)
        #expect(counts == Self.oracle(events, window: 3_600_000_000))
        #expect(counts.contains { $0 > 30 }, "the burst should pass its limit")
    }

    /// Many records of one key at one time in a batch (three or more: they share one
    /// stored count, looked up once), after events of earlier batches: counts as the
    /// definition gives them.
    @Test(arguments: [[300], [7, 50, 300], [4, 4, 4, 4, 4, 4, 300], [100, 1, 300]])
    func recordsOfOneKeyAtOneTimeShareTheirStoredCount(chunks: [Int]) throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let t0 = Timestamp.parse("2026-11-18T10:00:00Z")!
        // Two keys taking turns; each (key, time) four or five times, a minute apart.
        let events = (0..<300).map { Event(id: $0, fp: "k\($0 % 2)", t: t0 + Int64($0 / 9) * 60_000_000) }
        let counts = try Self.run(events, chunks: chunks, state: state, stage: Self.stage)
        #expect(counts == Self.oracle(events, window: 3_600_000_000))
    }

    /// A crash after part of the input, then the whole input again (a replay), or a
    /// replace of the day: the replayed records keep their counts.
    @Test func replaysKeepTheirCounts() throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let events = Self.events()
        _ = try Self.run(Array(events.prefix(430)), chunks: [100], state: state, stage: Self.stage)
        let again = try Self.run(events, chunks: [64], state: state, stage: Self.stage)
        #expect(again == Self.oracle(events, window: 3_600_000_000))
        let replaced = try Self.run(events, chunks: [900], state: state, stage: Self.stage)
        #expect(replaced == again)
    }

    /// Window events wait in memory until a segment commit writes them (one transaction
    /// per segment instead of one per batch). Counts must not depend on where commits fall,
    /// on reopening the store after a commit, or on a crash that loses uncommitted events
    /// together with their records (the next run reads those records again).
    @Test func countsSurviveCommitsReopensAndLostPendingEvents() throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let events = Self.events()
        let oracle = Self.oracle(events, window: 3_600_000_000)
        let commit = SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [:], receipts: [], finishesReplace: false)
        var counts: [Int] = []
        do {
            let state = try SQLiteStateStore(path: path)
            counts += try Self.run(Array(events[0..<250]), chunks: [100], state: state, stage: Self.stage)
            try state.commit(commit)
            counts += try Self.run(Array(events[250..<500]), chunks: [60], state: state, stage: Self.stage)
            try state.commit(commit)
        }
        do {
            // Reopened: the committed events are in the database; these 300 are only pending.
            let state = try SQLiteStateStore(path: path)
            let lost = try Self.run(Array(events[500..<800]), chunks: [70], state: state, stage: Self.stage)
            #expect(lost == Array(oracle[500..<800]))
            // ... and the process dies before a commit.
        }
        do {
            let state = try SQLiteStateStore(path: path)
            counts += try Self.run(Array(events[500...]), chunks: [33], state: state, stage: Self.stage)
            try state.commit(commit)
            #expect(counts == oracle)
            // A replay of everything after the commit: the records keep their counts.
            #expect(try Self.run(events, chunks: [128], state: state, stage: Self.stage) == oracle)
        }
    }

    /// Pending events older than a prune's limit are forgotten like stored ones.
    @Test func pruneForgetsPendingEvents() throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let t0 = Timestamp.parse("2026-11-18T10:00:00Z")!
        try state.addWindowEvents(scope: "s", (0..<10).map { WindowEvent(key: "k", time: t0 + Int64($0), recordKey: "r\($0)") })
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [:], receipts: [], finishesReplace: false))
        try state.addWindowEvents(scope: "s", (10..<20).map { WindowEvent(key: "k", time: t0 + Int64($0), recordKey: "r\($0)") })
        #expect(try state.windowCount(scope: "s", key: "k", after: t0 - 1, upTo: t0 + 100, maxSequence: nil) == 20)
        try state.pruneWindowEvents(scope: "s", before: t0 + 15)
        #expect(try state.windowCount(scope: "s", key: "k", after: t0 - 1, upTo: t0 + 100, maxSequence: nil) == 5)
        #expect(try state.windowSequences(scope: "s", [3, 12, 17].map { WindowEvent(key: "k", time: t0 + Int64($0), recordKey: "r\($0)") }).keys.sorted() == ["r17"])
        try state.flushWindowEvents()
        #expect(try state.windowCount(scope: "s", key: "k", after: t0 - 1, upTo: t0 + 100, maxSequence: nil) == 5)
    }

    /// Durations by hand: a value that overflowed Int64 microseconds crashed the
    /// configuration's check; one past 36,500 days could overflow a time minus it.
    @Test(arguments: [("30s", 30_000_000), ("15m", 900_000_000), ("1h", 3_600_000_000), ("2d", 172_800_000_000),
                      ("36500d", 3_153_600_000_000_000), ("36501d", nil), ("9999999999999d", nil), ("9223372036854775807s", nil),
                      ("0s", nil), ("-1h", nil), ("1w", nil), ("h", nil), ("", nil)] as [(String, Int64?)])
    func durations(text: String, micros: Int64?) {
        #expect(RateLimit.duration(text) == micros)
    }

    /// Event times past years 1–9999 (epoch seconds near Int64's limits) leave the record
    /// without a count (it crashed: the time minus the window overflowed); the others count.
    @Test func outOfRangeTimesAreNotCounted() throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let times: [Value] = [.int(-9_223_372_036_854), .int(253_402_300_800), .double(-9e12), .int(1_794_996_000), .int(253_402_300_799),
                              .int(-62_135_596_800), .int(-62_135_596_801)]
        var batch = RecordBatch(records: times.enumerated().map {
            Record(fields: Fields(["fp": .string("a"), "ts": $0.element]), position: SourcePosition(file: "f", line: $0.offset + 1), key: "k\($0.offset)")
        })
        try Self.stage.apply(&batch, context: RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p",
                                                         partition: Partition("2026-11-18", granularity: .day)!, logger: .init(label: "t"), state: state))
        // 2026-11-18T10:00:00Z, 9999-12-31T23:59:59Z and 0001-01-01T00:00:00Z are in range, each alone in its hour.
        #expect(batch.records.map { $0.fields["rate_count"] } == [.null, .null, .null, .int(1), .int(1), .int(1), .null])
    }

    @Test func tagsFollowTheLimit() throws {
        let dir = try TestSupport.scratchDirectory("rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let t0 = Timestamp.parse("2026-11-18T10:00:00Z")!
        // 32 sign-ups 90 s apart: the 31st and 32nd pass a limit of 30 an hour.
        let events = (0..<32).map { Event(id: $0, fp: "heavy", t: t0 + Int64($0) * 90_000_000) }
        var batch = Self.records(events[...])
        try Self.stage.apply(&batch, context: RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p",
                                                         partition: Partition("2026-11-18", granularity: .day)!, logger: .init(label: "t"), state: state))
        #expect(batch.records.map { $0.fields["rate_limited"] } == (0..<32).map { .bool($0 >= 30) })
    }
}

@Suite struct RedactTests {
    /// The event of seed 002, abridged, with PII where the seed's key paths point.
    static let event = #"""
    {"name":"idv_socure_shadow_mode_proofing_result","properties":{"event_properties":{"resolution_result":{"success":true,
    "context":{"stages":{"resolution":{"success":true,"errors":{"ssn":"123-45-6789"},"transaction_id":"resolution-mock-transaction-id-123"},
    "state_id":{"errors":{}}}},"ssn_is_unique":true},"socure_result":{"verified_attributes":["address","ssn","dob"]}},
    "user_id":"96d74912-6af8-4106-8d93-7485f04a3137","users":[{"ssn":"1","n":1},{"ssn":"2","n":2}]},"time":"2024-08-22T19:25:45.678Z"}
    """#

    static func redact(_ paths: [String], mode: Redact.Mode, secret: String? = nil) throws -> Value {
        guard case .object(let fields) = try JSONParser.parse(event.replacingOccurrences(of: "\n", with: "")) else { fatalError() }
        var batch = RecordBatch(records: [Record(fields: fields, position: SourcePosition(file: "events.log", line: 1))])
        let stage = RedactStage(paths: paths.map { Redact.parsePath($0)! }, mode: mode, secretVariable: secret == nil ? nil : "SLUICE_TEST_KEY")
        try stage.apply(&batch, context: RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                                    logger: .init(label: "t"), environment: secret.map { ["SLUICE_TEST_KEY": $0] } ?? [:]))
        return .object(batch.records[0].fields)
    }

    static let seedPath = "properties.event_properties.resolution_result.context.stages.resolution.errors.ssn"

    @Test func removesTheSeedsKeyPaths() throws {
        let out = try Self.redact([Self.seedPath, "properties.users.*.ssn", "properties.user_id"], mode: .remove)
        #expect(out.value(at: FieldPath(Self.seedPath)!) == nil)
        #expect(out.value(at: FieldPath("properties.event_properties.resolution_result.context.stages.resolution.transaction_id")!) != nil)
        #expect(out.value(at: FieldPath("properties.users")!) == .array([.object(Fields(["n": .int(1)])), .object(Fields(["n": .int(2)]))]))
        #expect(out.value(at: FieldPath("properties.user_id")!) == nil)
        #expect(!JSONWriter.string(out).contains("123-45-6789"))
    }

    @Test func rubyStylePathsWork() throws {
        let out = try Self.redact(["[:properties, :event_properties, :resolution_result, :context, :stages, :resolution, :errors, :ssn]"], mode: .remove)
        #expect(out.value(at: FieldPath(Self.seedPath)!) == nil)
    }

    /// HMAC-SHA256 with the secret, as Python's hmac module computes it.
    @Test func hashesWithAKeyedHashThatPythonAgreesWith() throws {
        let secret = "s3cr3t-ключ"
        let out = try Self.redact([Self.seedPath, "properties.users.*.ssn"], mode: .hash, secret: secret)
        let script = "import hmac,hashlib,sys\nfor v in sys.argv[2:]: print(hmac.new(sys.argv[1].encode(), v.encode(), hashlib.sha256).hexdigest())"
        let dir = try TestSupport.scratchDirectory("hmac")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try script.write(toFile: dir + "/h.py", atomically: true, encoding: .utf8)
        let expected = String(decoding: try TestSupport.python(script: dir + "/h.py", [secret, "123-45-6789", "1", "2"]), as: UTF8.self)
            .split(separator: "\n").map(String.init)
        #expect(out.value(at: FieldPath(Self.seedPath)!) == .string(expected[0]))
        #expect(out.value(at: FieldPath("properties.users.0.ssn")!) == .string(expected[1]))
        #expect(out.value(at: FieldPath("properties.users.1.ssn")!) == .string(expected[2]))
        #expect(!JSONWriter.string(out).contains(secret))
    }

    @Test func aMissingSecretNamesTheVariableNotAValue() throws {
        #expect(throws: MissingSecret.self) { _ = try Self.redact([Self.seedPath], mode: .hash, secret: "") }
    }
}

@Suite struct EmailDomainTests {
    @Test(arguments: [
        ("a@gmul.com", "gmail.com"), ("a@gmial.com", "gmail.com"), ("a@hotmial.com", "hotmail.com"), ("a@yaho.com", "yahoo.com"),
        ("a@gmail.con", "gmail.com"), ("a@GMAIL.CO", "gmail.com"), ("a@mai.ru", "mail.ru"), ("a@yandex.ry", "yandex.ru"),
        ("a@gmail.com", nil), ("a@mail.ru", nil), ("a@example.org", nil), ("a@company.io", nil), ("not an email", nil),
    ])
    func suggestsTheIntendedProvider(email: String, expected: String?) {
        let at = email.lastIndex(of: "@").map { email[email.index(after: $0)...].lowercased() }
        #expect(at.flatMap { EmailDomain.suggest($0, providers: EmailDomain.commonProviders) } == expected)
    }

    /// Optimal string alignment distances, from the textbook cases (Damerau's transposition
    /// counted once; `ca`/`abc` is 3, not the unrestricted Damerau-Levenshtein 2, because
    /// a transposed pair is not edited again), non-ASCII counted in UTF-8 bytes, and the
    /// limit: past it, `limit + 1`.
    @Test(arguments: [
        ("kitten", "sitting", 5, 3), ("gmial.com", "gmail.com", 5, 1), ("ca", "abc", 5, 3), ("", "abc", 5, 3), ("abc", "", 5, 3),
        ("", "", 5, 0), ("same", "same", 5, 0), ("abcdef", "badcfe", 5, 3), ("flaw", "lawn", 5, 2), ("ş", "s", 5, 2),
        ("gmail.com", "g", 2, 3), ("kitten", "sitting", 2, 3), ("a", "bcd", 1, 2),
    ])
    func distancesAreOptimalStringAlignment(a: String, b: String, limit: Int, expected: Int) {
        let d = EmailDomain.distance(a, b, limit: limit)
        // Within the limit the exact distance; past it, anything above the limit.
        if expected <= limit { #expect(d == expected) } else { #expect(d > limit) }
        #expect(EmailDomain.distance(b, a, limit: limit) == d)
    }
}

