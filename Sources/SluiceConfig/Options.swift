import SluiceCore

/// Reads the keys of one mapping node, reporting wrong types and, at `finish()`, every
/// key that nobody asked for (a misspelt option never passes silently).
public struct Options {
    public let node: ConfigNode
    public let diagnostics: DiagnosticCollector
    private var used: Set<String> = []
    private let entries: [ConfigNode.Entry]

    /// `what` names the node in messages (`extract`, `stage csv`).
    public init?(_ node: ConfigNode, what: String, diagnostics: DiagnosticCollector) {
        self.node = node
        self.diagnostics = diagnostics
        guard let entries = node.entries else {
            diagnostics.error(node.location, "\(what) must be a mapping, found \(node.typeName)")
            return nil
        }
        self.entries = entries
    }

    public var location: SourceLocation { node.location }

    public func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    public mutating func node(_ key: String) -> ConfigNode? {
        used.insert(key)
        return entries.first { $0.key == key }?.value
    }

    public func keyLocation(_ key: String) -> SourceLocation {
        entries.first { $0.key == key }?.keyLocation ?? node.location
    }

    private func missing(_ key: String) {
        diagnostics.error(node.location, "missing required key `\(key)`")
    }

    public mutating func string(_ key: String, required: Bool = false) -> String? {
        guard let n = node(key), !n.isNull else {
            if required { missing(key) }
            return nil
        }
        guard let s = n.scalar else {
            diagnostics.error(n.location, "`\(key)` must be a string, found \(n.typeName)")
            return nil
        }
        return s
    }

    public mutating func int(_ key: String, range: ClosedRange<Int>? = nil) -> Int? {
        guard let n = node(key), !n.isNull else { return nil }
        guard let s = n.scalar, let v = Int(s.replacingUnderscores()) else {
            diagnostics.error(n.location, "`\(key)` must be an integer, found \(n.scalar == nil ? n.typeName : "`\(n.scalar!)`")")
            return nil
        }
        if let range, !range.contains(v) {
            diagnostics.error(n.location, "`\(key)` must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return v
    }

    public mutating func bool(_ key: String) -> Bool? {
        guard let n = node(key), !n.isNull else { return nil }
        switch n.scalar?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            diagnostics.error(n.location, "`\(key)` must be true or false")
            return nil
        }
    }

    /// A list of strings; a single string is taken as a list of one.
    public mutating func stringList(_ key: String) -> [(String, SourceLocation)]? {
        guard let n = node(key), !n.isNull else { return nil }
        if let s = n.scalar { return [(s, n.location)] }
        guard let items = n.items else {
            diagnostics.error(n.location, "`\(key)` must be a list of strings, found \(n.typeName)")
            return nil
        }
        var out: [(String, SourceLocation)] = []
        for item in items {
            guard let s = item.scalar else {
                diagnostics.error(item.location, "`\(key)` must be a list of strings, found \(item.typeName) in it")
                continue
            }
            out.append((s, item.location))
        }
        return out
    }

    public mutating func oneOf<T: RawRepresentable>(_ key: String, _ type: T.Type) -> T? where T.RawValue == String, T: CaseIterable {
        guard let s = string(key) else { return nil }
        guard let v = T(rawValue: s) else {
            diagnostics.error(node(key)!.location, "`\(key)` must be one of \(T.allCases.map { "`\($0.rawValue)`" }.joined(separator: ", ")), found `\(s)`")
            return nil
        }
        return v
    }

    /// A field path (`headers.user-agent`).
    public mutating func path(_ key: String, required: Bool = false) -> FieldPath? {
        guard let s = string(key, required: required) else { return nil }
        guard let p = FieldPath(s) else {
            diagnostics.error(node(key)!.location, "`\(key)` is not a valid field path")
            return nil
        }
        return p
    }

    /// Reports the keys that were not read.
    public func finish(allowed extra: Set<String> = []) {
        for entry in entries where !used.contains(entry.key) && !extra.contains(entry.key) {
            let known = used.union(extra)
            let hint = Options.closest(entry.key, in: known).map { " (did you mean `\($0)`?)" } ?? ""
            diagnostics.error(entry.keyLocation, "unknown key `\(entry.key)`\(hint)")
        }
    }

    static func closest(_ word: String, in candidates: Set<String>) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = editDistance(word, c)
            if d <= max(1, c.count / 3), best == nil || d < best!.1 { best = (c, d) }
        }
        return best?.0
    }

    /// Edit distance where swapping two neighbours counts as one edit (`mdoe` → `mode`).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}

extension String {
    func replacingUnderscores() -> String { filter { $0 != "_" } }
}

/// Checks that a path pattern only uses placeholders a partition can expand.
public func checkPlaceholders(_ pattern: String, at location: SourceLocation, diagnostics: DiagnosticCollector) {
    var rest = pattern[...]
    while let open = rest.firstIndex(of: "{") {
        guard let close = rest[open...].firstIndex(of: "}") else {
            diagnostics.error(location, "unclosed `{` in `\(pattern)`")
            return
        }
        let name = String(rest[rest.index(after: open)..<close])
        if !Partition.placeholders.contains(name) {
            diagnostics.error(location, "unknown placeholder `{\(name)}` in `\(pattern)`; known: \(Partition.placeholders.sorted().map { "{\($0)}" }.joined(separator: ", "))")
        }
        rest = rest[rest.index(after: close)...]
    }
}
