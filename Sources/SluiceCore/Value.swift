/// A JSON-shaped value: what a record's fields hold between extraction and load.
///
/// Integers and floating-point numbers are kept apart (`1` and `1.0` differ), so that
/// record keys and schema coercion can tell them apart. Objects keep their keys in
/// source order.
public enum Value: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    /// An integer literal too large for Int64, kept exactly as its decimal text
    /// (`-`? digits), so that ids of 20+ digits are never rounded.
    case largeInteger(String)
    case string(String)
    case array([Value])
    case object(Fields)

    /// The type name used in messages (never the value itself).
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "number"
        case .largeInteger: "integer"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Reads the value at a path of object keys (array indexes for numeric components).
    public func value(at path: FieldPath) -> Value? {
        var current = self
        for component in path.components {
            switch current {
            case .object(let fields):
                guard let next = fields[component] else { return nil }
                current = next
            case .array(let items):
                guard let index = Int(component), items.indices.contains(index) else { return nil }
                current = items[index]
            default:
                return nil
            }
        }
        return current
    }
}

/// An ordered collection of named values: a JSON object, or a record's top level.
///
/// Lookups are linear: records have tens of fields, and a linear scan over a small
/// contiguous array beats hashing every key of every parsed line.
public struct Fields: Sendable, Hashable, Sequence {
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: Value
        public init(_ name: String, _ value: Value) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var storage: [Field]
    /// Bits for each name the fields hold (`nameBits`): a name with a bit clear is not
    /// here, found without a scan (paths that records often lack, a stage's new field).
    /// A removed field's bits may stay set: set bits only mean "look".
    private var names64: UInt64 = 0

    public init() { storage = [] }
    public init(_ fields: [Field]) {
        storage = fields
        for f in fields { names64 |= Self.nameBits(f.name) }
    }
    public init(_ pairs: KeyValuePairs<String, Value>) {
        self.init(pairs.map { Field($0.key, $0.value) })
    }

    /// Two of 64 bits (one when they coincide): one from a name's UTF-8 length and last
    /// byte, one from its length and first byte. A name is looked for only when both of its
    /// bits are set: with one bit, a record of 20 fields sent a third of the lookups of
    /// names it lacks (a stage's new field) to a scan. The bytes are read from the
    /// string's own buffer: `utf8.last` (a generic walk back from the end) was 1.8% of a
    /// 1M-line run's samples.
    @inline(__always) public static func nameBits(_ name: String) -> UInt64 {
        let u = name.utf8
        let ends = u.withContiguousStorageIfAvailable { ($0.first ?? 0, $0.last ?? 0) } ?? (u.first ?? 0, u.last ?? 0)
        return nameBits(count: u.count, first: ends.0, last: ends.1)
    }

    /// `nameBits` of a name of `count` UTF-8 bytes, the first and last of them given (0 and
    /// 0 for the empty name): for a parser that has the name's bytes at hand.
    @inline(__always) public static func nameBits(count: Int, first: UInt8, last: UInt8) -> UInt64 {
        let n = UInt64(count)
        return UInt64(1) << ((n &* 7 &+ UInt64(last)) & 63) | UInt64(1) << ((n &* 13 &+ UInt64(first) &* 5 &+ 17) & 63)
    }

    // Equal fields are equal whatever bits removed fields left behind.
    public static func == (a: Fields, b: Fields) -> Bool { a.storage == b.storage }
    public func hash(into hasher: inout Hasher) { hasher.combine(storage) }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    public var names: [String] { storage.map(\.name) }

    public func makeIterator() -> IndexingIterator<[Field]> { storage.makeIterator() }

    /// Whether two field names are the same: their UTF-8 lengths first (most names of a
    /// record differ in length, and that needs no call into the string comparison), then
    /// the strings.
    @inline(__always) public static func sameName(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a == b
    }

    public func index(of name: String) -> Int? { index(of: name, bits: Self.nameBits(name)) }

    /// `index(of:)` with the name's `nameBits` worked out by the caller (the setter needs
    /// them again to append).
    @inline(__always)
    private func index(of name: String, bits: UInt64) -> Int? {
        guard names64 & bits == bits else { return nil }
        return storage.firstIndex { Self.sameName($0.name, name) }
    }

