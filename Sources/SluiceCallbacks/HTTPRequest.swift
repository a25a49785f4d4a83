/// One received request as an archive keeps it: the raw body bytes exactly as they
/// arrived (a signature is computed over them), headers in arrival order.
public struct ReceivedRequest: Sendable, Equatable {
    public var method: String
    /// The request target: path and, after `?`, the query.
    public var target: String
    /// Header names as received; look them up with `header(_:)` (case-insensitive).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, target: String, headers: [(name: String, value: String)], body: [UInt8]) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// The values of a header joined with `, ` (RFC 9110 5.3), or nil.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        let values = headers.filter { $0.name.lowercased() == wanted }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    public var path: String { target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target }
    public var query: String? { target.firstIndex(of: "?").map { String(target[target.index(after: $0)...]) } }

    public static func == (a: ReceivedRequest, b: ReceivedRequest) -> Bool {
        a.method == b.method && a.target == b.target && a.body == b.body
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }
}

/// Why a raw request could not be read. Never quotes the request's content.
public struct RequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Reads an HTTP/1.1 request as written to a file by a capture (`nc -l > file`, a proxy
/// dump, `curl --trace`'s request part): request line, header fields, an empty line,
/// the body (RFC 9112). Line ends may be CRLF or a bare LF. The body is `Content-Length`
/// bytes, or the decoded chunks of `Transfer-Encoding: chunked`, or (neither) the rest
/// of the file.
public enum HTTPRequestParser {
    static let methodChars = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)

    /// Whether bytes look like the start of an HTTP/1.x request (a method, a space).
    public static func looksLikeRequest(_ head: some Collection<UInt8>) -> Bool {
        var count = 0
        for b in head {
            if b == 0x20 { return count > 0 }
            guard methodChars.contains(b), count < 16 else { return false }
            count += 1
        }
        return false
    }

    public static func parse(_ bytes: [UInt8]) throws(RequestError) -> ReceivedRequest {
        var i = 0
        func line() throws(RequestError) -> ArraySlice<UInt8> {
            guard let nl = bytes[i...].firstIndex(of: 0x0A) else { throw RequestError("the request ends inside its head (no empty line after the headers)") }
            var end = nl
            if end > i, bytes[end - 1] == 0x0D { end -= 1 }
            defer { i = nl + 1 }
            return bytes[i..<end]
        }
        let requestLine = try line()
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, looksLikeRequest(parts[0] + [0x20]), !parts[1].isEmpty,
              let version = String(validating: parts[2], as: UTF8.self), version == "HTTP/1.1" || version == "HTTP/1.0",
              let method = String(validating: parts[0], as: UTF8.self), let target = String(validating: parts[1], as: UTF8.self)
        else { throw RequestError("line 1 is not an HTTP/1.x request line (METHOD target HTTP/1.1)") }
        var headers: [(name: String, value: String)] = []
        var number = 1
        while true {
            let field = try line()
            number += 1
            if field.isEmpty { break }
            if field.first == 0x20 || field.first == 0x09 {
                throw RequestError("line \(number): a folded header line (obsolete line folding is not accepted)")
            }
            guard let colon = field.firstIndex(of: 0x3A), colon > field.startIndex,
                  !field[..<colon].contains(where: { $0 == 0x20 || $0 == 0x09 }),
                  let name = String(validating: field[..<colon], as: UTF8.self) else {
                throw RequestError("line \(number): not a header field (name: value)")
            }
            // Field values are ISO-8859-1 in old clients; keep bytes that are not UTF-8 as Latin-1.
            let rawValue = field[(colon + 1)...].drop { $0 == 0x20 || $0 == 0x09 }
            var trimmed = rawValue[...]
            while let last = trimmed.last, last == 0x20 || last == 0x09 { trimmed = trimmed.dropLast() }
            let value = String(validating: trimmed, as: UTF8.self) ?? String(trimmed.map { Character(Unicode.Scalar($0)) })
            headers.append((name, value))
        }
        var request = ReceivedRequest(method: method, target: target, headers: headers, body: [])
        let rest = bytes[i...]
        if let te = request.header("transfer-encoding"), te.lowercased().split(separator: ",").last?.trimmingSpaces == "chunked" {
            request.body = try dechunk(rest)
        } else if let cl = request.header("content-length") {
            let values = Set(cl.split(separator: ",").map { $0.trimmingSpaces })
            guard values.count == 1, let n = Int(values.first!), n >= 0 else { throw RequestError("Content-Length is not a number") }
            guard rest.count >= n else { throw RequestError("the body has \(rest.count) bytes, fewer than its Content-Length \(n)") }
            request.body = Array(rest.prefix(n))
        } else {
            request.body = Array(rest)
        }
        return request
    }

    static func dechunk(_ data: ArraySlice<UInt8>) throws(RequestError) -> [UInt8] {
        var out: [UInt8] = []
        var i = data.startIndex
        while true {
            guard let nl = data[i...].firstIndex(of: 0x0A) else { throw RequestError("a chunked body ends without its last chunk") }
            var sizeEnd = data[i..<nl].firstIndex(of: 0x3B) ?? nl  // chunk extensions
            if sizeEnd == nl, sizeEnd > i, data[sizeEnd - 1] == 0x0D { sizeEnd -= 1 }
            guard let text = String(validating: data[i..<sizeEnd], as: UTF8.self), let size = Int(text.trimmingSpaces, radix: 16), size >= 0 else {
                throw RequestError("a chunk size is not hexadecimal")
            }
            i = nl + 1
            if size == 0 { return out }  // trailer fields, if any, are ignored
            guard data.endIndex - i >= size else { throw RequestError("a chunk is shorter than its size") }
            out += data[i..<(i + size)]
            i += size
            if i < data.endIndex, data[i] == 0x0D { i += 1 }
            guard i < data.endIndex, data[i] == 0x0A else { throw RequestError("a chunk does not end with a line end") }
            i += 1
        }
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
