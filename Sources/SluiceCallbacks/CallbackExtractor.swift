import Foundation
import SluiceConfig
import SluiceCore
import SluiceFiles

/// `callbacks`: archives of received vendor callbacks, each request as it arrived.
///
/// Two kinds of file, told apart by content, may be mixed under one `path`:
/// - JSON Lines archives (plain or gzip): one request an object, `received_at` (or
///   `time`), `method`, `path` (or `url`: path and query), `headers` (an object, or a list
///   of `[name, value]` pairs), and the raw body as a string in `body` (or Base64 in
///   `body_base64`). Read incrementally like `jsonl`.
/// - Raw HTTP/1.1 request files (a capture of one request a file). The time is the
///   `time_header` (default `X-Received-At`), else `Date`, else the file's modification
///   time. A file is read once; a file still being written (younger than 30 s and cut
///   short) is left for the next run.
///
/// Each request becomes one record: `received_at`, `method`, `path`, `query`, `headers`
/// (lower-case names), `content_type`, `body` (the body's fields, see `BodyDecoder`),
/// `body_text` (a body in no known format), `signed_by` (the verified customer) and, with
/// `raw_body: true`, `raw_body`. With `verify:`, a request whose vendor signature is
/// missing or wrong is a dead letter (`bad_signature`) with the reason; a request that
/// cannot be read is a dead letter (`bad_request`).
public struct CallbackExtractor: Extractor, PositionRereader {
    public var patterns: [String]
    public var maxRequestBytes: Int
    public var keepRawBody: Bool
    public var timeHeader: String
    public var scheme: SignatureScheme?

    public init(patterns: [String], maxRequestBytes: Int = 16 << 20, keepRawBody: Bool = false,
                timeHeader: String = "x-received-at", scheme: SignatureScheme? = nil) {
        self.patterns = patterns
        self.maxRequestBytes = maxRequestBytes
        self.keepRawBody = keepRawBody
        self.timeHeader = timeHeader
        self.scheme = scheme
    }

    static let rawPrefix = "http:"

    func decoder(_ context: RunContext) throws -> CallbackDecoder {
        var verifier: SignatureVerifier?
        if let scheme {
            guard let v = scheme.verifier(environment: context.environment) else { throw MissingSignatureKey(variable: scheme.variable) }
            verifier = v
        }
        return CallbackDecoder(verifier: verifier, keepRawBody: keepRawBody, timeHeader: timeHeader.lowercased())
    }

    public func open(_ context: RunContext) throws -> any RecordSource {
        let decoder = try decoder(context)
        var files: [String] = []
        for pattern in patterns {
            for file in globFiles(context.inputPath(context.partition.expand(pattern))) where !files.contains(file) {
                files.append(file)
            }
        }
        var archives: [String] = [], raw: [String] = []
        for file in files {
            if Self.isRawRequest(file) { raw.append(file) } else { archives.append(file) }
        }
        let inner = try JSONLinesExtractor.source(files: archives, context: context, maxLineBytes: maxRequestBytes)
        return CallbackSource(archives: inner, rawFiles: raw, root: context.projectRoot, decoder: decoder,
                              maxRequestBytes: maxRequestBytes, checkpoints: try context.checkpoints())
    }

    public func reread(_ positions: [SourcePosition], context: RunContext) throws -> any RecordSource {
        let decoder = try decoder(context)
        let archived = positions.filter { !($0.fileID ?? "").hasPrefix(Self.rawPrefix) }
        let raw = positions.filter { ($0.fileID ?? "").hasPrefix(Self.rawPrefix) }
        let inner = try JSONLinesExtractor(patterns: [], maxLineBytes: maxRequestBytes).reread(archived, context: context)
        return CallbackSource(archives: inner, rawFiles: raw.map { context.inputPath($0.file) }, root: context.projectRoot,
                              decoder: decoder, maxRequestBytes: maxRequestBytes, checkpoints: [:], expectedIDs: raw.map(\.fileID))
    }

