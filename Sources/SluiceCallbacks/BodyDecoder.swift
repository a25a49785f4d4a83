import CLazyLibs
import Foundation
import SluiceCore

/// Turns a request body into fields by its media type: JSON as it is, XML and form
/// encoding flattened into objects.
///
/// - JSON (`application/json`, `…+json`): the parsed value.
/// - XML (`application/xml`, `text/xml`, `…+xml`), read with libxml2 (FoundationXML),
///   external entities never resolved: `{root: …}` where an element with neither
///   attributes nor child elements is its text (null when empty), and any other element
///   an object of `@attribute` values, child elements by name (an array when a name
///   repeats) and `#text` (its text, when not only whitespace). The shape of Python's
///   `xmltodict`, which the tests compare with.
/// - Form (`application/x-www-form-urlencoded`): `name=value` pairs split on `&`, `+`
///   as space, percent escapes decoded (invalid escapes kept as written, invalid UTF-8
///   as U+FFFD); a name given more than once becomes an array of its values in order.
/// - No or another media type: sniffed from the first byte that is not whitespace
///   (`{`/`[` JSON, `<` XML); an empty body is an empty object; anything else is kept
///   as text (`nil` fields, the caller keeps the text).
public enum BodyDecoder {
    public enum Format: String, Sendable, CaseIterable { case json, xml, form, text }

    public static func format(contentType: String?, body: [UInt8]) -> Format {
        if let ct = contentType {
            let media = ct.split(separator: ";").first.map { $0.trimmingSpaces.lowercased() } ?? ""
            if media == "application/json" || media == "text/json" || media.hasSuffix("+json") { return .json }
            if media == "application/xml" || media == "text/xml" || media.hasSuffix("+xml") { return .xml }
            if media == "application/x-www-form-urlencoded" { return .form }
        }
        guard let first = body.first(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D) }) else { return .text }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") { return .json }
        if first == UInt8(ascii: "<") { return .xml }
        return .text
    }

    public static func decode(_ body: [UInt8], as format: Format) throws(RequestError) -> Value? {
        switch format {
        case .json:
            do { return try JSONParser.parse(body) } catch { throw RequestError("the JSON body is malformed: \(error.description)") }
        case .xml:
            return try XMLFlattener.flatten(body)
        case .form:
            return form(body)
        case .text:
            return body.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) ? .object(Fields()) : nil
        }
    }

    public static func form(_ body: [UInt8]) -> Value {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let eq = pair.firstIndex(of: UInt8(ascii: "="))
            let name = percentDecode(eq.map { pair[..<$0] } ?? pair[...])
            let value = eq.map { percentDecode(pair[($0 + 1)...]) } ?? ""
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(value)
        }
        var fields = Fields()
        for name in order {
            let v = values[name]!
            fields.appendUnchecked(name, v.count == 1 ? .string(v[0]) : .array(v.map(Value.string)))
        }
        return .object(fields)
    }

    static func percentDecode(_ bytes: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%"), bytes.endIndex - i >= 3, let h = hex(bytes[i + 1]), let l = hex(bytes[i + 2]) {
                out.append(h << 4 | l)
                i += 3
                continue
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}

/// Builds the flattened object of an XML document from libxml2's reader (`CLazyLibs`:
/// libxml2 is opened when the first XML body is read, not mapped in every run). No
/// network, no DTD loaded, no entity substituted: an external entity is never read.
enum XMLFlattener {
    private final class Element {
        let name: String
        var attributes: [(String, String)]
        var children: [(String, Value)] = []
        var text = ""
        init(name: String, attributes: [(String, String)]) {
            self.name = name
            self.attributes = attributes
        }
    }

    // libxml2's node types (xmlReaderTypes).
    private static let element: Int32 = 1, text: Int32 = 3, cdata: Int32 = 4, whitespace: Int32 = 13,
        significantWhitespace: Int32 = 14, endElement: Int32 = 15

    static func flatten(_ body: [UInt8]) throws(RequestError) -> Value {
        var problem = [CChar](repeating: 0, count: 256)
        guard sluice_xml_load(&problem, problem.count) == 0 else {
            throw RequestError("the XML body cannot be read: \(String(decoding: problem.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        guard body.count <= Int(Int32.max), let reader = body.withUnsafeBufferPointer({ sluice_xml_open($0.baseAddress, Int32($0.count)) }) else {
            throw RequestError("the XML body is malformed (line 1, column 1)")
        }
        defer { sluice_xml_close(reader) }
        func string(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }
        var stack: [Element] = []
        var root: (String, Value)?
        func close() {
            guard let element = stack.popLast() else { return }
            let value = Self.value(of: element)
            if let parent = stack.last { parent.children.append((element.name, value)) } else { root = (element.name, value) }
        }
        while true {
            let step = sluice_xml_read(reader)
            if step == 0 { break }
            guard step == 1 else {
                throw RequestError("the XML body is malformed (line \(sluice_xml_line(reader)), column \(sluice_xml_column(reader)))")
            }
            switch sluice_xml_node_type(reader) {
            case Self.element:
                guard stack.count < JSONParser.maxDepth else {
                    throw RequestError("the XML body nests deeper than \(JSONParser.maxDepth) elements")
                }
                let name = string(sluice_xml_name(reader))
                let empty = sluice_xml_is_empty_element(reader) == 1
                var attributes: [(String, String)] = []
                while sluice_xml_next_attribute(reader) == 1 {
                    attributes.append((string(sluice_xml_name(reader)), string(sluice_xml_value(reader))))
                }
                // Sorted by name for a stable order (a later duplicate is malformed XML).
                stack.append(Element(name: name, attributes: attributes.sorted { $0.0 < $1.0 }))
                if empty { close() }
            case Self.text, Self.cdata, Self.whitespace, Self.significantWhitespace:
                stack.last?.text += string(sluice_xml_value(reader))
            case Self.endElement:
                close()
            default:
                break  // comments, processing instructions, the doctype, entity references
            }
        }
        guard let root else { throw RequestError("the XML body is malformed (line 1, column 1)") }
        var fields = Fields()
        fields.appendUnchecked(root.0, root.1)
        return .object(fields)
    }

    /// An element as a value: its text (null when empty) when it has neither attributes
    /// nor children, else an object of "@"-named attributes, children by name (an array
    /// for a name that repeats) and "#text".
    private static func value(of element: Element) -> Value {
        let text = element.text.trimmingCharacters(in: .whitespacesAndNewlines)
        if element.attributes.isEmpty && element.children.isEmpty {
            return text.isEmpty ? .null : .string(text)
        }
        var fields = Fields()
        for (name, v) in element.attributes { fields.appendUnchecked("@" + name, .string(v)) }
        var grouped: [String: [Value]] = [:]
        var order: [String] = []
        for (name, child) in element.children {
            if grouped[name] == nil { order.append(name) }
            grouped[name, default: []].append(child)
        }
        for name in order {
            let items = grouped[name]!
            fields.appendUnchecked(name, items.count > 1 ? .array(items) : items[0])
        }
        if !text.isEmpty { fields.appendUnchecked("#text", .string(text)) }
        return .object(fields)
    }
}
