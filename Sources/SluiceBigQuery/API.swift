import Foundation
import SluiceCore

/// The BigQuery REST API calls sluice makes: datasets, tables, `tabledata.insertAll`, `jobs.query`.
public struct BigQueryAPI: Sendable {
    public var settings: BigQuerySettings
    let http: HTTPClient
    let tokens: TokenProvider?

    public init(settings: BigQuerySettings) throws(BigQueryError) {
        self.settings = settings
        http = HTTPClient(timeout: settings.requestTimeout)
        if let path = settings.credentials {
            tokens = TokenProvider(key: try ServiceAccountKey(path: path), http: http)
        } else {
            tokens = nil
        }
    }

    var root: String { settings.endpoint + "/bigquery/v2/projects/" + settings.project.pathEncoded }
    var datasetPath: String { root + "/datasets/" + settings.dataset.pathEncoded }
    func tablePath(_ table: String) -> String { datasetPath + "/tables/" + table.pathEncoded }
    public func tableName(_ table: String) -> String { "\(settings.project).\(settings.dataset).\(table)" }

    /// One call; the JSON answer (nil for an empty body). 401 renews the token once.
    func call(_ method: String, _ url: String, _ body: Value? = nil) async throws(BigQueryError) -> (status: Int, json: Value?) {
        var bytes: [UInt8]?
        if let body { bytes = []; JSONWriter.write(body, into: &bytes!) }
        for attempt in 0..<2 {
            var headers = ["Content-Type": "application/json", "Accept": "application/json"]
            if let tokens { headers["Authorization"] = "Bearer " + (try await tokens.token()) }
            let response = try await http.send(method: method, url: url, headers: headers, body: bytes)
            if response.status == 401, attempt == 0, let tokens {
                await tokens.invalidate()
                continue
            }
            return (response.status, response.body.isEmpty ? nil : try? JSONParser.parse(response.body))
        }
        throw BigQueryError("BigQuery refused the access token twice (HTTP 401)")
    }

    /// A failed call as an error: status, BigQuery's reason, and its message with quoted values replaced.
    func failure(_ what: String, _ status: Int, _ json: Value?) -> BigQueryError {
        var detail = ""
        if case .object(let o)? = json, case .object(let e)? = o["error"] {
            var reason = e["status"]?.stringValue
            if case .array(let errors)? = e["errors"], case .object(let first)? = errors.first { reason = first["reason"]?.stringValue ?? reason }
            if let reason { detail += " " + reason }
            if let m = e["message"]?.stringValue { detail += ": " + Redaction.message(m) }
        }
        let retryable = status == 429 || status == 408 || status >= 500
        return BigQueryError("\(what): HTTP \(status)\(detail)", retryable: retryable, outcomeUnknown: status >= 500)
    }

    // MARK: datasets and tables

    public func ensureDataset() async throws(BigQueryError) {
        let (status, json) = try await call("GET", datasetPath)
        if status == 200 { return }
        guard status == 404 else { throw failure("reading dataset \(settings.project).\(settings.dataset)", status, json) }
        var fields = Fields()
        fields.appendUnchecked("datasetReference", .object(Fields(["projectId": .string(settings.project), "datasetId": .string(settings.dataset)])))
        if let location = settings.location { fields.appendUnchecked("location", .string(location)) }
        let (s2, j2) = try await call("POST", root + "/datasets", .object(fields))
        guard s2 == 200 || s2 == 409 else { throw failure("creating dataset \(settings.project).\(settings.dataset)", s2, j2) }
    }

    /// The table's resource, or nil when it does not exist.
    public func getTable(_ table: String) async throws(BigQueryError) -> Value? {
        let (status, json) = try await call("GET", tablePath(table))
        if status == 404 { return nil }
        guard status == 200, let json else { throw failure("reading table \(tableName(table))", status, json) }
        return json
    }