    /// `index(of:)`, looking at `from` and next to it first (records of one log hold
    /// their fields in one order, a field or two more or less shifting the rest), then
    /// everywhere.
    public func index(of name: String, from start: Int) -> Int? {
        index(of: name, bits: Self.nameBits(name), from: start)
    }

    /// `index(of:from:)` with the name's `nameBits` worked out once by the caller (a path
    /// read from every record: working them out on each lookup was half of this
    /// function's time, 6.8% of a 1M-line run's samples with the select stage only).
    @inline(__always)
    public func index(of name: String, bits: UInt64, from start: Int) -> Int? {
        guard names64 & bits == bits else { return nil }
        let n = storage.count
        // At `start`, then one and two places either side (no array of offsets: this is
        // on every path of every record).
        if start >= 0, start < n, Self.sameName(storage[start].name, name) { return start }
        for d in 1...2 {
            let before = start - d, after = start + d
            if before >= 0, before < n, Self.sameName(storage[before].name, name) { return before }
            if after >= 0, after < n, Self.sameName(storage[after].name, name) { return after }
        }
        for i in 0..<n where Self.sameName(storage[i].name, name) { return i }
        return nil
    }

    /// The value of a field; setting `nil` removes it, setting a value replaces it in
    /// place or appends it.
    public subscript(name: String) -> Value? {
        get {
            let bits = Self.nameBits(name)
            guard names64 & bits == bits else { return nil }
            for field in storage where Self.sameName(field.name, name) { return field.value }
            return nil
        }
        set {
            // The name's bits worked out once, for the lookup and the append (a parsed
            // object's every key comes here: parsing 0.44 -> 0.55 M lines/s).
            set(newValue, name, bits: Self.nameBits(name))
        }
    }

    /// The value of a field named by a `FieldName` (its bits worked out once, by a stage
    /// that sets it on every record); as `self[name.name]`.
    public subscript(name: FieldName) -> Value? {
        get { index(of: name.name, bits: name.bits).map { storage[$0].value } }
        set { set(newValue, name.name, bits: name.bits) }
    }

    /// Sets (nil: removes) the field `name`, whose `nameBits` are `bits`.
    @inline(__always)
    mutating func set(_ value: Value?, _ name: String, bits: UInt64) {
        if let i = index(of: name, bits: bits) {
            if let value { storage[i].value = value } else { storage.remove(at: i) }
        } else if let value {
            storage.append(Field(name, value))
            names64 |= bits
        }
    }

    /// Appends without checking for an existing field of that name (for parsers that
    /// have checked already).
    public mutating func appendUnchecked(_ name: String, _ value: Value) {
        storage.append(Field(name, value))
        names64 |= Self.nameBits(name)
    }

    public mutating func reserveCapacity(_ n: Int) { storage.reserveCapacity(n) }

    public mutating func removeAll(where predicate: (Field) -> Bool) {
        storage.removeAll(where: predicate)
    }
}

/// A top-level field's name with its `Fields.nameBits`, worked out once: what a stage
/// holds for the fields it sets on every record of a batch.
public struct FieldName: Sendable, Hashable {
    public let name: String
    public let bits: UInt64
    public init(_ name: String) {
        self.name = name
        bits = Fields.nameBits(name)
    }
}

/// A dot-separated path into nested objects: `headers.user-agent`,
/// `properties.event_properties.success`. A numeric component indexes an array.
public struct FieldPath: Sendable, Hashable, CustomStringConvertible {
    public let components: [String]

    public init(components: [String]) { self.components = components }

    /// Parses `a.b.c`. Returns nil for an empty path or an empty component (`a..b`).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { return nil }
        components = parts
    }

    public var description: String { components.joined(separator: ".") }
    public var isSingle: Bool { components.count == 1 }
}

/// A path read from many records in turn (a batch's): remembers where each component
/// was found in the previous record and looks there first, so that records of one shape
/// (the same fields in the same order, as lines of one log are) cost one name comparison
/// per component instead of a scan.
public struct PathReader: Sendable {
    public let path: FieldPath
    private let components: [String]
    /// Each component's `Fields.nameBits`, worked out once.
    private let bits: [UInt64]
    /// Where the first two components were found last (kept apart from `hints`: writing
    /// an array's element checks that the array is not shared, on every component of
    /// every record).
    private var hint0 = 0, hint1 = 0
    /// Where components 2... were found last.
    private var hints: [Int]