    /// A file whose first bytes are an HTTP method and a space (archives start with `{`
    /// or are gzip).
    static func isRawRequest(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 17)) ?? Data()
        return HTTPRequestParser.looksLikeRequest(head)
    }

    public static func register(into registry: inout StageRegistry) {
        registry.extractor("callbacks") { o, ctx in
            let (patterns, selects) = pathPatterns(&o, ctx)
            let maxBytes = o.int("max_request_bytes", range: 1...(1 << 30)) ?? 16 << 20
            let raw = o.bool("raw_body") ?? false
            let header = o.string("time_header") ?? "X-Received-At"
            var scheme: SignatureScheme?
            if let v = o.node("verify") {
                scheme = verifyScheme(v, ctx)
            }
            o.finish()
            guard !patterns.isEmpty else { return nil }
            return BuiltExtractor(extractor: CallbackExtractor(patterns: patterns, maxRequestBytes: maxBytes, keepRawBody: raw,
                                                               timeHeader: header, scheme: scheme),
                                  pathSelectsPartition: selects)
        }
    }

    public enum Vendor: String, CaseIterable, Sendable { case telesign, hmac_sha256 }

    static func verifyScheme(_ node: ConfigNode, _ ctx: BuildContext) -> SignatureScheme? {
        guard var v = Options(node, what: "verify", diagnostics: ctx.diagnostics) else { return nil }
        guard let vendor = v.oneOf("vendor", Vendor.self) else {
            if !v.has("vendor") { ctx.diagnostics.error(v.location, "missing required key `vendor` (one of: telesign, hmac_sha256)") }
            return nil
        }
        var scheme: SignatureScheme?
        switch vendor {
        case .telesign:
            let customer = v.string("customer_id", required: true)
            let key = v.string("api_key_env", required: true)
            if let customer, let key { scheme = .telesign(customerID: customer, apiKeyVariable: key) }
        case .hmac_sha256:
            let header = v.string("header", required: true)
            let prefix = v.string("prefix") ?? ""
            let encoding = v.oneOf("encoding", SignatureScheme.DigestEncoding.self) ?? .hex
            let key = v.string("key_env", required: true)
            if let header, let key { scheme = .hmacSHA256(header: header, prefix: prefix, encoding: encoding, keyVariable: key) }
        }
        v.finish()
        return scheme
    }
}

/// A pipeline names a signature key variable that is not set. Names the variable only.
public struct MissingSignatureKey: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var description: String { "environment variable \(variable) (the callback signature key) is not set" }
}

/// Turns one received request into a record, or says why it is a dead letter.
struct CallbackDecoder {
    let verifier: SignatureVerifier?
    let keepRawBody: Bool
    let timeHeader: String

    enum Outcome {
        case record(Fields)
        case rejected(DeadLetter.Kind, String)
    }

    func decode(_ request: ReceivedRequest, receivedAt: Value) -> Outcome {
        if let verifier, let problem = verifier.problem(request) { return .rejected(.badSignature, problem) }
        let contentType = request.header("content-type")
        let format = BodyDecoder.format(contentType: contentType, body: request.body)
        let body: Value?
        do { body = try BodyDecoder.decode(request.body, as: format) } catch { return .rejected(.badRequest, error.description) }
        var fields = Fields()
        fields.reserveCapacity(10)
        fields.appendUnchecked("received_at", receivedAt)
        fields.appendUnchecked("method", .string(request.method))
        fields.appendUnchecked("path", .string(request.path))
        fields.appendUnchecked("query", request.query.map(Value.string) ?? .null)
        var headers = Fields()
        for (name, _) in request.headers where headers[name.lowercased()] == nil {
            headers.appendUnchecked(name.lowercased(), .string(request.header(name)!))
        }
        fields.appendUnchecked("headers", .object(headers))
        fields.appendUnchecked("content_type", contentType.map(Value.string) ?? .null)
        fields.appendUnchecked("body", body ?? .null)
        fields.appendUnchecked("body_text", body == nil ? .string(String(decoding: request.body, as: UTF8.self)) : .null)
        var signer = Value.null
        if case .telesign(let customer, _)? = verifier?.scheme { signer = .string(customer) }
        fields.appendUnchecked("signed_by", signer)
        if keepRawBody { fields.appendUnchecked("raw_body", .string(String(decoding: request.body, as: UTF8.self))) }
        return .record(fields)
    }