    public func insertTable(_ table: String, schema: TableSchema, partitionColumn: String?) async throws(BigQueryError) {
        var fields = Fields()
        fields.appendUnchecked("tableReference", .object(Fields(["projectId": .string(settings.project), "datasetId": .string(settings.dataset),
                                                                  "tableId": .string(table)])))
        fields.appendUnchecked("schema", .object(Fields(["fields": .array(schema.fields.map(TableSchemas.json))])))
        if let partitionColumn {
            fields.appendUnchecked("timePartitioning", .object(Fields(["type": .string("DAY"), "field": .string(partitionColumn)])))
        }
        let (status, json) = try await call("POST", datasetPath + "/tables", .object(fields))
        guard status == 200 || status == 409 else { throw failure("creating table \(tableName(table))", status, json) }
    }

    /// Replaces the table's schema (only ever with the old fields plus new NULLABLE ones).
    public func patchSchema(_ table: String, fields: [Value]) async throws(BigQueryError) {
        let body = Value.object(Fields(["schema": .object(Fields(["fields": .array(fields)]))]))
        let (status, json) = try await call("PATCH", tablePath(table), body)
        guard status == 200 else { throw failure("adding columns to \(tableName(table))", status, json) }
    }

    // MARK: streaming

    public enum InsertOutcome: Sendable {
        /// Per-row errors by row index (rows not named were inserted).
        case inserted(errors: [Int: [RowError]])
        case tooLarge
    }

    public struct RowError: Sendable, Hashable {
        public var reason: String
        public var location: String
        public var message: String
    }