    public init(_ path: FieldPath) {
        self.path = path
        components = path.components
        bits = path.components.map(Fields.nameBits)
        hints = [Int](repeating: 0, count: max(0, path.components.count - 2))
    }

    /// The same as `fields.value(at: path)`.
    public mutating func value(in fields: Fields) -> Value? { withValue(in: fields) { $0 } }

    /// Calls `body` with the value at the path (nil: absent) where it lies: neither it nor
    /// the objects on the way are copied (each copy retains, and this is on every path of
    /// every record). The walk takes its hints as `inout` integers, not the reader: a
    /// method called with the whole reader `inout` made the compiler copy every object it
    /// was called on.
    @inline(__always)
    public mutating func withValue<R>(in fields: Fields, _ body: (Value?) -> R) -> R {
        guard let first = components.first, let i = fields.index(of: first, bits: bits[0], from: hint0) else { return body(nil) }
        hint0 = i
        if components.count == 1 { return body(fields.storage[i].value) }
        return fields.storage[i].value.walk(components, bits, 1, &hint1, &hints, body)
    }
}

extension Value {
    /// `body` of the value at `components[k...]` below this one, component `k` looked for
    /// at `hint` first (each next one's in `hints`). Inlined into its caller: a value a
    /// call is made on is copied first, and this is on every path of every record; paths
    /// deeper than two components (rare) go on through `deeper`.
    @inline(__always)
    fileprivate func walk<R>(_ components: [String], _ bits: [UInt64], _ k: Int, _ hint: inout Int, _ hints: inout [Int],
                             _ body: (Value?) -> R) -> R {
        let last = k + 1 == components.count
        switch self {
        case .object(let nested):
            guard let i = nested.index(of: components[k], bits: bits[k], from: hint) else { return body(nil) }
            hint = i
            if last { return body(nested.storage[i].value) }
            return nested.storage[i].value.deeper(components, bits, k + 1, &hints, body)
        case .array(let items):
            guard let index = Int(components[k]), items.indices.contains(index) else { return body(nil) }
            if last { return body(items[index]) }
            return items[index].deeper(components, bits, k + 1, &hints, body)
        default:
            return body(nil)
        }
    }

    /// `walk` from component `k` >= 2, whose hint is `hints[k - 2]`.
    private func deeper<R>(_ components: [String], _ bits: [UInt64], _ k: Int, _ hints: inout [Int], _ body: (Value?) -> R) -> R {
        var hint = hints[k - 2]
        defer { hints[k - 2] = hint }
        return walk(components, bits, k, &hint, &hints, body)
    }
}

extension Fields {
    /// Reads the value at a path whose first component is a top-level field (a numeric
    /// component indexes an array). In place: no new path per lookup.
    public func value(at path: FieldPath) -> Value? {
        let components = path.components
        guard let top = components.first, let first = index(of: top) else { return nil }
        var current = storage[first].value
        for component in components.dropFirst() {
            switch current {
            case .object(let nested):
                guard let i = nested.index(of: component) else { return nil }
                current = nested.storage[i].value
            case .array(let items):
                guard let index = Int(component), items.indices.contains(index) else { return nil }
                current = items[index]
            default:
                return nil
            }
        }
        return current
    }

    /// Sets the value at a path, creating intermediate objects as needed. Returns false
    /// when the path runs through a value that is not an object.
    @discardableResult
    public mutating func setValue(_ value: Value?, at path: FieldPath) -> Bool {
        let comps = path.components
        if comps.count == 1 {
            self[comps[0]] = value
            return true
        }
        var child: Fields
        switch self[comps[0]] {
        case .object(let f)?: child = f
        case nil, .null?: child = Fields()
        default: return false
        }
        guard child.setValue(value, at: FieldPath(components: Array(comps.dropFirst()))) else { return false }
        self[comps[0]] = .object(child)
        return true
    }
}
