import Yams

/// A place in a configuration file: `file:line:column` (1-based, columns in Unicode scalars).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// One problem in a configuration file, reported as `file:line:column: message`.
public struct Diagnostic: Error, Sendable, Hashable, CustomStringConvertible, Comparable {
    public var location: SourceLocation
    public var message: String

    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(message)" }

    public static func < (a: Diagnostic, b: Diagnostic) -> Bool {
        (a.location.file, a.location.line, a.location.column, a.message) < (b.location.file, b.location.line, b.location.column, b.message)
    }
}

/// All the problems found in a set of configuration files.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    public init(_ diagnostics: [Diagnostic]) { self.diagnostics = diagnostics.sorted() }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Collects diagnostics while a configuration is read, so that one pass reports them all.
public final class DiagnosticCollector {
    public private(set) var diagnostics: [Diagnostic] = []
    public init() {}
    public func error(_ location: SourceLocation, _ message: String) {
        diagnostics.append(Diagnostic(location, message))
    }
    public var hasErrors: Bool { !diagnostics.isEmpty }
}

/// A YAML (or JSON) node with the place it came from. Built from Yams' composed nodes,
/// so that every later error can point at a line and column.
public struct ConfigNode: Sendable {
    public enum Kind: Sendable {
        /// A scalar's text, and whether it was quoted (a quoted `"1"` is a string).
        case scalar(String, quoted: Bool)
        case sequence([ConfigNode])
        case mapping([Entry])
    }

    public struct Entry: Sendable {
        public var key: String
        public var keyLocation: SourceLocation
        public var value: ConfigNode
    }

    public var kind: Kind
    public var location: SourceLocation

    public var typeName: String {
        switch kind {
        case .scalar(let s, let quoted): (!quoted && (s == "~" || s == "null" || s.isEmpty)) ? "null" : "a scalar"
        case .sequence: "a list"
        case .mapping: "a mapping"
        }
    }

    public var isNull: Bool {
        if case .scalar(let s, let quoted) = kind { return !quoted && (s == "~" || s == "null" || s == "Null" || s == "NULL" || s.isEmpty) }
        return false
    }

    public var scalar: String? {
        if case .scalar(let s, _) = kind { return s }
        return nil
    }

    public var entries: [Entry]? {
        if case .mapping(let e) = kind { return e }
        return nil
    }

    public var items: [ConfigNode]? {
        if case .sequence(let s) = kind { return s }
        return nil
    }

    public subscript(key: String) -> ConfigNode? {
        entries?.first { $0.key == key }?.value
    }

    /// Parses a YAML or JSON document. Syntax errors come back as diagnostics with the
    /// line and column where the parser stopped.
    public static func parse(yaml text: String, file: String) throws(ConfigurationError) -> ConfigNode? {
        do {
            // No tag resolution: `convert` keeps each scalar's text and whether it was
            // quoted, and the options read them. (Yams' default resolver compiles its
            // rules with NSRegularExpression: ICU's regex engine and tables in resident
            // memory for the rest of the run, for tags nothing reads.)
            guard let node = try Yams.compose(yaml: text, .basic) else { return nil }
            var problems: [Diagnostic] = []
            let converted = convert(node, file: file, problems: &problems)
            if !problems.isEmpty { throw ConfigurationError(problems) }
            return converted
        } catch let error as ConfigurationError {
            throw error
        } catch let error as YamlError {
            throw ConfigurationError([diagnostic(for: error, file: file)])
        } catch {
            throw ConfigurationError([Diagnostic(SourceLocation(file: file, line: 1, column: 1), "cannot read the file: \(error)")])
        }
    }

    static func diagnostic(for error: YamlError, file: String) -> Diagnostic {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: file, line: mark.line, column: mark.column) }
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let extra = context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return Diagnostic(at(mark), "YAML syntax error: \(problem)\(extra)")
        case .reader(let problem, let offset, _, let yaml):
            var line = 1, column = 1
            if let offset {
                for (i, ch) in yaml.unicodeScalars.enumerated() {
                    if i >= offset { break }
                    if ch == "\n" { line += 1; column = 1 } else { column += 1 }
                }
            }
            return Diagnostic(SourceLocation(file: file, line: line, column: column), "cannot read the file: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams marks the first occurrence; point at the repetition, the line to fix.
            let key = duplicates.first ?? ""
            let lines = context.text.components(separatedBy: "\n")
            let first = context.mark
            for n in first.line..<lines.count {
                let line = Array(lines[n].unicodeScalars)
                let col = first.column - 1
                if line.count > col + key.unicodeScalars.count, String(String.UnicodeScalarView(line[col..<(col + key.unicodeScalars.count)])) == key,
                   line[..<col].allSatisfy({ $0 == " " || $0 == "-" }) {
                    let after = line[(col + key.unicodeScalars.count)...].drop { $0 == " " }
                    if after.first == ":" {
                        return Diagnostic(SourceLocation(file: file, line: n + 1, column: first.column),
                                          "duplicate key `\(key)` (first at line \(first.line))")
                    }
                }
            }
            return Diagnostic(at(first), "duplicate key \(duplicates.map { "`\($0)`" }.joined(separator: ", "))")
        default:
            return Diagnostic(SourceLocation(file: file, line: 1, column: 1), "YAML error: \(error)")
        }
    }

    static func convert(_ node: Node, file: String, problems: inout [Diagnostic]) -> ConfigNode {
        let loc = node.mark.map { SourceLocation(file: file, line: $0.line, column: $0.column) }
            ?? SourceLocation(file: file, line: 1, column: 1)
        switch node {
        case .scalar(let s):
            return ConfigNode(kind: .scalar(s.string, quoted: s.style == .singleQuoted || s.style == .doubleQuoted || s.style == .literal || s.style == .folded), location: loc)
        case .sequence(let seq):
            return ConfigNode(kind: .sequence(seq.map { convert($0, file: file, problems: &problems) }), location: loc)
        case .mapping(let map):
            var entries: [Entry] = []
            for (k, v) in map {
                let keyNode = convert(k, file: file, problems: &problems)
                guard let key = keyNode.scalar else {
                    problems.append(Diagnostic(keyNode.location, "a key must be a plain scalar"))
                    continue
                }
                if let previous = entries.first(where: { $0.key == key }) {
                    problems.append(Diagnostic(keyNode.location, "duplicate key `\(key)` (first at line \(previous.keyLocation.line))"))
                    continue
                }
                entries.append(Entry(key: key, keyLocation: keyNode.location, value: convert(v, file: file, problems: &problems)))
            }
            return ConfigNode(kind: .mapping(entries), location: loc)
        case .alias:
            problems.append(Diagnostic(loc, "YAML aliases are not supported in sluice files"))
            return ConfigNode(kind: .scalar("", quoted: false), location: loc)
        }
    }
}
