import Foundation
import SluiceConfig
import SluiceCore

/// A `bigquery` target of `sluice.yml`, with the streaming knobs resolved to numbers.
public struct BigQuerySettings: Sendable {
    public var project: String
    public var dataset: String
    public var location: String?
    /// The service-account key file (absolute), if any.
    public var credentials: String?
    /// The API root, e.g. `https://bigquery.googleapis.com` or an emulator's `http://127.0.0.1:9050`.
    public var endpoint: String
    /// True when `endpoint` overrides the real API: no OAuth unless a key file is named.
    public var isEmulator: Bool
    /// Add columns that the schema file has and the table lacks (as NULLABLE).
    public var allowNewColumns = false
    /// At most this many rows and bytes per insertAll request.
    public var maxRows = 500
    public var maxBytes = 5_000_000
    /// A request is sent at least this often while rows wait.
    public var flushInterval: Duration = .milliseconds(200)
    /// Requests in flight at once.
    public var maxInFlight = 4
    /// Rows waiting for BigQuery (in memory and the state store) before the extract waits (back-pressure).
    public var bufferRows = 50_000
    /// How long a run waits while BigQuery takes no rows (at its end, to drain the buffer;
    /// in its middle, when the buffer is full) before it gives up; what is left stays in the
    /// state store and is sent by the partition's next run.
    public var drainTimeout: Duration = .seconds(600)
    /// Backoff of retries: doubles from `retryBase` up to `retryMax`, with full jitter.
    public var retryBase: Duration = .milliseconds(200)
    public var retryMax: Duration = .seconds(30)
    /// Timeout of one HTTP request.
    public var requestTimeout: Double = 60

    public static let defaultEndpoint = "https://bigquery.googleapis.com"

    public init(project: String, dataset: String, endpoint: String? = nil) {
        self.project = project
        self.dataset = dataset
        self.endpoint = endpoint ?? Self.defaultEndpoint
        self.isEmulator = endpoint != nil
    }

    /// From a target's settings. Relative key files are resolved in `root`;
    /// `GOOGLE_APPLICATION_CREDENTIALS` is used when the target names none (and it is not an emulator).
    public static func from(_ target: TargetSpec, root: String, environment: [String: String]) throws(ConfigurationError) -> BigQuerySettings {
        let s = target.settings
        func fail(_ message: String) -> ConfigurationError {
            ConfigurationError([Diagnostic(target.location, "bigquery target `\(target.name)`: \(message)")])
        }
        guard let project = s["project"], let dataset = s["dataset"] else { throw fail("needs `project` and `dataset`") }
        var out = BigQuerySettings(project: project, dataset: dataset, endpoint: s["endpoint"].map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 })
        out.location = s["location"]
        if let c = s["credentials"] {
            out.credentials = RunContext.resolve(environment.expandingVariables(in: c), in: root)
        } else if !out.isEmulator, let c = environment["GOOGLE_APPLICATION_CREDENTIALS"], !c.isEmpty {
            out.credentials = RunContext.resolve(c, in: root)
        }
        if !out.isEmulator, out.credentials == nil {
            throw fail("needs `credentials` (a service-account JSON key file) or GOOGLE_APPLICATION_CREDENTIALS")
        }
        // ProjectSpec checked these (types and ranges, at their line and column); a target built
        // in code is checked again here.
        func int(_ key: String) throws(ConfigurationError) -> Int? {
            guard let text = s[key] else { return nil }
            let range = ProjectSpec.bigQueryNumbers[key]!
            guard let n = Int(text), range.contains(n) else { throw fail("`\(key)` must be between \(range.lowerBound) and \(range.upperBound)") }
            return n
        }
        if let v = s["allow_new_columns"] {
            guard v == "true" || v == "false" else { throw fail("`allow_new_columns` must be true or false") }
            out.allowNewColumns = v == "true"
        }
        if let n = try int("max_rows") { out.maxRows = n }
        if let n = try int("max_bytes") { out.maxBytes = n }
        if let n = try int("flush_ms") { out.flushInterval = .milliseconds(n) }
        if let n = try int("max_in_flight") { out.maxInFlight = n }
        if let n = try int("buffer_rows") { out.bufferRows = n }
        if let n = try int("drain_timeout_s") { out.drainTimeout = .seconds(n) }
        if let n = try int("retry_max_ms") { out.retryMax = .milliseconds(n); out.retryBase = min(out.retryBase, out.retryMax) }
        if let n = try int("request_timeout_s") { out.requestTimeout = Double(n) }
        return out
    }
}

extension [String: String] {
    /// `${NAME}` replaced by the variable's value (empty when unset).
    func expandingVariables(in text: String) -> String {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${"), let close = rest[open.upperBound...].firstIndex(of: "}") {
            out += rest[..<open.lowerBound]
            out += self[String(rest[open.upperBound..<close])] ?? ""
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}