    /// `tabledata.insertAll` of rows (`insertId`, JSON object). Throws for failures of the
    /// request as a whole (retryable ones marked so).
    public func insertAll(_ table: String, rows: [(key: String, payload: [UInt8])]) async throws(BigQueryError) -> InsertOutcome {
        var body: [UInt8] = []
        body.reserveCapacity(rows.reduce(64) { $0 + $1.payload.count + $1.key.utf8.count + 24 })
        body.append(contentsOf: #"{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":false,"ignoreUnknownValues":false,"rows":["#.utf8)
        for (i, row) in rows.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: #"{"insertId":"#.utf8) // no array a row
            JSONWriter.writeString(row.key, into: &body)
            body.append(contentsOf: #","json":"#.utf8)
            body += row.payload
            body.append(UInt8(ascii: "}"))
        }
        body.append(contentsOf: "]}".utf8)
        var headers = ["Content-Type": "application/json"]
        var response: HTTPResponse?
        for attempt in 0..<2 {
            if let tokens { headers["Authorization"] = "Bearer " + (try await tokens.token()) }
            let r = try await http.send(method: "POST", url: tablePath(table) + "/insertAll", headers: headers, body: body)
            if r.status == 401, attempt == 0, let tokens { await tokens.invalidate(); continue }
            response = r
            break
        }
        guard let response else { throw BigQueryError("BigQuery refused the access token twice (HTTP 401)") }
        let json = response.body.isEmpty ? nil : try? JSONParser.parse(response.body)
        if response.status == 413 { return .tooLarge }
        guard response.status == 200 else {
            if response.status == 400, Self.isTooLarge(json) { return .tooLarge }
            throw failure("insertAll into \(tableName(table))", response.status, json)
        }
        var errors: [Int: [RowError]] = [:]
        if case .object(let o)? = json, case .array(let list)? = o["insertErrors"] {
            for item in list {
                guard case .object(let e) = item, let index = e["index"].flatMap(Self.int), index >= 0, index < rows.count else { continue }
                var rowErrors: [RowError] = []
                if case .array(let es)? = e["errors"] {
                    for x in es {
                        guard case .object(let f) = x else { continue }
                        rowErrors.append(RowError(reason: f["reason"]?.stringValue ?? "unknown", location: f["location"]?.stringValue ?? "",
                                                  message: Redaction.message(f["message"]?.stringValue ?? "")))
                    }
                }
                errors[index, default: []] += rowErrors.isEmpty ? [RowError(reason: "unknown", location: "", message: "")] : rowErrors
            }
        }
        return .inserted(errors: errors)
    }

    static func int(_ v: Value) -> Int? {
        switch v {
        case .int(let n): Int(n)
        case .string(let s): Int(s)
        case .double(let d): Int(d)
        default: nil
        }
    }

    /// BigQuery answers an oversized request with 400 and a message about the size.
    static func isTooLarge(_ json: Value?) -> Bool {
        guard case .object(let o)? = json, case .object(let e)? = o["error"] else { return false }
        let m = (e["message"]?.stringValue ?? "").lowercased()
        return m.contains("request payload size exceeds") || m.contains("request size") || m.contains("too large")
    }

    // MARK: queries

    /// Which of these keys the table holds in `column` (a `jobs.query`, answered in pages).
    public func existingKeys(_ table: String, column: String, keys: [String]) async throws(BigQueryError) -> Set<String> {
        guard !keys.isEmpty else { return [] }
        let list = keys.map(Self.sqlString).joined(separator: ", ")
        let sql = "SELECT DISTINCT `\(column)` FROM `\(settings.project).\(settings.dataset).\(table)` WHERE `\(column)` IN (\(list))"
        var fields = Fields()
        fields.appendUnchecked("query", .string(sql))
        fields.appendUnchecked("useLegacySql", .bool(false))
        fields.appendUnchecked("timeoutMs", .int(60_000))
        fields.appendUnchecked("maxResults", .int(Int64(keys.count) + 1))
        if let location = settings.location { fields.appendUnchecked("location", .string(location)) }
        var (status, json) = try await call("POST", root + "/queries", .object(fields))
        guard status == 200 else { throw failure("checking keys in \(tableName(table))", status, json) }
        var found: Set<String> = []
        var polls = 0
        while true {
            guard case .object(let o)? = json else { throw BigQueryError("checking keys in \(tableName(table)): an answer without JSON", retryable: true) }
            let complete = o["jobComplete"].map { if case .bool(let b) = $0 { b } else { $0.stringValue == "true" } } ?? true
            if complete, case .array(let rows)? = o["rows"] {
                for r in rows {
                    if case .object(let ro) = r, case .array(let f)? = ro["f"], case .object(let cell)? = f.first, let v = cell["v"]?.stringValue {
                        found.insert(v)
                    }
                }
            }
            let pageToken = o["pageToken"]?.stringValue
            guard !complete || pageToken != nil else { break }
            guard case .object(let ref)? = o["jobReference"], let jobID = ref["jobId"]?.stringValue else {
                if complete { break }
                throw BigQueryError("checking keys in \(tableName(table)): the query did not complete", retryable: true)
            }
            polls += 1
            if !complete { try? await Task.sleep(for: .milliseconds(min(2000, 100 * polls))) }
            var url = root + "/queries/" + jobID.pathEncoded + "?timeoutMs=60000"
            if let location = ref["location"]?.stringValue ?? settings.location { url += "&location=" + location.formEncoded }
            if complete, let pageToken { url += "&pageToken=" + pageToken.formEncoded }
            (status, json) = try await call("GET", url)
            guard status == 200 else { throw failure("checking keys in \(tableName(table))", status, json) }
        }
        return found
    }

    static func sqlString(_ s: String) -> String {
        var out = "'"
        for c in s.unicodeScalars {
            switch c {
            case "'": out += "\\'"
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "'"
    }
}

extension String {
    var pathEncoded: String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return addingPercentEncoding(withAllowedCharacters: allowed) ?? self
    }
}

/// What may appear in messages of BigQuery's answers.
public enum Redaction {
    /// BigQuery's messages can quote a row's value (`Cannot convert value "x"`): text between
    /// quotes (double, single or back quotes) becomes `<value>`.
    public static func message(_ text: String) -> String {
        var out = ""
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil; out += "<value>" }
            } else if c == "\"" || c == "'" || c == "`" {
                quote = c
            } else {
                out.append(c)
            }
        }
        if quote != nil { out += "<value>" }
        return out
    }
}