    /// A request from one archive line.
    func decodeArchived(_ line: Fields) -> Outcome {
        var headers: [(name: String, value: String)] = []
        switch line["headers"] {
        case .object(let h)?:
            for f in h {
                switch f.value {
                case .string(let s): headers.append((f.name, s))
                case .array(let items):
                    for case .string(let s) in items { headers.append((f.name, s)) }
                case .null: break
                default: return .rejected(.badRequest, "header \(f.name) is not a string")
                }
            }
        case .array(let pairs)?:
            for pair in pairs {
                guard case .array(let nv) = pair, nv.count == 2, case .string(let n) = nv[0], case .string(let v) = nv[1] else {
                    return .rejected(.badRequest, "`headers` must be an object or a list of [name, value] pairs")
                }
                headers.append((n, v))
            }
        case nil, .null?: break
        default: return .rejected(.badRequest, "`headers` must be an object or a list of [name, value] pairs")
        }
        let body: [UInt8]
        switch (line["body"], line["body_base64"]) {
        case (.string(let s)?, _): body = Array(s.utf8)
        case (_, .string(let b64)?):
            guard let d = Data(base64Encoded: b64) else { return .rejected(.badRequest, "`body_base64` is not Base64") }
            body = Array(d)
        case (nil, _), (.null?, _): body = []
        case (let v?, _):
            // A body archived already parsed: its JSON text (a signature cannot match it).
            body = Array(JSONWriter.string(v).utf8)
        }
        guard case .string(let target)? = line["path"] ?? line["url"] ?? line["target"] else {
            return .rejected(.badRequest, "the archived request has no `path`")
        }
        let method = line["method"]?.stringValue ?? "POST"
        let time = line["received_at"] ?? line["time"] ?? line["timestamp"] ?? .null
        return decode(ReceivedRequest(method: method, target: Self.stripOrigin(target), headers: headers, body: body), receivedAt: time)
    }

    /// `https://host/p?q` → `/p?q`.
    static func stripOrigin(_ target: String) -> String {
        guard let scheme = target.range(of: "://") else { return target }
        let rest = target[scheme.upperBound...]
        return rest.firstIndex(where: { $0 == "/" || $0 == "?" }).map { String(rest[$0...]) } ?? "/"
    }

    /// The time of a raw request: its time header, else `Date`, else the file's mtime.
    func receivedAt(_ request: ReceivedRequest, mtime: Int64) -> Value {
        if let t = request.header(timeHeader), Timestamp.parse(t) != nil { return .string(t) }
        if let d = request.header("date"), let micros = HTTPDate.parse(d) { return .string(Timestamp.format(micros)) }
        return .string(Timestamp.format(mtime))
    }
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 5.6.7) to microseconds.
enum HTTPDate {
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func parse(_ text: String) -> Int64? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let m = months.firstIndex(of: String(parts[2])),
              let year = Int(parts[3]), let date = CivilDate(year: year, month: m + 1, day: day) else { return nil }
        let hms = parts[4].split(separator: ":")
        guard hms.count == 3, let h = Int(hms[0]), let mi = Int(hms[1]), let s = Int(hms[2]), h < 24, mi < 60, s < 61 else { return nil }
        return (date.epochDay * 86_400 + Int64(h * 3600 + mi * 60 + s)) * 1_000_000
    }
}

