import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

/// HTTP over URLSession. Every request gets its own ephemeral session: on Linux, a
/// session that reused a connection to a server that had restarted (an outage) kept
/// failing, so no connection outlives its request.
public struct HTTPClient: Sendable {
    public var timeout: Double
    public init(timeout: Double = 60) { self.timeout = timeout }

    public func send(method: String, url: String, headers: [String: String] = [:], body: [UInt8]? = nil) async throws(BigQueryError) -> HTTPResponse {
        guard let u = URL(string: url) else { throw BigQueryError("not a URL: \(url)") }
        var request = URLRequest(url: u, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        if let body { request.httpBody = Data(body) }
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = timeout
        configuration.httpMaximumConnectionsPerHost = 1
        configuration.urlCache = nil
        let session = URLSession(configuration: configuration)
        defer { session.finishTasksAndInvalidate() }
        let result: Result<HTTPResponse, BigQueryError> = await withCheckedContinuation { continuation in
            let task = session.dataTask(with: request) { data, response, error in
                if let error {
                    // Only the kind of failure: a URL error's text can hold the request URL, never a value.
                    let code = (error as? URLError)?.code.rawValue ?? 0
                    continuation.resume(returning: .failure(BigQueryError("\(method) \(u.host ?? "") failed (URL error \(code))", retryable: true,
                                                                          outcomeUnknown: true)))
                } else if let http = response as? HTTPURLResponse {
                    continuation.resume(returning: .success(HTTPResponse(status: http.statusCode, body: [UInt8](data ?? Data()))))
                } else {
                    continuation.resume(returning: .failure(BigQueryError("\(method) \(u.host ?? "") gave no HTTP response", retryable: true,
                                                                          outcomeUnknown: true)))
                }
            }
            task.resume()
        }
        return try result.get()
    }
}
