import Foundation
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceTestSupport
import Testing

/// geoip, asn and error_code in a real pipeline: MaxMind's test databases (expected
/// values from their JSON sources), an IP-to-ASN TSV file, and the samples' catalogs.
@Suite(.serialized) struct EnrichmentStageTests {
    static func runPipeline(lines: [String], stages: String, columns: [String], extraFiles: [String: String] = [:]) async throws -> ([[String?]], CapturingConsole) {
        let root = try TestSupport.scratchDirectory("enrich")
        for dir in ["Pipelines", "Schemas", "in/2026-11-18"] {
            try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        for (path, text) in extraFiles { try text.write(toFile: root + "/" + path, atomically: true, encoding: .utf8) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: root + "/in/2026-11-18/a.jsonl", atomically: true, encoding: .utf8)
        let schema = "[" + (columns + ["record_key"]).map { #"{"name": "\#($0)", "type": "STRING"}"# }.joined(separator: ", ") + "]"
        try schema.write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: {kind: jsonl, path: "in/{date}/*.jsonl", time: ts}
            transform:
            \(stages)
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: ["2026-11-18"], target: nil, projectRoot: root, console: console)
        #expect(status == 0, "\(console.errors)")
        let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/out/2026-11-18.csv")))).dropFirst()
        try? FileManager.default.removeItem(atPath: root)
        return (Array(rows), console)
    }

    static func line(_ id: Int, ip: String, cf: String? = nil, message: String? = nil) -> String {
        var fields = [#""id":"\#(id)""#, #""ts":"2026-11-18T10:00:00Z""#, #""ip":"\#(ip)""#]
        if let cf { fields.append(#""headers":{"cf-ipcountry":"\#(cf)"}"#) }
        if let message { fields.append(#""error":\#(JSONWriter.string(.string(message)))"#) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    @Test func geoipAndASNFromMaxMindDatabases() async throws {
        let data = TestSupport.sharedData + "/maxmind-db/test-data"
        let (rows, _) = try await Self.runPipeline(
            lines: [Self.line(1, ip: "81.2.69.160"), Self.line(2, ip: "2001:218::1"), Self.line(3, ip: "81.2.69.160", cf: "US"),
                    Self.line(4, ip: "81.2.69.160", cf: "XX"), Self.line(5, ip: "81.2.69.160", cf: "T1"), Self.line(6, ip: "10.0.0.1"),
                    Self.line(7, ip: "1.128.0.1"), Self.line(8, ip: "::ffff:81.2.69.160"), Self.line(9, ip: "not an ip")],
            stages: """
              - kind: geoip
                database: \(data)/GeoIP2-City-Test.mmdb
                cloudflare_header: headers.cf-ipcountry
                fields: {geo: country.iso_code, city: city.names.en}
              - kind: asn
                database: \(data)/GeoLite2-ASN-Test.mmdb
            """,
            columns: ["id", "geo", "city", "as_number", "as_description"])
        let byID = Dictionary(uniqueKeysWithValues: rows.map { ($0[0]!, Array($0[1...4])) })
        #expect(byID["1"] == ["GB", "London", nil, nil])
        #expect(byID["2"] == ["JP", nil, nil, nil])
        #expect(byID["3"]?[0] == "US")       // the Cloudflare header wins
        #expect(byID["4"]?[0] == "GB")       // XX is not a country
        #expect(byID["5"]?[0] == "GB")       // nor is T1 (Tor)
        #expect(byID["6"] == [nil, nil, nil, nil])
        #expect(byID["7"]?[2...] == ["1221", "Telstra Pty Ltd"])
        #expect(byID["8"] == ["GB", "London", nil, nil])
        #expect(byID["9"] == [nil, nil, nil, nil])
    }

    /// A database file replaced between runs (the same path) gives the new file's values:
    /// neither the opened database nor the values it remembers by record are reused.
    /// Expected values: MaxMind's reader (the Python maxminddb package) on each file.
    @Test func geoipAfterTheDatabaseFileIsReplaced() async throws {
        let data = TestSupport.sharedData + "/maxmind-db/test-data"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-geoip-replaced-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/geo.mmdb"
        let runs: [(String, [String: [String?]])] = [
            ("GeoIP2-City-Test.mmdb", ["1": ["GB", "London"], "2": ["JP", nil], "3": ["SE", "Linköping"]]),
            ("GeoIP2-Country-Test.mmdb", ["1": ["GB", nil], "2": ["JP", nil], "3": ["SE", nil]]),
            ("GeoIP2-Enterprise-Test.mmdb", ["1": ["GB", "London"], "2": [nil, nil], "3": ["SE", "Linköping"]]),
            ("GeoIP2-City-Test.mmdb", ["1": ["GB", "London"], "2": ["JP", nil], "3": ["SE", "Linköping"]]),
        ]
        for (name, want) in runs {
            try? FileManager.default.removeItem(atPath: file)
            try FileManager.default.copyItem(atPath: data + "/" + name, toPath: file)
            let lines = (0..<3).flatMap { n in
                [Self.line(1 + 10 * n, ip: "81.2.69.160"), Self.line(2 + 10 * n, ip: "2001:218::1"), Self.line(3 + 10 * n, ip: "89.160.20.112")]
            }
            let (rows, _) = try await Self.runPipeline(
                lines: lines,
                stages: """
                  - kind: geoip
                    database: \(file)
                    fields: {geo: country.iso_code, city: city.names.en}
                """,
                columns: ["id", "geo", "city"])
            #expect(rows.count == 9, "\(name)")
            for row in rows {
                guard let id = row[0], let n = Int(id) else { continue }
                #expect(Array(row[1...2]) == want[String(n % 10)], "\(name) id \(id)")
            }
        }
    }

    @Test func asnFromAnIPToASNTSVFile() async throws {
        let tsv = "range_start\trange_end\tAS_number\tcountry_code\tAS_description\n"
            + "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n"
            + "85.100.0.0\t85.111.255.255\t9121\tTR\tTTNET\n2a02:6b8::\t2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff\t13238\tRU\tYANDEX LLC\n"
        let (rows, _) = try await Self.runPipeline(
            lines: [Self.line(1, ip: "1.0.0.7"), Self.line(2, ip: "1.0.2.1"), Self.line(3, ip: "85.100.12.7"), Self.line(4, ip: "2a02:6b8::2:242"), Self.line(5, ip: "8.8.8.8")],
            stages: "  - {kind: asn, tsv: asn.tsv}", columns: ["id", "as_number", "as_description", "as_country_code"], extraFiles: ["asn.tsv": tsv])
        let byID = Dictionary(uniqueKeysWithValues: rows.map { ($0[0]!, Array($0[1...3])) })
        #expect(byID["1"] == ["13335", "CLOUDFLARENET", "US"])
        #expect(byID["2"] == [nil, nil, nil])
        #expect(byID["3"] == ["9121", "TTNET", "TR"])
        #expect(byID["4"] == ["13238", "YANDEX LLC", "RU"])
        #expect(byID["5"] == [nil, nil, nil])
    }

    /// The samples' catalog: one entry's text in English, Turkish (also upper-cased the
    /// Turkish way) and Russian gives one code; unknown texts are counted and reported.
    @Test func errorCodesFromLocalizedTexts() async throws {
        let catalogs = TestSupport.repoRoot + "/Samples/i18n/errors.*.yml"
        let (rows, console) = try await Self.runPipeline(
            lines: [Self.line(1, ip: "1.1.1.1", message: "Email has already been taken"),
                    Self.line(2, ip: "1.1.1.1", message: "E-posta zaten kullanılıyor"),
                    Self.line(3, ip: "1.1.1.1", message: "  E-POSTA ZATEN KULLANILIYOR "),
                    Self.line(4, ip: "1.1.1.1", message: "Этот адрес электронной почты уже занят."),
                    Self.line(5, ip: "1.1.1.1", message: "Пароль слишком короткий (минимум 22 символа)"),
                    Self.line(6, ip: "1.1.1.1", message: "Password is too short (minimum is 8 characters)"),
                    Self.line(7, ip: "1.1.1.1", message: "Something exploded"),
                    Self.line(8, ip: "1.1.1.1", message: "Something exploded"),
                    Self.line(9, ip: "1.1.1.1"),
                    // A text seen before in the batch: the same code and values again.
                    Self.line(10, ip: "1.1.1.1", message: "Пароль слишком короткий (минимум 22 символа)")],
            stages: "  - {kind: error_code, text: error, catalogs: [\"\(catalogs)\"], values_to: error_values}",
            columns: ["id", "error_code", "error_values"])
        let byID = Dictionary(uniqueKeysWithValues: rows.map { ($0[0]!, Array($0[1...2])) })
        for id in ["1", "2", "3", "4"] { #expect(byID[id] == ["errors.signup.email_taken", nil], "\(id)") }
        #expect(byID["5"] == ["errors.signup.password_too_short", #"{"count":22}"#])
        #expect(byID["6"] == ["errors.signup.password_too_short", #"{"count":8}"#])
        #expect(byID["10"] == ["errors.signup.password_too_short", #"{"count":22}"#])
        #expect(byID["7"] == ["UNKNOWN", nil])
        #expect(byID["9"] == [nil, nil])
        #expect(console.errors.contains { $0.contains("2 × Something exploded") }, "\(console.errors)")
    }

    /// A backfill builds the stage once for all its partitions: each partition's run
    /// reports its own unknown texts (they added up over the partitions), one after
    /// another and at the same time.
    @Test(arguments: [1, 2])
    func unknownTextsAreReportedPerPartition(parallel: Int) async throws {
        let root = try TestSupport.scratchDirectory("enrich")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let counts = ["2026-11-18": 2, "2026-11-19": 3, "2026-11-20": 1]
        for (date, n) in counts {
            try FileManager.default.createDirectory(atPath: root + "/in/" + date, withIntermediateDirectories: true)
            let lines = (0..<n).map { i in
                #"{"id":"\#(date)-\#(i)","ts":"\#(date)T10:00:00Z","error":"Something exploded"}"# + "\n" }
            try lines.joined().write(toFile: root + "/in/\(date)/a.jsonl", atomically: true, encoding: .utf8)
        }
        for dir in ["Pipelines", "Schemas"] { try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true) }
        try #"[{"name": "id", "type": "STRING"}, {"name": "error_code", "type": "STRING"}]"#.write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: {kind: jsonl, path: "in/{date}/*.jsonl", time: ts}
            transform:
              - {kind: error_code, text: error, catalogs: ["\(TestSupport.repoRoot)/Samples/i18n/errors.*.yml"]}
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: counts.keys.sorted(),
                                        options: .init(parallel: parallel), projectRoot: root, console: console)
        #expect(status == 0, "\(console.errors)")
        let reported = console.errors.filter { $0.contains("× Something exploded") }.map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(reported.sorted() == ["1 × Something exploded", "2 × Something exploded", "3 × Something exploded"], "\(console.errors)")
    }
}