final class CallbackSource: RecordSource {
    private let archives: any RecordSource
    private var rawFiles: [String]
    private var expectedIDs: [String?]
    private let root: String
    private let decoder: CallbackDecoder
    private let maxRequestBytes: Int
    private let checkpoints: [String: SourceCheckpoint]
    private var seen: Set<String> = []

    init(archives: any RecordSource, rawFiles: [String], root: String, decoder: CallbackDecoder, maxRequestBytes: Int,
         checkpoints: [String: SourceCheckpoint], expectedIDs: [String?]? = nil) {
        self.archives = archives
        self.rawFiles = rawFiles.reversed()
        self.expectedIDs = (expectedIDs ?? Array(repeating: nil, count: rawFiles.count)).reversed()
        self.root = root.hasSuffix("/") ? root : root + "/"
        self.decoder = decoder
        self.maxRequestBytes = maxRequestBytes
        self.checkpoints = checkpoints
    }

    func next(limit: Int) throws -> RecordBatch? {
        if var batch = try archives.next(limit: limit) {
            var out: [Record] = []
            out.reserveCapacity(batch.records.count)
            for record in batch.records {
                switch decoder.decodeArchived(record.fields) {
                case .record(let fields): out.append(Record(fields: fields, position: record.position))
                case .rejected(let kind, let message): batch.deadLetters.append(DeadLetter(kind: kind, position: record.position, message: message))
                }
            }
            batch.records = out
            return batch
        }
        guard !rawFiles.isEmpty else { return nil }
        var batch = RecordBatch()
        while batch.records.count + batch.deadLetters.count < limit, let path = rawFiles.popLast() {
            let expected = expectedIDs.popLast() ?? nil
            readRaw(path, expected: expected, into: &batch)
        }
        return batch
    }

    private func readRaw(_ path: String, expected: String?, into batch: inout RecordBatch) {
        let display = path.hasPrefix(root) ? String(path.dropFirst(root.count)) : path
        var st = stat()
        guard stat(path, &st) == 0, let data = FileManager.default.contents(atPath: path) else {
            batch.deadLetters.append(DeadLetter(kind: .readError, position: SourcePosition(file: display, line: 0, fileID: expected),
                                                message: "cannot read the request file"))
            return
        }
        let bytes = [UInt8](data)
        let id = CallbackExtractor.rawPrefix + ShortDigest.hex(bytes)
        let position = SourcePosition(file: display, line: 1, offset: 0, fileID: id)
        if let expected, expected != id {
            batch.deadLetters.append(DeadLetter(kind: .readError, position: SourcePosition(file: display, line: 1, fileID: expected),
                                                message: "the file no longer has the content this record came from"))
            return
        }
        // A copy of a request already read in this run, or read by an earlier run.
        guard seen.insert(id).inserted, checkpoints[id] == nil else { return }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000 + Int64(st.st_mtim.tv_nsec) / 1000
        let checkpoint = SourceCheckpoint(fileID: id, path: display, offset: Int64(bytes.count), line: 1, complete: true)
        if bytes.count > maxRequestBytes {
            batch.deadLetters.append(DeadLetter(kind: .lineTooLong, position: position,
                                                message: "request of \(bytes.count) bytes is longer than max_request_bytes (\(maxRequestBytes))"))
            batch.checkpoints.append(checkpoint)
            return
        }
        do {
            let request = try HTTPRequestParser.parse(bytes)
            switch decoder.decode(request, receivedAt: decoder.receivedAt(request, mtime: mtime)) {
            case .record(let fields): batch.records.append(Record(fields: fields, position: position))
            case .rejected(let kind, let message): batch.deadLetters.append(DeadLetter(kind: kind, position: position, message: message))
            }
        } catch {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            // Being written: leave it for a later run (no checkpoint).
            if expected == nil, Double(now.tv_sec - st.st_mtim.tv_sec) < 30 { return }
            batch.deadLetters.append(DeadLetter(kind: .badRequest, position: position, message: error.description))
        }
        batch.checkpoints.append(checkpoint)
    }
}
