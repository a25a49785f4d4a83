import CLazyLibs
import Dispatch
import Foundation

/// An error of the BigQuery sink. Messages name tables, columns, reasons and HTTP
/// statuses; never a row value or a secret.
public struct BigQueryError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// Worth retrying later (HTTP 429, 5xx, timeouts, broken connections).
    public var retryable: Bool
    /// The request may have taken effect although it failed (a broken connection, a
    /// timeout, a 5xx): rows are checked by key before they are sent again.
    public var outcomeUnknown: Bool
    public init(_ description: String, retryable: Bool = false, outcomeUnknown: Bool = false) {
        self.description = description
        self.retryable = retryable
        self.outcomeUnknown = outcomeUnknown
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
}

/// HTTP over libcurl, opened when the first request is sent (`CLazyLibs`: a run without
/// a BigQuery sink never maps libcurl and the ~30 libraries behind it). Every request has
/// a connection of its own: a connection reused to a server that had restarted (an
/// outage) kept failing, so none outlives its request. The blocking transfer runs on a
/// Dispatch thread, not on the caller's.
public struct HTTPClient: Sendable {
    public var timeout: Double
    public init(timeout: Double = 60) { self.timeout = timeout }

    public func send(method: String, url: String, headers: [String: String] = [:], body: [UInt8]? = nil) async throws(BigQueryError) -> HTTPResponse {
        guard let u = URL(string: url), u.scheme != nil else { throw BigQueryError("not a URL: \(url)") }
        let host = u.host ?? ""
        // One header a line for libcurl: a name or value with a line break would be a
        // header of its own (never sent; the text is not quoted, it may be a secret).
        var lines: [String] = []
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) {
            guard !name.contains(where: \.isNewline), !value.contains(where: \.isNewline) else {
                throw BigQueryError("\(method) \(host): the header \(name.filter { !$0.isNewline }) holds a line break")
            }
            lines.append("\(name): \(value)")
        }
        let request = Request(method: method, url: url, headers: lines.joined(separator: "\n"), body: body,
                              timeoutMilliseconds: Int(max(1, (timeout * 1000).rounded())))
        let result: Result<HTTPResponse, BigQueryError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: request.perform(host: host)) }
        }
        return try result.get()
    }

    private struct Request: Sendable {
        var method: String
        var url: String
        var headers: String
        var body: [UInt8]?
        var timeoutMilliseconds: Int

        func perform(host: String) -> Result<HTTPResponse, BigQueryError> {
            var response = sluice_http_response()
            defer { sluice_http_response_free(&response) }
            let code: Int32 = method.withCString { m in
                url.withCString { u in
                    headers.withCString { h in
                        if let body {
                            // An empty body has no address: a POST then sends no bytes.
                            return body.withUnsafeBufferPointer { b in
                                sluice_http_perform(m, u, h, b.baseAddress, b.count, timeoutMilliseconds, &response)
                            }
                        }
                        return sluice_http_perform(m, u, h, nil, 0, timeoutMilliseconds, &response)
                    }
                }
            }
            let message = withUnsafeBytes(of: &response.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if code == -1 {
                return .failure(BigQueryError("\(method) \(host) failed: \(message)"))
            }
            guard code == 0 else {
                // libcurl's text for its code only (its own messages can name the URL).
                return .failure(BigQueryError("\(method) \(host) failed (curl error \(code): \(message))", retryable: true, outcomeUnknown: true))
            }
            let bytes = response.body.map { [UInt8](UnsafeBufferPointer(start: $0, count: response.body_count)) } ?? []
            return .success(HTTPResponse(status: response.status, body: bytes))
        }
    }
}
