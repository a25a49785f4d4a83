import Foundation
import GRDB
import SluiceCore
import SluiceFiles
@testable import SluiceKit
import SluiceTestSupport
import Testing

/// The `callbacks` extract stage through `sluice run` and `reprocess`, on a copy of the
/// seed 000 samples: incremental reads, files still being written, the secret's absence,
/// and dead letters of a wrong key loaded after the fix.
@Suite struct CallbackPipelineTests {
    static let pipeline = "Pipelines/sms_delivery_failures.yml"
    static let day = "2026-11-18"

    static func project() throws -> String {
        let root = try TestSupport.scratchDirectory("callbacks")
        for item in ["Pipelines", "Schemas", "Samples", "sluice.yml"] {
            try FileManager.default.copyItem(atPath: TestSupport.repoRoot + "/" + item, toPath: root + "/" + item)
        }
        // Files copied now look freshly written: back-date them past the settle time.
        let old = Date().addingTimeInterval(-3600)
        let dir = root + "/Samples/callbacks/telesign/\(day)"
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) {
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: dir + "/" + f)
        }
        return root
    }

    static func expectedKeys(_ root: String) throws -> Set<String> {
        let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/Samples/expected/sms_delivery_failures/\(day).csv"))))
        let k = rows[0].firstIndex(of: "record_key")!
        return Set(rows.dropFirst().compactMap { $0[k] })
    }

    static func warehouseKeys(_ root: String) throws -> [String] {
        let db = try DatabaseQueue(path: root + "/.sluice/warehouse.sqlite")
        return try db.read { try String.fetchAll($0, sql: "SELECT record_key FROM sms_delivery_failures") }
    }

    static let key = ["TELESIGN_API_KEY": "test_api_key"]

    @Test func runsAgainWithoutDuplicatesAndReadsANewRequestFile() async throws {
        let root = try Self.project()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var console = CapturingConsole()
        #expect(await Commands.run(pipeline: Self.pipeline, partitions: [Self.day], target: nil, projectRoot: root, console: console, environment: Self.key) == 0,
                "\(console.errors)")
        let expected = try Self.expectedKeys(root)
        #expect(Set(try Self.warehouseKeys(root)) == expected)
        // Nothing new: nothing read.
        console = CapturingConsole()
        #expect(await Commands.run(pipeline: Self.pipeline, partitions: [Self.day], target: nil, projectRoot: root, console: console, environment: Self.key) == 0)
        #expect(EndToEndTests.numbers(in: console.output.last ?? "")["read"] == 0, "\(console.output)")
        // A new request file, still being written (cut short, just modified): left for later.
        let body = #"{"reference_id":"00000000000000000000000000000001","status":{"code":"200","description":"Delivered to handset","updated_on":"2026-11-18T23:00:00Z"}}"#
        let request = Self.signedRequest(body: body, receivedAt: "2026-11-18T23:00:01Z")
        let path = root + "/Samples/callbacks/telesign/\(Self.day)/raw-new.http"
        try Data(request.prefix(request.count - 10)).write(to: URL(fileURLWithPath: path))
        console = CapturingConsole()
        #expect(await Commands.run(pipeline: Self.pipeline, partitions: [Self.day], target: nil, projectRoot: root, console: console, environment: Self.key) == 0)
        #expect(EndToEndTests.numbers(in: console.output.last ?? "")["read"] == 0, "\(console.output)")
        // Complete now: read once.
        try Data(request).write(to: URL(fileURLWithPath: path))
        console = CapturingConsole()
        #expect(await Commands.run(pipeline: Self.pipeline, partitions: [Self.day], target: nil, projectRoot: root, console: console, environment: Self.key) == 0)
        let n = EndToEndTests.numbers(in: console.output.last ?? "")
        #expect(n["read"] == 1 && n["loaded"] == 1, "\(console.output) \(console.errors)")
        let keys = try Self.warehouseKeys(root)
        #expect(keys.count == expected.count + 1 && Set(keys).isSuperset(of: expected))
    }

    /// The seed's example request, made by Telesign's scheme with Python's hmac (not sluice's).
    static func signedRequest(body: String, receivedAt: String) -> [UInt8] {
        let script = """
            import base64, hashlib, hmac, sys
            body = sys.stdin.buffer.read()
            print(base64.b64encode(hmac.new(base64.b64decode("testapikey=="), body, hashlib.sha256).digest()).decode())
            """
        let file = NSTemporaryDirectory() + "/tsa-\(UUID().uuidString).py"
        try? script.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let signature = String(decoding: (try? TestSupport.python(script: file, input: Data(body.utf8))) ?? Data(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let head = "POST /-/phone_verification/telesign_callback HTTP/1.1\r\nContent-Type: application/json\r\n"
            + "Authorization: TSA test_cust_id:\(signature)\r\nX-Received-At: \(receivedAt)\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
        return Array((head + body).utf8)
    }

    @Test func aMissingKeyStopsTheRunNamingTheVariableOnly() async throws {
        let root = try Self.project()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: Self.pipeline, partitions: [Self.day], target: nil, projectRoot: root, console: console, environment: [:])
        #expect(status != 0)
        #expect(console.errors.joined().contains("TELESIGN_API_KEY"))
    }

    @Test func deadLettersOfAWrongKeyLoadAfterTheFix() async throws {
        let root = try Self.project()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var console = CapturingConsole()
        #expect(await Commands.run(pipeline: Self.pipeline, partitions: [Self.day], target: nil, projectRoot: root, console: console,
                                   environment: ["TELESIGN_API_KEY": "rotated_key"]) == 0)
        let n = EndToEndTests.numbers(in: console.output.last ?? "")
        #expect(n["loaded"] == 0 && n["rejected"] == n["read"], "\(console.output)")
        console = CapturingConsole()
        #expect(await Commands.reprocess(pipeline: Self.pipeline, partition: Self.day, projectRoot: root, console: console, environment: Self.key) == 0,
                "\(console.errors)")
        #expect(Set(try Self.warehouseKeys(root)) == (try Self.expectedKeys(root)), "\(console.output)")
        // What stays are the requests that are bad whatever the key.
        let expectedDead = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/Samples/expected/sms_delivery_failures/dead_letters.csv"))))
            .dropFirst().filter { $0[0] == Self.day }.count
        #expect(console.output.last?.contains("\(expectedDead) remain") == true, "\(console.output)")
    }
}
